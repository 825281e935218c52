"""Configuration: one typed settings tree read from ``CARDLOAD_*`` variables and ``.env``."""

from config.settings import (
    EventSettings,
    LogSettings,
    RetrySettings,
    SecuconnectSettings,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = [
    "EventSettings",
    "LogSettings",
    "RetrySettings",
    "SecuconnectSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]
