"""The sandbox in-process, as an httpx transport: no socket, same behaviour and faults.

A lost connection becomes the httpx exception a real socket would give; a wait at
least as long as the request's read timeout becomes ``ReadTimeout`` at once, so
tests of timeouts do not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from cardload.sandbox.app import SandboxApp, SandboxRequest


class SandboxTransport(httpx.BaseTransport):
    def __init__(self, app: SandboxApp, sleep: Callable[[float], None] = time.sleep) -> None:
        self.app = app
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode("ascii")
        outcome = self.app.handle(
            SandboxRequest.build(request.method, target, dict(request.headers), request.read())
        )
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if read_timeout is not None and outcome.wait_s >= read_timeout:
            raise httpx.ReadTimeout("timed out", request=request)
        if outcome.response is None:
            if outcome.lose_as == "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if outcome.wait_s:
            self._sleep(outcome.wait_s)
        response = outcome.response
        return httpx.Response(
            response.status, headers=list(response.headers), content=response.body, request=request
        )
