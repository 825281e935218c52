"""Card-load jobs: the job model, its state record and the Redis store behind it."""

from jobs.model import (
    CardLoadJob,
    ErrorInfo,
    ExtraLine,
    HistoryEntry,
    JobRecord,
    JobSource,
    JobStatus,
    LoadResult,
)
from jobs.store import Admission, IdempotencyConflict, JobStore, Transition

__all__ = [
    "Admission",
    "CardLoadJob",
    "ErrorInfo",
    "ExtraLine",
    "HistoryEntry",
    "IdempotencyConflict",
    "JobRecord",
    "JobSource",
    "JobStatus",
    "JobStore",
    "LoadResult",
    "Transition",
]
