"""Real parts for integration tests: a private redis-server, Celery worker processes,
and helpers to wait on conditions (never on fixed sleeps)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import redis

from cardload.cli.localstack import free_port, pings, redis_server, wait_for
from cardload.config import Settings, to_env

ROOT = Path(__file__).parents[1]


@functools.cache
def scratch_dir() -> Path:
    """Where subprocesses run: a directory of their own, so a developer's ``.env`` in
    the repository (settings read it from the working directory) never leaks in."""
    path = Path(tempfile.mkdtemp(prefix="cardload-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class WorkerProcess:
    """``cardload worker`` in a subprocess of its own, as an operator would run it."""

    def __init__(self, settings: Settings, *extra: str, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
        env |= to_env(settings) | {"PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardload.cli.main",
                "worker",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"test-{free_port()}@%h",
                *extra,
            ],
            cwd=log_path.parent,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, 60, "the worker to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
        return " ready." in self.log_path.read_text()

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL the worker and all its processes: no warm shutdown, no acks."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def freeze(self) -> None:
        """SIGSTOP: the worker stops in the middle of whatever it does (a long GC pause,
        a VM frozen by its host), its lease keeper too."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


class RedisProcess:
    """A redis-server of our own that can be killed and started again on the same port
    and directory: it comes back with what it saved last (``SAVE``), nothing after."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir"]
        argv += [str(self.directory), "--save", "", "--appendonly", "no"]
        argv += ["--maxmemory-policy", "noeviction"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_for(lambda: pings(client), 10, "redis-server to answer")
        client.close()

    def kill(self) -> None:
        """SIGKILL: everything written since the last SAVE is lost."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``cardload ARGS`` as an operator runs it, configured by these settings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")} | to_env(settings)
    command = [sys.executable, "-m", "cardload.cli.main", *args]
    return subprocess.run(
        command, cwd=scratch_dir(), env=env, capture_output=True, text=True, timeout=60
    )


def in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


__all__ = [
    "ROOT",
    "RedisProcess",
    "WorkerProcess",
    "free_port",
    "in_thread",
    "redis_server",
    "run_cli",
    "scratch_dir",
    "wait_for",
]
