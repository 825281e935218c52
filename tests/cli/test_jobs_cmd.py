"""``cardload jobs purge`` as an operator runs it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from cardload.cli import failures
from cardload.jobs import CardLoadJob, JobStatus, job_store, keys
from tests.services import run_cli
from tests.support import make_settings

CARD = "9276004424644352"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("30", "'30' is not a duration: write a whole number and a unit, s, m, h, d or w"),
        ("3 days", "'3 days' is not a duration"),
        ("0h", "'0h' is no time at all"),
    ],
)
def test_a_bad_duration_is_one_clear_error_and_exit_2(
    redis_url: str, value: str, says: str
) -> None:
    settings = make_settings(redis_url, "http://127.0.0.1:9")
    done = run_cli(settings, "jobs", "purge", "--older-than", value)
    assert done.returncode == failures.EXIT_INPUT, done.stderr
    assert f"cardload jobs purge: error: argument --older-than: {says}" in done.stderr
    assert "Traceback" not in done.stderr


def test_purge_prints_its_counts(real_redis: redis.Redis, redis_url: str) -> None:
    settings = make_settings(redis_url, "http://127.0.0.1:9")
    store = job_store(real_redis, settings)
    old, waiting = (
        CardLoadJob.model_validate({"idempotency_key": k, "card_number": CARD, "amount_cents": 1})
        for k in ("old", "waiting")
    )
    store.admit_many([old, waiting])
    # A job that succeeded two days ago, before retention (kept for good).
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    real_redis.hset(
        keys.job(old.job_id), mapping={"status": JobStatus.SUCCEEDED, "updated_at": two_days_ago}
    )
    dry = run_cli(settings, "jobs", "purge", "--older-than", "1d", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counts = json.loads(dry.stdout)
    assert counts["dry_run"] and counts["older_than_s"] == 86_400
    assert (counts["seen"], counts["succeeded"], counts["kept_unfinished"]) == (2, 1, 1)
    assert store.load(old.job_id) is not None

    done = run_cli(settings, "jobs", "purge", "--older-than", "24h")
    assert done.returncode == 0, done.stderr
    assert "succeeded jobs deleted        1" in done.stdout
    assert "kept: queued or running       1" in done.stdout
    assert store.load(old.job_id) is None and store.load(waiting.job_id) is not None
    assert store.job_id_for_key("old") == old.job_id  # its key kept: still no second load
