"""The secuconnect Smart Transactions client: one httpx pool, typed calls, one error tree.

Every call sends ``Authorization: Bearer``. When the token is refused it drops the
token, fetches a new one and repeats the call once: on 401, as the official PHP and
Java SDKs do, and on 403 ``ProductNotAllowedException``, which is how secupay's
error-handling docs show an expired token ("Valid auth token required"); the SDKs do
not repeat on 403.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import ValidationError

from cardload._version import __version__
from cardload.observability.metrics import API_CALLS
from cardload.secuconnect.classify import classify_response, classify_transport_error
from cardload.secuconnect.errors import (
    AmbiguousError,
    PermanentError,
    RetryableError,
    SecuconnectError,
)
from cardload.secuconnect.models import (
    CreateSmartTransaction,
    SmartTransaction,
    SmartTransactionList,
)
from cardload.secuconnect.tokens import TokenSource
from cardload.secuconnect.transport import Answer, StdlibTransport, origin_of

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
    """The one connection pool a worker process uses: httpx's client over
    :class:`StdlibTransport`, or over httpx's own transport when the environment names a
    proxy for the API (``HTTPS_PROXY``, ``NO_PROXY``), or over ``transport`` (the tests'
    sandbox in process)."""
    client = httpx.Client(
        base_url=base_url,
        timeout=timeout or httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        transport=transport,
        headers={"User-Agent": f"cardload/{__version__}", "Accept": "application/json"},
    )
    # httpx reads the environment's proxies only when it makes its default transport
    # itself: let it, and put ours in place of that default where no proxy applies.
    if transport is None and client._transport_for_url(client.base_url) is client._transport:
        client._transport.close()
        client._transport = StdlibTransport(max_connections=max_connections)
    return client


class CallGate(Protocol):
    """What every call passes through before it is sent and after it ends: the shared
    circuit breaker and rate limit (``cardload.flowcontrol``). ``enter`` may wait, or
    raise :class:`CallHeldError` (the call is then not sent); ``leave`` is told how the
    call ended: the HTTP status, or the error when no answer came."""

    def held_for(self) -> float:
        """Seconds before calls may go (0: now): asked before a step claims its job."""
        ...

    def enter(self, endpoint: str) -> object: ...

    def leave(
        self,
        ticket: object,
        status: int | None,
        error: SecuconnectError | None,
        retry_after: str | None,
    ) -> None: ...


class _Open:
    """No gate: every call goes."""

    def held_for(self) -> float:
        return 0.0

    def enter(self, endpoint: str) -> object:
        return None

    def leave(
        self,
        ticket: object,
        status: int | None,
        error: SecuconnectError | None,
        retry_after: str | None,
    ) -> None:
        return None


def _endpoint(method: str, path: str) -> str:
    """The metrics' name for a call: create, get, start, prepare, cancel or list."""
    if path == TRANSACTIONS:
        return "create" if method == "POST" else "list"
    if method == "GET":
        return "get"
    for action in ("start", "prepare", "cancel"):
        if f"/{action}" in path:
            return action
    return "other"


def _search_pattern(merchant_ref: str) -> str:
    """A merchantRef as a quoted search value: ``*`` as ``?``, quotes escaped."""
    return merchant_ref.replace("*", "?").replace("\\", "\\\\").replace('"', '\\"')


class SecuconnectClient:
    """Calls go straight to the transport ``http`` chose for its base URL (its pool, its
    proxy), with its headers and timeouts as they were when this client was made:
    ``httpx.Client.request``'s own layers (request building, auth and redirect flows,
    cookies, event hooks) cost more CPU than the transport itself, and the API needs
    none of them (a redirect is not followed: it is an answer to retry)."""

    def __init__(
        self, http: httpx.Client, tokens: TokenSource, gate: CallGate | None = None
    ) -> None:
        self._http = http
        self._tokens = tokens
        self.gate: CallGate = gate or _Open()
        base = http.base_url
        self._origin = str(base).rstrip("/")
        self._prefix = base.raw_path.decode("ascii").rstrip("/")
        self._host = origin_of(base)
        # identity: the answers are small JSON, and undoing gzip costs more than it saves.
        self._headers = [
            *((k, v) for k, v in http.headers.raw if k.lower() != b"accept-encoding"),
            (b"Accept-Encoding", b"identity"),
        ]
        self._timeouts = http.timeout.as_dict()
        self._extensions = {"timeout": self._timeouts}
        # httpx has no public way to ask which transport (mount, proxy) a URL takes.
        transport = http._transport_for_url(base)
        self._transport = transport
        self._wire = transport if isinstance(transport, StdlibTransport) else None
        self._wire_headers = [(b"Host", base.netloc), *self._headers]

    def authenticate(self) -> None:
        """Make sure a token is at hand (cached, or fetched now); raises
        :class:`TokenUnavailableError` if none can be had. A step asks before it claims
        its job, so waiting for the token endpoint costs the job no attempt."""
        self._tokens.token()

    # --- Smart Transactions ----------------------------------------------------

    def create(self, request: CreateSmartTransaction) -> SmartTransaction:
        tx = self._transaction("POST", TRANSACTIONS, body=request.to_wire())
        if tx.merchant_ref is not None and tx.merchant_ref != request.merchant_ref:
            # Another request's answer (a connection out of step): what ours did is unknown.
            raise AmbiguousError("POST answered with a transaction for another merchantRef")
        return tx

    def get(self, transaction_id: str) -> SmartTransaction:
        return self._transaction("GET", f"{TRANSACTIONS}/{transaction_id}", of=transaction_id)

    def start(self, transaction_id: str, payment_method: str | None) -> SmartTransaction:
        """Pay (``/start/{payment_method}``, :data:`methods.START_METHODS`); ``None`` only
        after :meth:`prepare`, which chose the method (a bare ``/start``)."""
        path = f"{TRANSACTIONS}/{transaction_id}/start"
        return self._transaction(
            "POST", f"{path}/{payment_method}" if payment_method else path, of=transaction_id
        )

    def prepare(self, transaction_id: str, payment_method: str) -> SmartTransaction:
        """Authorise a payment (``/prepare/{payment_method}``, :data:`methods.PREPARE_METHODS`)
        for a bare start to capture."""
        return self._transaction(
            "POST", f"{TRANSACTIONS}/{transaction_id}/prepare/{payment_method}", of=transaction_id
        )

    def cancel(self, transaction_id: str) -> SmartTransaction:
        return self._transaction(
            "POST", f"{TRANSACTIONS}/{transaction_id}/cancel", of=transaction_id
        )

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
        """Transactions whose merchantRef is exactly this one, oldest first."""
        return self.find_by_merchant_refs([merchant_ref])[merchant_ref]

    def find_by_merchant_refs(
        self, merchant_refs: Sequence[str]
    ) -> dict[str, list[SmartTransaction]]:
        """For each merchantRef, the transactions whose merchantRef is exactly it, oldest
        first: one search for them all (``{merchantRef:"a"} OR {merchantRef:"b"}``).

        The search language has wildcards and no documented escape, so a key holding
        ``*`` or ``?`` matches other keys too: ``*`` is searched as ``?`` (one character,
        not any run), every page is read, and only exact matches are kept. The order is
        asked for (``sort=created:asc``); the API's default is not documented. Keys that
        together match more than ``PAGE * MAX_PAGES`` are a :class:`PermanentError`."""
        refs = list(dict.fromkeys(merchant_refs))
        terms = [f'merchantRef:"{_search_pattern(ref)}"' for ref in refs]
        q = terms[0] if len(terms) == 1 else " OR ".join(f"{{{term}}}" for term in terms)
        found: dict[str, list[SmartTransaction]] = {ref: [] for ref in refs}
        offset = 0
        while True:
            page = self.search(q=q, count=PAGE, offset=offset, sort="created:asc")
            for tx in page.data:
                if tx.merchant_ref in found:
                    found[tx.merchant_ref].append(tx)
            offset += len(page.data)
            if not page.data or offset >= page.count:
                return found
            if offset >= PAGE * MAX_PAGES:
                which = f"merchantRef {refs[0]!r} matches" if len(refs) == 1 else "keys match"
                raise PermanentError(
                    f"{which} {page.count} transactions in the API's search: too many to "
                    "look through; use keys without * or ?"
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

    def _transaction(
        self, method: str, path: str, of: str | None = None, **kw: Any
    ) -> SmartTransaction:
        tx = self._parse(method, SmartTransaction, self._call(method, path, **kw))
        if of is not None and tx.id != of:
            # Another request's answer (a connection out of step), never to be taken for
            # this one's: for a POST, what ours did is unknown.
            error = AmbiguousError if method == "POST" else RetryableError
            raise error(f"{method} for {of} answered with {tx.id}")
        return tx

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
        answer = self._send(method, path, token, **kw)
        if self._is_expired_token(answer):
            self._tokens.invalidate(token)
            answer = self._send(method, path, self._tokens.token(), **kw)
        if 200 <= answer.status < 300:
            return answer.content
        raise classify_response(
            method,
            answer.status,
            answer.content,
            answer.header("content-type") or "",
            answer.header("retry-after"),
        )

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        params: dict[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Answer:
        if self._http.is_closed:
            raise RuntimeError("the secuconnect client is closed")  # as httpx would
        headers = [(b"Authorization", f"Bearer {token}".encode())]
        content = None
        if body is not None:
            # As httpx encodes json=: compact, UTF-8, no NaN.
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            content = text.encode()
            headers.append((b"Content-Type", b"application/json"))
        endpoint = _endpoint(method, path)
        if params:
            path = f"{path}?{urlencode(params, quote_via=quote)}"
        ticket = self.gate.enter(endpoint)  # may wait, or raise CallHeldError: not sent
        began = time.perf_counter()
        try:
            answer = self._exchange(method, path, headers, content)
        except SecuconnectError as exc:
            API_CALLS.labels(endpoint, exc.kind).observe(time.perf_counter() - began)
            self.gate.leave(ticket, None, exc, None)
            raise
        except BaseException:
            self.gate.leave(ticket, None, None, None)  # ours (a bug), not the API's
            raise
        API_CALLS.labels(endpoint, str(answer.status)).observe(time.perf_counter() - began)
        self.gate.leave(ticket, answer.status, None, answer.header("retry-after"))
        return answer

    def _exchange(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], content: bytes | None
    ) -> Answer:
        try:
            if self._wire is not None:
                if content is not None or method == "POST":
                    headers.append((b"Content-Length", str(len(content or b"")).encode()))
                return self._wire.exchange(
                    method,
                    self._host,
                    self._prefix + path,
                    headers=[*self._wire_headers, *headers],
                    body=content,
                    timeouts=self._timeouts,
                )
            request = httpx.Request(
                method,
                httpx.URL(self._origin + path),
                headers=[*self._headers, *headers],
                content=content,
                extensions=self._extensions,
            )
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.RequestError as exc:  # transport errors, and a body we cannot decode
            raise classify_transport_error(method, exc) from exc
        return Answer(response.status_code, response.headers.multi_items(), response.content)

    @staticmethod
    def _is_expired_token(answer: Answer) -> bool:
        if answer.status == 401:
            return True
        return answer.status == 403 and _EXPIRED_TOKEN_ERROR.encode() in answer.content
