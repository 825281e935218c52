"""secuconnect Smart Transactions: wire models, the error tree, and the HTTP client."""

from cardload.secuconnect.client import CallGate, SecuconnectClient, build_http
from cardload.secuconnect.errors import (
    AmbiguousError,
    CallHeldError,
    KeyConflictError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectError,
    TokenUnavailableError,
)
from cardload.secuconnect.methods import StartMethod
from cardload.secuconnect.models import (
    LOAD_EAN,
    ApiErrorBody,
    Balances,
    CreateSmartTransaction,
    SmartTransaction,
    SmartTransactionList,
)
from cardload.secuconnect.statuses import StatusMeaning, TransactionStatus
from cardload.secuconnect.tokens import Credentials, MemoryTokenSource, TokenSource, fetch_token

__all__ = [
    "LOAD_EAN",
    "AmbiguousError",
    "ApiErrorBody",
    "Balances",
    "CallGate",
    "CallHeldError",
    "CreateSmartTransaction",
    "Credentials",
    "KeyConflictError",
    "MemoryTokenSource",
    "NotFoundError",
    "PermanentError",
    "RateLimitedError",
    "RetryableError",
    "SecuconnectClient",
    "SecuconnectError",
    "SmartTransaction",
    "SmartTransactionList",
    "StartMethod",
    "StatusMeaning",
    "TokenSource",
    "TokenUnavailableError",
    "TransactionStatus",
    "build_http",
    "fetch_token",
]
