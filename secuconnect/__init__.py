"""secuconnect Smart Transactions: wire models, the error tree, and the HTTP client."""

from secuconnect.client import SecuconnectClient, build_http
from secuconnect.errors import (
    AmbiguousError,
    AuthenticationError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectError,
)
from secuconnect.models import (
    LOAD_EAN,
    ApiErrorBody,
    Balances,
    CreateSmartTransaction,
    SmartTransaction,
    SmartTransactionList,
    TransactionStatus,
)
from secuconnect.tokens import Credentials, MemoryTokenSource, TokenSource, fetch_token

__all__ = [
    "LOAD_EAN",
    "AmbiguousError",
    "ApiErrorBody",
    "AuthenticationError",
    "Balances",
    "CreateSmartTransaction",
    "Credentials",
    "MemoryTokenSource",
    "NotFoundError",
    "PermanentError",
    "RateLimitedError",
    "RetryableError",
    "SecuconnectClient",
    "SecuconnectError",
    "SmartTransaction",
    "SmartTransactionList",
    "TokenSource",
    "TransactionStatus",
    "build_http",
    "fetch_token",
]
