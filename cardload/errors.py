"""The one base class of every error cardload raises on purpose.

    CardloadError
    ├── SettingsError            invalid or missing settings (config)
    ├── SecuconnectError         a call to secuconnect failed (secuconnect.errors has the tree)
    ├── IdempotencyConflict      a key used before for other content (jobs)
    ├── FenceLost                a step's write refused: another delivery holds the job (jobs)
    ├── AmountError              an amount a person wrote is not one (producers)
    ├── AmountLimitError         a job above the configured maximum (producers)
    ├── PaymentMethodError       a job to be paid with a method a load cannot use (producers)
    ├── JobStoreUnavailable      Redis unreachable while enqueueing (producers)
    │   └── NotReplicated        jobs admitted, not confirmed by the replicas asked for
    ├── BrokerUnavailable        jobs admitted, their messages not sent (producers)
    ├── BatchFileError           a batch file that cannot be read as a whole (producers)
    ├── UnknownBatch             no batch by that id (producers)
    └── MissingExtraError        a part that needs an extra that is not installed

Causes are kept (``raise ... from exc``), except where the cause would carry a secret
or the API's own values into a traceback; those places say so.
"""

from __future__ import annotations


class CardloadError(Exception):
    """Base of every error cardload raises on purpose."""


class MissingExtraError(CardloadError, ImportError):
    """A part of cardload whose extra is not installed (``pip install 'cardload[...]'``)."""
