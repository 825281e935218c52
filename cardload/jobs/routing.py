"""Which Celery task runs each step, and which statuses each step owns: the one table
producers, the pipeline and the stall sweep share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cardload.jobs.model import JobStatus

Step = Literal["create", "start"]

TASK_NAMES: dict[Step, str] = {
    "create": "cardload.create",
    "start": "cardload.start",
}
# A job's start goes before every create still queued (on Redis, a lower number is
# taken first: kombu keeps a list per priority step and pops them in order). Without
# it a start waits behind a whole batch's creates, its transaction created and unpaid
# for as long as the batch takes. A broker without priorities ignores them.
STEP_PRIORITY: dict[Step, int] = {"create": 3, "start": 0}
# cardload 0.1 ran a third task for the result event; its queued messages stay valid.
LEGACY_PUBLISH_TASK = "cardload.publish"


@dataclass(frozen=True)
class StepStatuses:
    claimable: frozenset[JobStatus]  # a delivery of the step may claim the job in these
    running: JobStatus  # the job's status while the step runs and between its retries


STEP_STATUSES: dict[Step, StepStatuses] = {
    "create": StepStatuses(frozenset({JobStatus.QUEUED, JobStatus.CREATING}), JobStatus.CREATING),
    "start": StepStatuses(frozenset({JobStatus.CREATED, JobStatus.STARTING}), JobStatus.STARTING),
}

# The step that moves an unfinished job on from each status.
STEP_FOR_STATUS: dict[JobStatus, Step] = {
    JobStatus.QUEUED: "create",
    JobStatus.CREATING: "create",
    JobStatus.CREATED: "start",
    JobStatus.STARTING: "start",
}
