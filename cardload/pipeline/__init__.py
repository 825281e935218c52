"""The card-load domain: what each step of a job does, independent of Celery."""

from cardload.pipeline.outcome import Continue, Finished, NextMessage, Outcome, RetryLater
from cardload.pipeline.steps import Pipeline

__all__ = ["Continue", "Finished", "NextMessage", "Outcome", "Pipeline", "RetryLater"]
