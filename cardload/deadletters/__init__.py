"""Jobs that could not succeed: kept with their reason, inspectable and replayable."""

from cardload.deadletters.store import DeadLetter, DeadLetterStore

__all__ = ["DeadLetter", "DeadLetterStore"]
