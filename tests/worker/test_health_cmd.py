"""``cardload health`` as a probe runs it: a subprocess against our Redis, the broker
and the sandbox over HTTP; its exit code says healthy (0), degraded (1) or down (2)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from cardload.flowcontrol import SharedBreaker
from tests.services import run_cli
from tests.worker.conftest import Stack


def _health(stack: Stack, *args: str, **secu: object) -> tuple[int, dict[str, Any]]:
    settings = stack.settings
    if secu:
        update = {"secuconnect": settings.secuconnect.model_copy(update=secu)}
        settings = settings.model_copy(update=update)
    done = run_cli(settings, "health", "--json", *args)
    return done.returncode, json.loads(done.stdout)


def test_health_says_healthy_degraded_or_down(stack: Stack) -> None:
    code, report = _health(stack, "--token")
    assert code == 0 and report["status"] == "healthy"
    assert report["checks"] == {
        "redis": {"status": "ok"},
        "broker": {"status": "ok"},
        "breaker": {"status": "ok", "state": "closed"},
        "token": {"status": "ok"},
    }

    code, report = _health(stack, "--token", client_secret=SecretStr("wrong"))
    assert code == 1 and report["checks"]["token"] == {
        "status": "degraded",
        "error": "credentials refused",
    }
    assert "wrong" not in json.dumps(report)

    SharedBreaker(stack.redis, stack.settings.breaker).failed("server_error", at_once=True)
    code, report = _health(stack)
    breaker = report["checks"]["breaker"]
    assert code == 1 and breaker["state"] == "open" and breaker["reason"] == "server_error"

    down = stack.settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    done = run_cli(down, "health")
    assert done.returncode == 2 and done.stdout.startswith("down")
