"""Card-load jobs: the job model, its state record and the Redis store behind it."""

from cardload.jobs.model import (
    CardLoadJob,
    ErrorInfo,
    ExtraLine,
    HistoryEntry,
    JobRecord,
    JobSource,
    JobStatus,
    LoadResult,
)
from cardload.jobs.store import (
    Admission,
    FenceLost,
    IdempotencyConflict,
    JobStore,
    Lease,
    job_store,
)

__all__ = [
    "Admission",
    "CardLoadJob",
    "ErrorInfo",
    "ExtraLine",
    "FenceLost",
    "HistoryEntry",
    "IdempotencyConflict",
    "JobRecord",
    "JobSource",
    "JobStatus",
    "JobStore",
    "Lease",
    "LoadResult",
    "job_store",
]
