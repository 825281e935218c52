from __future__ import annotations

import re
from pathlib import Path

import pytest

from cardload.config import Settings, SettingsError, load_settings

EXAMPLE = Path(__file__).parents[2] / "cardload" / "config" / "cardload.env.example"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("CARDLOAD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_need_no_environment() -> None:
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.effective_broker_url == settings.redis_url
    assert settings.retry.max_attempts == 8
    assert settings.log.format == "json"


def test_public_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDLOAD_REDIS_URL", "redis://redis.internal:6380/2")
    monkeypatch.setenv("CARDLOAD_BROKER_URL", "amqp://guest@rabbit//")
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_BASE_URL", "http://127.0.0.1:8600/")
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_CLIENT_ID", "id-1")
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_CONTRACT_ID", "GCR_9OIH9JOL8KIV5PFJBEOS2NN8TCM1DF")
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_DEVICE_ID", "SDV_WPX6NU09Q2NDF0KJD3H584EXJR3XA2")
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_READ_TIMEOUT_S", "2.5")
    monkeypatch.setenv("CARDLOAD_RETRY_MAX_ATTEMPTS", "3")
    settings = load_settings()
    assert settings.redis_url == "redis://redis.internal:6380/2"
    assert settings.effective_broker_url == "amqp://guest@rabbit//"
    assert settings.secuconnect.base_url == "http://127.0.0.1:8600"
    assert settings.secuconnect.client_secret is not None
    assert settings.secuconnect.client_secret.get_secret_value() == "s3cret"
    assert settings.secuconnect.read_timeout_s == 2.5
    assert settings.retry.max_attempts == 3
    settings.require_secuconnect()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CARDLOAD_LOG_FORMAT=console\nCARDLOAD_EVENTS_STREAM=ev\n")
    settings = load_settings()
    assert settings.log.format == "console"
    assert settings.events.stream == "ev"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("CARDLOAD_REDIS_URL", "http://x", "must start with one of redis://"),
        ("CARDLOAD_BROKER_URL", "ftp://x", "must start with one of"),
        ("CARDLOAD_SECUCONNECT_BASE_URL", "connect.secucard.com", "http:// or https://"),
        ("CARDLOAD_SECUCONNECT_CONTRACT_ID", "GCR_short", "should match pattern"),
        ("CARDLOAD_SECUCONNECT_READ_TIMEOUT_S", "0", "greater than 0"),
        ("CARDLOAD_RETRY_MAX_ATTEMPTS", "many", "valid integer"),
        ("CARDLOAD_LOG_FORMAT", "xml", "'json' or 'console'"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{variable}: " in str(caught.value)
    assert problem in str(caught.value)


def test_backoff_bounds_are_checked_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDLOAD_RETRY_BASE_BACKOFF_S", "60")
    monkeypatch.setenv("CARDLOAD_RETRY_MAX_BACKOFF_S", "10")
    with pytest.raises(SettingsError, match="CARDLOAD_RETRY_BASE_BACKOFF_S must not exceed"):
        load_settings()


def test_missing_credentials_name_every_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings().require_secuconnect()
    for name in ("CLIENT_ID", "CLIENT_SECRET", "CONTRACT_ID", "DEVICE_ID"):
        assert f"CARDLOAD_SECUCONNECT_{name}: required" in str(caught.value)


def test_secret_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_CLIENT_SECRET", "hunter2-very-secret")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    # An invalid tree must not echo the secret either.
    monkeypatch.setenv("CARDLOAD_SECUCONNECT_MAX_CONNECTIONS", "hunter2-very-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_example_file_documents_every_setting_and_loads() -> None:
    documented = set(re.findall(r"^#?(CARDLOAD_[A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))
    expected = set()
    for name, field in Settings.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub:
            expected |= {f"CARDLOAD_{name}_{child}".upper() for child in sub}
        else:
            expected.add(f"CARDLOAD_{name}".upper())
    assert documented == expected
    assert load_settings(EXAMPLE).retry.max_backoff_s == 300
