"""The secuconnect Smart Transactions client: one httpx pool, typed calls, one error tree.

Every call sends ``Authorization: Bearer``. When the token is refused it drops the
token, fetches a new one and repeats the call once: on 401, as the official PHP and
Java SDKs do, and on 403 ``ProductNotAllowedException``, which is how secupay's
error-handling docs show an expired token ("Valid auth token required"); the SDKs do
not repeat on 403.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from cardload._version import __version__
from cardload.secuconnect.classify import classify_response, classify_transport_error
from cardload.secuconnect.errors import AmbiguousError, PermanentError, RetryableError
from cardload.secuconnect.models import (
    CreateSmartTransaction,
    SmartTransaction,
    SmartTransactionList,
)
from cardload.secuconnect.tokens import TokenSource

API_PREFIX = "/api/v2"
PAGE = 100  # the most the list endpoint answers at once
MAX_PAGES = 20  # a merchantRef lookup reads at most this many pages
TRANSACTIONS = f"{API_PREFIX}/Smart/Transactions"
_EXPIRED_TOKEN_ERROR = "ProductNotAllowedException"
_M = TypeVar("_M", SmartTransaction, SmartTransactionList)


def build_http(
    base_url: str,
    *,
    timeout: httpx.Timeout | None = None,
    max_connections: int = 50,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one connection pool a worker process uses."""
    return httpx.Client(
        base_url=base_url,
        timeout=timeout or httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        transport=transport,
        headers={"User-Agent": f"cardload/{__version__}", "Accept": "application/json"},
    )


class SecuconnectClient:
    """Calls go straight to the transport ``http`` chose for its base URL (its pool, its
    proxy), with its headers and timeouts as they were when this client was made:
    ``httpx.Client.request``'s own layers (request building, auth and redirect flows,
    cookies, event hooks) cost more CPU than the transport itself, and the API needs
    none of them (a redirect is not followed: it is an answer to retry)."""

    def __init__(self, http: httpx.Client, tokens: TokenSource) -> None:
        self._http = http
        self._tokens = tokens
        self._origin = str(http.base_url).rstrip("/")
        self._headers = list(http.headers.raw)
        self._extensions = {"timeout": http.timeout.as_dict()}

    def authenticate(self) -> None:
        """Make sure a token is at hand (cached, or fetched now); raises
        :class:`TokenUnavailableError` if none can be had. A step asks before it claims
        its job, so waiting for the token endpoint costs the job no attempt."""
        self._tokens.token()

    # --- Smart Transactions ----------------------------------------------------

    def create(self, request: CreateSmartTransaction) -> SmartTransaction:
        return self._transaction("POST", TRANSACTIONS, body=request.to_wire())

    def get(self, transaction_id: str) -> SmartTransaction:
        return self._transaction("GET", f"{TRANSACTIONS}/{transaction_id}")

    def start(self, transaction_id: str, payment_method: str | None) -> SmartTransaction:
        """Pay (``/start/{payment_method}``, :data:`methods.START_METHODS`); ``None`` only
        after :meth:`prepare`, which chose the method (a bare ``/start``)."""
        path = f"{TRANSACTIONS}/{transaction_id}/start"
        return self._transaction("POST", f"{path}/{payment_method}" if payment_method else path)

    def prepare(self, transaction_id: str, payment_method: str) -> SmartTransaction:
        """Authorise a payment (``/prepare/{payment_method}``, :data:`methods.PREPARE_METHODS`)
        for a bare start to capture."""
        return self._transaction(
            "POST", f"{TRANSACTIONS}/{transaction_id}/prepare/{payment_method}"
        )

    def cancel(self, transaction_id: str) -> SmartTransaction:
        return self._transaction("POST", f"{TRANSACTIONS}/{transaction_id}/cancel")

    def search(
        self,
        *,
        q: str | None = None,
        count: int = 20,
        offset: int = 0,
        sort: str | None = None,
    ) -> SmartTransactionList:
        """``GET /Smart/Transactions``: ``q`` in the API's search language
        (``property:condition``, ``?``/``*`` wildcards, ``[min TO max]``, AND/OR/NOT),
        ``sort`` as ``field:asc|desc``."""
        params: dict[str, str | int] = {"count": count, "offset": offset}
        if q:
            params["q"] = q
        if sort:
            params["sort"] = sort
        body = self._call("GET", TRANSACTIONS, params=params)
        return self._parse("GET", SmartTransactionList, body)

    def find_by_merchant_ref(self, merchant_ref: str) -> list[SmartTransaction]:
        """Transactions whose merchantRef is exactly this one, oldest first.

        The search language has wildcards and no documented escape, so a key holding
        ``*`` or ``?`` matches other keys too: ``*`` is searched as ``?`` (one character,
        not any run), every page is read, and only exact matches are kept. The order is
        asked for (``sort=created:asc``); the API's default is not documented."""
        pattern = merchant_ref.replace("*", "?").replace("\\", "\\\\").replace('"', '\\"')
        found: list[SmartTransaction] = []
        offset = 0
        while True:
            page = self.search(
                q=f'merchantRef:"{pattern}"', count=PAGE, offset=offset, sort="created:asc"
            )
            found += [tx for tx in page.data if tx.merchant_ref == merchant_ref]
            offset += len(page.data)
            if not page.data or offset >= page.count:
                return found
            if offset >= PAGE * MAX_PAGES:
                raise PermanentError(
                    f"merchantRef {merchant_ref!r} matches {page.count} transactions in the "
                    "API's search: too many to look through; use a key without * or ?"
                )

    # --- plumbing ----------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SecuconnectClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _transaction(self, method: str, path: str, **kw: Any) -> SmartTransaction:
        return self._parse(method, SmartTransaction, self._call(method, path, **kw))

    @staticmethod
    def _parse(method: str, model: type[_M], body: bytes) -> _M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            # A 200 we cannot read: for a POST the effect may have happened.
            error_type = AmbiguousError if method == "POST" else RetryableError
            raise error_type(
                f"{method} answered 200 with a body that is not a {model.__name__} "
                f"({exc.error_count()} problems)",
                http_status=200,
            ) from exc  # the models never quote the values they refused

    def _call(self, method: str, path: str, **kw: Any) -> bytes:
        token = self._tokens.token()
        response = self._send(method, path, token, **kw)
        if self._is_expired_token(response):
            self._tokens.invalidate(token)
            response = self._send(method, path, self._tokens.token(), **kw)
        if 200 <= response.status_code < 300:
            return response.content
        raise classify_response(
            method,
            response.status_code,
            response.content,
            response.headers.get("content-type", ""),
            response.headers.get("retry-after"),
        )

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        params: dict[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if self._http.is_closed:
            raise RuntimeError("the secuconnect client is closed")  # as httpx would
        headers = [*self._headers, (b"Authorization", f"Bearer {token}".encode())]
        content = None
        if body is not None:
            # As httpx encodes json=: compact, UTF-8, no NaN.
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            content = text.encode()
            headers.append((b"Content-Type", b"application/json"))
        url = httpx.URL(self._origin + path, params=params)
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions=self._extensions
        )
        try:
            # httpx has no public way to ask which transport (mount, proxy) a URL takes.
            response = self._http._transport_for_url(url).handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.RequestError as exc:  # transport errors, and a body we cannot decode
            raise classify_transport_error(method, exc) from exc
        return response

    @staticmethod
    def _is_expired_token(response: httpx.Response) -> bool:
        if response.status_code == 401:
            return True
        return response.status_code == 403 and _EXPIRED_TOKEN_ERROR.encode() in response.content
