"""Configuration: one typed settings tree read from ``CARDLOAD_*`` variables and ``.env``."""

from cardload.config.settings import (
    EventSettings,
    JobSettings,
    LoadMethod,
    LogSettings,
    RetrySettings,
    SecuconnectSettings,
    Settings,
    SettingsError,
    WorkerSettings,
    load_settings,
    to_env,
)

__all__ = [
    "EventSettings",
    "JobSettings",
    "LoadMethod",
    "LogSettings",
    "RetrySettings",
    "SecuconnectSettings",
    "Settings",
    "SettingsError",
    "WorkerSettings",
    "load_settings",
    "to_env",
]
