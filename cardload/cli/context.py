"""What the job commands need, built from the settings on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis
from celery import Celery

from cardload.config import Settings, load_settings
from cardload.deadletters.store import DeadLetterStore
from cardload.events.stream import EventStream
from cardload.jobs.connection import connect
from cardload.jobs.store import JobStore, job_store
from cardload.observability.logging import configure_logging
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import default_app


@dataclass
class Context:
    settings: Settings

    @classmethod
    def load(cls) -> Context:
        settings = load_settings()
        # Log lines go to stderr: stdout is the command's answer (``--json`` is parsed).
        configure_logging(settings.log.format, settings.log.level)
        return cls(settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return connect(self.settings.redis_url)

    @property
    def app(self) -> Celery:
        return default_app()

    @cached_property
    def store(self) -> JobStore:
        return job_store(self.redis, self.settings)

    @cached_property
    def events(self) -> EventStream:
        return EventStream(self.redis, self.settings.events.stream)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis, self.settings.events.dead_letters)

    @cached_property
    def producer(self) -> CardLoadProducer:
        return CardLoadProducer(self.app, self.store, self.settings)
