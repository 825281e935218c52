"""``cardload sandbox serve`` and ``cardload demo`` as a user runs them: subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cardload.cli.main import main
from tests.services import scratch_dir


def _cardload(*args: str) -> list[str]:
    return [sys.executable, "-m", "cardload.cli.main", *args]


def test_serve_prints_url_and_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"rules": [{"kind": "error_503", "endpoint": "list"}]}))
    command = _cardload(
        "sandbox",
        "serve",
        "--port",
        "0",
        "--faults-file",
        str(faults),
        "--fault",
        "kind=rate_limit,endpoint=get,retry_after_s=2",
        "--client-secret",
        "s2",
    )
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, cwd=scratch_dir(), stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("sandbox listening on http://127.0.0.1:")
            url = first.split()[-1]
            assert "client_id=sandbox-client client_secret=s2" in proc.stdout.readline()
            assert "contract_id=GCR_" in proc.stdout.readline()
            rules = httpx.get(f"{url}/_sandbox/faults").json()["rules"]
            assert [(r["kind"], r["endpoint"]) for r in rules] == [
                ("error_503", "list"),
                ("rate_limit", "get"),
            ]
            form = {
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "s2",
            }
            assert httpx.post(f"{url}/oauth/token", json=form).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_invalid_fault_is_reported(capsys: object) -> None:
    proc = subprocess.run(
        _cardload("sandbox", "serve", "--port", "0", "--fault", "kind=meteor"),
        cwd=scratch_dir(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "invalid faults" in proc.stderr and "kind" in proc.stderr


def test_demo_runs_the_sample_batch_and_stops_everything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    proc = subprocess.run(
        _cardload("demo"), cwd=scratch_dir(), capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "11 rows, 6 enqueued, 5 invalid (reported, not enqueued)" in out
    assert "by status: {'succeeded': 5, 'dead_lettered': 1}; dead letters: 1; events: 6" in out
    assert "card_number: must be 16 digits" in out
    assert "amount: '10.005' has fractions of a cent" in out
    # The API's error text quotes the card: masked like everywhere else.
    assert "card 927600******0001 is locked" in out
    assert "9276004424644352" not in out and "9276000000000001" not in out
    assert out.rstrip().endswith("stopped: worker, sandbox, redis")


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for command in (
        "enqueue",
        "job",
        "jobs",
        "batch",
        "dlq",
        "events",
        "worker",
        "sandbox",
        "demo",
    ):
        assert f"    {command} " in listed, f"{command} missing from: {listed}"


def test_invalid_settings_are_reported_by_the_command_that_needs_them() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    bad = env | {"CARDLOAD_RETRY_MAX_ATTEMPTS": "many", "CARDLOAD_SECUCONNECT_CLIENT_SECRET": "s3"}
    assert (
        subprocess.run(
            _cardload("--help"), cwd=scratch_dir(), env=bad, capture_output=True
        ).returncode
        == 0
    )
    enqueue = subprocess.run(
        _cardload("enqueue", "--card", "9276004424644352", "--amount", "1"),
        cwd=scratch_dir(),
        env=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enqueue.returncode == 2
    assert "CARDLOAD_RETRY_MAX_ATTEMPTS: Input should be a valid integer" in enqueue.stderr
    assert "Traceback" not in enqueue.stderr and "s3" not in enqueue.stderr
    worker = subprocess.run(
        _cardload("worker"), cwd=scratch_dir(), env=env, capture_output=True, text=True, timeout=60
    )
    assert worker.returncode == 2
    for name in ("CLIENT_ID", "CLIENT_SECRET", "CONTRACT_ID", "DEVICE_ID"):
        assert f"CARDLOAD_SECUCONNECT_{name}: required" in worker.stderr
    # Celery's own command line too: the worker stops before it takes a job.
    celery = [sys.executable, "-m", "celery", "-A", "cardload.worker", "worker"]
    plain = subprocess.run(
        [*celery, "--pool=solo"],
        cwd=scratch_dir(),
        env=env | {"CARDLOAD_REDIS_URL": "redis://127.0.0.1:9/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 2 and "CARDLOAD_SECUCONNECT_CONTRACT_ID: required" in plain.stderr
