"""What the routes use, built once per API process from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from fastapi import Request

from cardload.apikeys import ApiKeyStore
from cardload.config import Settings
from cardload.deadletters.store import DeadLetterStore
from cardload.jobs.store import JobStore
from cardload.producers.enqueue import CardLoadProducer


@dataclass
class Services:
    settings: Settings
    producer: CardLoadProducer
    api_keys: ApiKeyStore
    dead_letters: DeadLetterStore

    @property
    def store(self) -> JobStore:
        return self.producer.store

    @property
    def redis(self) -> redis.Redis:
        return self.producer.store.redis

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        producer = CardLoadProducer.from_settings(settings)
        client = producer.store.redis
        return cls(
            settings,
            producer,
            ApiKeyStore(client),
            DeadLetterStore(client, settings.events.dead_letters),
        )


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
