"""``cardload sandbox serve`` and ``cardload demo`` as a user runs them: subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cli.main import main

ROOT = Path(__file__).parents[2]


def _cardload(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def test_serve_prints_url_and_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"rules": [{"kind": "error_503", "endpoint": "list"}]}))
    command = _cardload(
        "sandbox", "serve", "--port", "0", "--faults-file", str(faults),
        "--fault", "kind=rate_limit,endpoint=get,retry_after_s=2", "--client-secret", "s2",
    )  # fmt: skip
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env) as proc:
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
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "invalid faults" in proc.stderr and "kind" in proc.stderr


def test_demo_reproduces_the_seed() -> None:
    proc = subprocess.run(_cardload("demo"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "after:  cash 22,00 EUR, bonus 8,10 EUR, balance 30,10 EUR" in proc.stdout
    assert "seed figures (cash 2200, bonus 810, balance 3010): MATCH" in proc.stdout
    assert "Herr Dr. Max Mustermann" in proc.stdout


def test_help_lists_commands(capsys: object) -> None:
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
