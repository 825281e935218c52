"""The API's flow control, shared by every worker on every host through Redis: one
circuit breaker and one rate limit for secuconnect."""

from cardload.flowcontrol.breaker import BreakerView, SharedBreaker
from cardload.flowcontrol.gate import ApiGate, api_gate
from cardload.flowcontrol.rate_limit import SharedRateLimit

__all__ = ["ApiGate", "BreakerView", "SharedBreaker", "SharedRateLimit", "api_gate"]
