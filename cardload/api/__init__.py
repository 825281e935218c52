"""The HTTP API for order systems (``cardload api``): card loads, batches and dead
letters over HTTP, with API keys. Needs the ``api`` extra (FastAPI, uvicorn)."""

from cardload.api.app import create_api

__all__ = ["create_api"]
