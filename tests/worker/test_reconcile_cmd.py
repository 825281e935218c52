"""``cardload reconcile`` as an operator runs it, against the sandbox over HTTP after
real jobs: a CSV of every finding, exit 0 when all is well, 1 when a person is needed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cardload.jobs import CardLoadJob, JobStatus
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import SEED_CARD
from tests.services import run_cli
from tests.worker.conftest import Stack


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_reconcile_writes_its_findings_and_says_when_a_person_is_needed(
    running: Stack, tmp_path: Path
) -> None:
    jobs = [
        CardLoadJob(idempotency_key=f"recon-{i}", card_number=SEED_CARD, amount_cents=100 + i)
        for i in range(2)
    ]
    for job in jobs:
        assert running.finished(running.producer.enqueue(job)).status is JobStatus.SUCCEEDED
    out = tmp_path / "reconcile.csv"
    done = run_cli(running.settings, "reconcile", "--since", "1h", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [r["kind"] for r in _rows(out)] == ["ok", "ok"]
    assert all(SEED_CARD not in line for line in out.read_text().splitlines())

    # A paid transaction no job claims (another system's, under a key of its own).
    pipeline = build_pipeline(running.settings)
    secu = running.settings.secuconnect
    assert secu.contract_id and secu.device_id
    try:
        stranger = CardLoadJob(idempotency_key="till-7", card_number=SEED_CARD, amount_cents=9)
        request = build_create_request(
            stranger, contract_id=secu.contract_id, device_id=secu.device_id
        )
        tx = pipeline.client.create(request)
        pipeline.client.start(tx.id, "cash")
    finally:
        pipeline.leases.stop()
        pipeline.client.close()
    done = run_cli(running.settings, "reconcile", "--since", "1h", "--out", str(out))
    assert done.returncode == 1
    assert f"unclaimed {tx.id} 'till-7'" in done.stderr
    assert sorted(r["kind"] for r in _rows(out)) == ["ok", "ok", "unclaimed"]

    # --json is the whole of stdout, even when a page had to be asked for twice (the
    # warning goes to stderr).
    running.faults({"kind": "error_503", "endpoint": "list", "times": 1})
    done = run_cli(running.settings, "reconcile", "--since", "1h", "--json")
    assert json.loads(done.stdout)["counts"] == {"ok": 2, "unclaimed": 1}
    assert "reconcile.page_retry" in done.stderr

    # The API stops giving the list: what was seen is reported, and exit 3 (unreachable),
    # not 0 or 1.
    running.faults({"kind": "error_503", "endpoint": "list"})
    done = run_cli(running.settings, "reconcile", "--since", "1h", "--json")
    assert done.returncode == 3
    assert "503" in json.loads(done.stdout)["incomplete"] and "incomplete" in done.stderr
