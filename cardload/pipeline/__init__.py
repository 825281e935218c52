"""The card-load domain: what each step of a job does, independent of Celery."""

from cardload.pipeline.outcome import Continue, Finished, Outcome, RetryLater
from cardload.pipeline.steps import Pipeline

__all__ = ["Continue", "Finished", "Outcome", "Pipeline", "RetryLater"]
