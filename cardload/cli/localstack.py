"""Local services for the demo, the tests and the benchmarks: a private redis-server
on a free port, and waiting on a condition instead of sleeping a fixed time."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar

import redis

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], T | Literal[False] | None], timeout_s: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def has_redis_server() -> bool:
    return shutil.which("redis-server") is not None


def pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@contextmanager
def redis_server(*extra: str) -> Iterator[str]:
    """A redis-server of our own on a free port, no persistence; stopped and removed after.
    ``extra`` are more redis-server options (``"--rename-command", "INFO", ""``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="cardload-redis-")
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "save": "",
        "appendonly": "no",
        "dir": workdir,
        "maxmemory-policy": "noeviction",
    }
    argv = [binary, *[part for key, value in options.items() for part in (f"--{key}", value)]]
    argv += extra
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        wait_for(lambda: pings(client), 10, "redis-server to answer")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
