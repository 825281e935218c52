"""Configuration: one typed settings tree read from ``CARDLOAD_*`` variables and ``.env``."""

from cardload.config.settings import (
    ApiSettings,
    EventSettings,
    JobSettings,
    LoadMethod,
    LogSettings,
    RetrySettings,
    SecuconnectSettings,
    Settings,
    SettingsError,
    WebhookSettings,
    WorkerSettings,
    load_settings,
    to_env,
)

__all__ = [
    "ApiSettings",
    "EventSettings",
    "JobSettings",
    "LoadMethod",
    "LogSettings",
    "RetrySettings",
    "SecuconnectSettings",
    "Settings",
    "SettingsError",
    "WebhookSettings",
    "WorkerSettings",
    "load_settings",
    "to_env",
]
