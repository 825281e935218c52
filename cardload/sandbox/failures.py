"""API errors as the sandbox raises and answers them.

The real list of error names and HTTP codes is unconfirmed; the sandbox uses this
table (documented in the README):

    400 ProductFormatException      2001  the request is malformed or invalid
    400 ProductNotAllowedException  2003  valid request, but not allowed now (locked card,
                                          starting a transaction that is not ``created``)
    403 ProductNotAllowedException  2003  missing, unknown or expired token
    404 ProductNotFoundException    2002  no such object or path
    429 ProductRateLimitException   2005  too many requests (``Retry-After`` set)
    500 ProductInternalException    2004  internal error
    503 ProductInternalException    2004  temporarily unavailable
"""

from __future__ import annotations

from dataclasses import dataclass

_USER_TEXT = {
    "ProductFormatException": "Die Anfrage ist ungültig.",
    "ProductNotAllowedException": "Diese Aktion ist nicht erlaubt.",
    "ProductNotFoundException": "Das Objekt wurde nicht gefunden.",
    "ProductRateLimitException": "Zu viele Anfragen. Bitte später erneut versuchen.",
    "ProductInternalException": "Ein interner Fehler ist aufgetreten.",
}
_CODES = {
    "ProductFormatException": 2001,
    "ProductNotFoundException": 2002,
    "ProductNotAllowedException": 2003,
    "ProductInternalException": 2004,
    "ProductRateLimitException": 2005,
}


@dataclass
class ApiFailure(Exception):
    http_status: int
    error: str
    details: str

    def body(self, support_id: str) -> dict[str, object]:
        return {
            "status": "error",
            "error": self.error,
            "error_details": self.details,
            "error_user": _USER_TEXT.get(self.error, "Ein Fehler ist aufgetreten."),
            "code": _CODES.get(self.error, 2000),
            "supportId": support_id,
        }


def invalid(details: str) -> ApiFailure:
    return ApiFailure(400, "ProductFormatException", details)


def not_allowed(details: str) -> ApiFailure:
    return ApiFailure(400, "ProductNotAllowedException", details)


def not_found(details: str) -> ApiFailure:
    return ApiFailure(404, "ProductNotFoundException", details)


def unauthorized() -> ApiFailure:
    return ApiFailure(403, "ProductNotAllowedException", "Valid auth token required")
