"""API keys: printed once, kept as a hash, compared whole; listed and revoked by name."""

from __future__ import annotations

import json

import fakeredis
import pytest
import redis

from cardload.apikeys import ApiKeyStore, NameTaken
from cardload.jobs import keys
from tests.services import run_cli
from tests.support import make_settings


def test_a_key_is_kept_only_as_a_hash(fake_redis: fakeredis.FakeRedis) -> None:
    store = ApiKeyStore(fake_redis)
    record, key = store.create("shop-eu", ["read", "submit"])
    assert key.startswith(f"clk_{record.key_id}_") and record.scopes == ("submit", "read")
    stored = repr(fake_redis.hgetall(keys.API_KEYS)) + repr(fake_redis.hgetall(keys.API_KEY_NAMES))
    assert key.rsplit("_", 1)[1] not in stored
    assert store.authenticate(key) == record
    assert store.authenticate(key + "x") is None
    assert store.authenticate(key[:-1] + ("a" if key[-1] != "a" else "b")) is None
    assert store.authenticate("") is None
    assert "secret" not in repr(record.view()) and key not in repr(record)


def test_names_are_unique_and_revocation_is_at_once(fake_redis: fakeredis.FakeRedis) -> None:
    store = ApiKeyStore(fake_redis)
    _, key = store.create("payroll", ["submit"])
    with pytest.raises(NameTaken):
        store.create("payroll", ["read"])
    with pytest.raises(ValueError, match="scopes"):
        store.create("other", ["admin"])
    with pytest.raises(ValueError, match="name"):
        store.create("a b", ["read"])
    assert [k.name for k in store.list()] == ["payroll"]
    assert store.revoke("payroll") and not store.revoke("payroll")
    assert store.authenticate(key) is None and store.list() == []
    store.create("payroll", ["read"])  # the name is free again


def test_the_cli_prints_a_key_once(real_redis: redis.Redis, redis_url: str) -> None:
    settings = make_settings(redis_url, "http://sandbox.test")
    made = run_cli(
        settings, "api-keys", "create", "--name", "erp", "--scopes", "submit,read", "--json"
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["name"] == "erp" and created["scopes"] == ["submit", "read"]
    assert ApiKeyStore(real_redis).authenticate(created["key"]) is not None
    listed = run_cli(settings, "api-keys", "list", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "erp"
    assert created["key"].rsplit("_", 1)[1] not in listed.stdout
    again = run_cli(settings, "api-keys", "create", "--name", "erp", "--scopes", "read")
    assert again.returncode == 2 and "exists" in again.stderr
    bad = run_cli(settings, "api-keys", "create", "--name", "x", "--scopes", "root")
    assert bad.returncode == 2 and "root" in bad.stderr
    assert run_cli(settings, "api-keys", "revoke", "erp").returncode == 0
    assert run_cli(settings, "api-keys", "revoke", "erp").returncode == 1
    assert ApiKeyStore(real_redis).authenticate(created["key"]) is None
