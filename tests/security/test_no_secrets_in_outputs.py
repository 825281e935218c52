"""One full run with real parts (our redis-server, a ``cardload worker`` subprocess with
``--metrics-port``, the sandbox over HTTP, ``cardload api`` as a subprocess, Flower,
a webhook receiver), then every output of it searched for what must never leak: the
client secret, every access token the sandbox issued, the API keys (their secret part),
the webhook secret, and whole card numbers (also grouped in fours by spaces or dashes).

The run: a success with a 503 on its start (a retry), the tokens expired (a second
token fetched), a LOCKED_CARD dead letter (its refusal quotes the card), a load, an
invalid body holding a card number and a batch (one row without a reference: its key
is an HMAC) over HTTP, a dead letter replayed over HTTP, every event delivered to a
signed webhook.

Searched: every process's log (worker, API, Flower), every HTTP API response body, the
metrics text (worker and API), Flower's ``/api/tasks`` and ``/api/workers``, the webhook
bodies, and every Redis key (SCAN, read raw by type: the event stream, the dead-letter
entries, job records and histories, the broker's messages with their base64 bodies
decoded, batches, keys, webhooks).

What may hold a whole card number, on purpose (README, ``cardload/jobs/store.py``,
``cardload/deadletters/store.py``):

- a job record (the hash ``cardload:job:<id>``): its spec (``job.N``) is what the
  worker loads the card with, and its result keeps the API's receipt as answered
  (unmasked in the record, masked in the event: ``tests/support.assert_seed_result``);
- a dead-letter entry's ``job`` (the spec, to replay it): everything else in the entry
  (error, API texts, history) is masked;
- nothing else: the job's history list, events (``CARDLOAD_EVENTS_MASK_CARD_NUMBERS``
  defaults to true), the broker's messages, batch keys and every output above.
  (``batch report --unmasked`` writes a file on request; the run does not ask for one.)

The webhook secret may be in Redis's endpoint hash only (deliveries are signed with
it); the client secret, tokens and API keys nowhere at all (Redis keeps an API key's
SHA-256, never the access token).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from cardload.apikeys import ApiKeyStore
from cardload.config import LogSettings
from cardload.events import EventStream
from cardload.jobs import CardLoadJob, ExtraLine, JobStatus, job_store
from cardload.producers.enqueue import CardLoadProducer
from cardload.sandbox import GIFT_CARD, LOCKED_CARD, SEED_CARD, SandboxApp, serve_in_thread
from cardload.webhooks.endpoints import EVENT_TYPES
from cardload.worker import create_app
from cardload.worker.dispatch import redis_queue_lists
from tests.services import free_port, wait_for
from tests.support import make_settings
from tests.webhooks.receiver import Receiver, receiving
from tests.worker.conftest import Stack
from tests.worker.test_api_end_to_end import ApiProcess
from tests.worker.test_flower import flower_process
from tests.worker.test_webhooks_end_to_end import hook_settings, register

CARDS = (SEED_CARD, LOCKED_CARD, GIFT_CARD)
MASKED_SEED = "927600******4352"
# Where each output comes from: the tests below check one kind each.
KINDS = ("log", "http", "metrics", "flower", "webhook", "redis")


def card_forms(card: str) -> list[str]:
    groups = [card[i : i + 4] for i in range(0, len(card), 4)]
    return [card, " ".join(groups), "-".join(groups)]


@dataclass
class Run:
    outputs: dict[str, str] = field(default_factory=dict)  # "kind:where" -> text
    secrets: dict[str, str] = field(default_factory=dict)  # what it is -> the value
    webhook_secret: str = ""
    dead_letters: str = ""  # the dead-letter index: its entries are "<index>:<job id>"
    queue: str = ""
    tokens: list[str] = field(default_factory=list)

    def add(self, kind: str, where: str, text: str) -> None:
        assert kind in KINDS
        name = f"{kind}:{where}"
        self.outputs[name] = self.outputs.get(name, "") + text + "\n"

    def of(self, kind: str) -> dict[str, str]:
        return {k: v for k, v in self.outputs.items() if k.startswith(kind + ":")}


# --- collecting Redis -------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def _decoded_bodies(text: str) -> Iterator[str]:
    """A kombu message (in a queue list, or the unacked hash's [message, ...]) carries
    its body base64-encoded: decoded here, or a card in it would go unseen."""
    try:
        found: Any = json.loads(text)
    except ValueError:
        return
    stack = [found]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            body, props = item.get("body"), item.get("properties")
            encoded = isinstance(props, dict) and props.get("body_encoding") == "base64"
            if isinstance(body, str) and encoded:
                try:
                    yield base64.b64decode(body).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    yield body
            stack.extend(item.values())


BODY = "(message body) "
QUEUED = " (while queued)"


def read_redis(client: redis.Redis) -> dict[str, str]:
    """Every key, read raw by its type (XRANGE, HGETALL, LRANGE, ...)."""
    readers: dict[str, Any] = {
        "string": client.get,
        "hash": client.hgetall,
        "list": lambda k: client.lrange(k, 0, -1),
        "set": client.smembers,
        "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        "stream": client.xrange,
    }
    found: dict[str, str] = {}
    for raw in client.scan_iter(count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = _text(client.type(raw))
        assert kind in readers, f"{key}: a Redis type this test does not read: {kind}"
        texts = list(_strings(readers[kind](raw)))
        texts += [BODY + body for text in texts for body in _decoded_bodies(text)]
        found[key] = "\n".join([key, *texts])
    return found


# --- the parts of the run ---------------------------------------------------------


def flower(stack: Stack) -> AbstractContextManager[str]:
    """Flower as tests/worker/test_flower.py starts it, warmed up on GIFT_CARD loads."""
    return flower_process(stack)


class Recorder:
    """Every HTTP API response body of the run."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        where = f"{response.request.method} {response.request.url.path} {response.status_code}"
        self.run.add("http", where, response.text)


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} | headers


def _poll(http: httpx.Client, key: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = http.get(f"/v1/card-loads/{job_id}", headers=bearer(key)).json()
        return view if view["status"] in ("succeeded", "dead_lettered") else None

    return wait_for(finished, 60, f"job {job_id} to finish over HTTP")


def _over_http(stack: Stack, run: Run, keys: dict[str, str]) -> None:
    """Loads, a batch, refusals and a replay through ``cardload api``; the API's log
    and metrics collected when done."""
    process = ApiProcess(stack)
    try:
        hooks: dict[str, Any] = {"response": [Recorder(run)]}
        with httpx.Client(base_url=process.url, timeout=10, event_hooks=hooks) as http:
            _http_calls(stack, http, keys)
            run.add("metrics", "api", http.get("/metrics", headers=bearer(keys["ops"])).text)
    finally:
        process.stop()
    run.add("log", "api", process.log_path.read_text())


def _http_calls(stack: Stack, http: httpx.Client, keys: dict[str, str]) -> None:
    shop, ops = keys["shop"], keys["ops"]
    body = {"card_number": SEED_CARD, "amount_cents": 700, "order_id": "SO-7"}
    made = http.post("/v1/card-loads", json=body, headers=bearer(shop, **{"Idempotency-Key": "k7"}))
    assert made.status_code == 202, made.text
    assert _poll(http, shop, made.json()["job_id"])["card_number"] == MASKED_SEED
    # Refusals that had a card number in the request: never echoed back.
    conflict = body | {"amount_cents": 701}
    headers = bearer(shop, **{"Idempotency-Key": "k7"})
    assert http.post("/v1/card-loads", json=conflict, headers=headers).status_code == 409
    invalid = {"card_number": SEED_CARD + "0", "amount_cents": -5, "order_id": SEED_CARD}
    headers = bearer(shop, **{"Idempotency-Key": "k8"})
    assert http.post("/v1/card-loads", json=invalid, headers=headers).status_code == 422
    assert http.get("/v1/dead-letters", headers=bearer(shop)).status_code == 403
    assert http.get("/v1/dead-letters", headers=bearer(shop[:-2] + "zz")).status_code == 401

    rows = [
        "card_number;betrag;waehrung;referenz",
        f"{SEED_CARD};20,00;EUR;lohn-1",
        f"{SEED_CARD[:10]};5,00;EUR;lohn-2",  # invalid: a part of a card
        f"{LOCKED_CARD};7,00;EUR;lohn-3",
        f"{card_forms(SEED_CARD)[1]};3,00;EUR;",  # grouped, no reference
    ]
    answer = http.post(
        "/v1/batches",
        params={"name": "lohn-2026-12"},
        content="\n".join(rows).encode(),
        headers=bearer(shop, **{"Content-Type": "text/csv"}),
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["enqueued"] == 3

    def batch_done() -> bool:
        got = http.get("/v1/batches/lohn-2026-12", headers=bearer(shop)).json()
        return bool(got["finished"])

    wait_for(batch_done, 60, "the batch to finish")
    report = http.get("/v1/batches/lohn-2026-12/report.csv", headers=bearer(shop))
    assert report.status_code == 200 and "******" in report.text

    letters = http.get("/v1/dead-letters", headers=bearer(ops)).json()
    assert letters["total"] == 2  # the producer's locked card and the batch's
    job_id = letters["items"][0]["job_id"]
    assert http.post(f"/v1/dead-letters/{job_id}/replay", headers=bearer(ops)).status_code == 202
    assert _poll(http, ops, job_id)["status"] == "dead_lettered"  # still locked
    for probe in ("/healthz", "/readyz"):
        assert http.get(probe).status_code == 200


def perform(stack: Stack, receiver: Receiver, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    issue = stack.sandbox.auth.issue

    def recorded(form: dict[str, Any]) -> dict[str, Any]:
        answer = issue(form)
        run.tokens.append(answer["access_token"])
        return answer

    monkeypatch.setattr(stack.sandbox.auth, "issue", recorded)
    settings = hook_settings(stack)
    # JSON lines at DEBUG: what production writes, and the most it could write.
    settings = settings.model_copy(update={"log": LogSettings(format="json", level="DEBUG")})
    register(settings, receiver)
    run.webhook_secret = receiver.secret
    run.dead_letters = settings.events.dead_letters
    run.queue = settings.jobs.queue
    store = ApiKeyStore(stack.redis)
    keys = {
        name: store.create(name, scopes)[1]
        for name, scopes in (("shop", ["submit", "read"]), ("ops", ["operate", "read"]))
    }
    # A job waiting in the broker (no worker yet): its message read too, body decoded.
    queued = CardLoadJob(idempotency_key="queued", card_number=GIFT_CARD, amount_cents=50)
    stack.producer.enqueue(queued)
    for key, text in read_redis(stack.redis).items():
        run.add("redis", key + QUEUED, text)
    metrics_port = free_port()
    worker = stack.start_worker("--metrics-port", str(metrics_port), settings=settings)
    with flower(stack) as flower_url:
        stack.faults({"kind": "error_503", "endpoint": "start", "times": 1})  # a retry
        dining = ExtraLine(desc="Dining", price_one_cents=5900, tax=19, article_number="30200")
        job = CardLoadJob(
            idempotency_key="seed", card_number=SEED_CARD, amount_cents=2000, extra_lines=[dining]
        )
        seed_id = stack.producer.enqueue(job)
        record = stack.finished(seed_id)
        assert record.status is JobStatus.SUCCEEDED and record.attempts["start"] == 2  # retried
        assert stack.sandbox.auth.expire_all() == 1  # the next job fetches a second token
        locked = CardLoadJob(idempotency_key="locked", card_number=LOCKED_CARD, amount_cents=1)
        assert stack.finished(stack.producer.enqueue(locked)).status is JobStatus.DEAD_LETTERED
        _over_http(stack, run, keys)

        def both_seed_tasks() -> str | None:
            tasks = httpx.get(f"{flower_url}/api/tasks")
            done = [
                t
                for t in tasks.json().values()
                if seed_id in str(t.get("args")) and t.get("state") == "SUCCESS"
            ]
            return tasks.text if len(done) >= 2 else None

        run.add("flower", "/api/tasks", wait_for(both_seed_tasks, 30, "flower's tasks"))
        run.add("flower", "/api/workers", httpx.get(f"{flower_url}/api/workers").text)
        events = stack.redis.xlen(stack.settings.events.stream)
        wait_for(lambda: len(receiver.processed) == events, 60, f"{events} webhook deliveries")
        run.add("metrics", "worker", httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
    run.add("log", "flower", (stack.tmp_path / "flower.log").read_text())
    worker.stop()  # its last lines written
    run.add("log", "worker", worker.log())
    for event_id, body in receiver.bodies.items():
        run.add("webhook", event_id, body.decode())
    for key, text in read_redis(stack.redis).items():
        run.add("redis", key, text)
    secret = stack.settings.secuconnect.client_secret
    assert secret is not None
    run.secrets = {"the client secret": secret.get_secret_value()}
    run.secrets |= {f"access token {i}": t for i, t in enumerate(run.tokens)}
    for name, key in keys.items():
        run.secrets[f"the API key {name}"] = key
        run.secrets[f"the API key {name}'s secret"] = key.rsplit("_", 1)[1]


@pytest.fixture(scope="module")
def run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run, once for the module's tests: the ``stack`` fixture of tests/worker, at
    module scope."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    tmp_path = tmp_path_factory.mktemp("secrets-run")
    done = Run()
    sandbox = SandboxApp()
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        serve_in_thread(sandbox) as server,
        receiving(Receiver()) as receiver,
    ):
        settings = make_settings(redis_url, server.url, retry={"max_backoff_s": 2.0})
        producer = CardLoadProducer(create_app(settings), job_store(client, settings), settings)
        events = EventStream(client, settings.events.stream)
        stack = Stack(
            sandbox=sandbox,
            sandbox_url=server.url,
            settings=settings,
            redis=client,
            producer=producer,
            events=events,
            tmp_path=tmp_path,
            workers=[],
        )
        try:
            perform(stack, receiver, done, monkeypatch)
        except BaseException:
            stack.print_logs()
            raise
        finally:
            for worker in stack.workers:
                worker.stop()
            client.close()
    yield done


# --- what may hold a card number, and where ----------------------------------------


def _without_documented_cards(where: str, text: str, run: Run) -> str | None:
    """The part of an output that must hold no whole card number; None: all of it may."""
    if not where.startswith("redis:"):
        return text
    key = where.removeprefix("redis:").removesuffix(QUEUED)
    if key.startswith("cardload:job:") and key.count(":") == 2:
        return None  # the job record: the spec and the receipt as answered
    if is_dead_letter(run, key):
        entry = json.loads(text.split("\n", 1)[1])
        assert entry["job"]["card_number"] in CARDS  # the spec is here, whole (replay)
        return json.dumps({k: v for k, v in entry.items() if k != "job"})
    return text


def is_dead_letter(run: Run, key: str) -> bool:
    """A dead-letter entry: ``<dead letters>:<job id>`` (``keys.dead_letter``)."""
    index, _, job_id = key.rpartition(":")
    return index == run.dead_letters and len(job_id) == 32


def card_leaks(run: Run, kind: str) -> list[str]:
    leaks = []
    for where, text in run.of(kind).items():
        searched = _without_documented_cards(where, text, run)
        if searched is None:
            continue
        for card in CARDS:
            leaks += [f"card {form!r} in {where}" for form in card_forms(card) if form in searched]
    return leaks


def secret_leaks(run: Run, kind: str) -> list[str]:
    leaks = []
    for where, text in run.of(kind).items():
        for what, value in run.secrets.items():
            if value in text:
                leaks.append(f"{what} in {where}")
        allowed = where.removesuffix(QUEUED) == "redis:cardload:webhooks:endpoints"
        if run.webhook_secret in text and not allowed:
            leaks.append(f"the webhook secret in {where}")
    return leaks


# --- the checks -----------------------------------------------------------------


def test_the_run_had_everything_to_leak(run: Run) -> None:
    """The searches below look at real outputs: each kind collected and non-empty, the
    masked card where it belongs, the whole one in the documented places."""
    assert {k.split(":")[0] for k in run.outputs} == set(KINDS)
    assert len(run.tokens) >= 2  # one expired, one fetched after
    assert run.webhook_secret and len(run.secrets) >= 5
    assert MASKED_SEED in run.outputs["log:worker"]  # (the API logs requests, no cards)
    assert "api.request" in run.outputs["log:api"]
    assert "927600******0001" in run.outputs["log:worker"]  # the dead letter's refusal
    assert any(MASKED_SEED in text for text in run.of("webhook").values())
    assert MASKED_SEED in run.outputs["flower:/api/tasks"]  # the tasks' labels
    records = [k for k in run.of("redis") if re.fullmatch(r"redis:cardload:job:[0-9a-f]{32}", k)]
    assert records and any(SEED_CARD in run.outputs[k] for k in records)  # read and decoded
    streams = [v for v in run.of("redis").values() if "card_load.succeeded" in v]
    assert streams, "the event stream was read"
    assert any(is_dead_letter(run, k.removeprefix("redis:")) for k in run.outputs)
    lists = [f"redis:{name}{QUEUED}" for name in redis_queue_lists(run.queue)]
    queued = "".join(run.outputs.get(name, "") for name in lists)  # the broker's lists
    assert BODY in queued and "cardload.create" in queued
    delivered = "".join(run.of("webhook").values())
    assert all(f'"type":"{t}"' in delivered.replace(" ", "") for t in EVENT_TYPES)


@pytest.mark.parametrize("kind", KINDS)
def test_no_secret_token_or_api_key(run: Run, kind: str) -> None:
    leaks = secret_leaks(run, kind)
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("kind", KINDS)
def test_no_whole_card_number_outside_the_documented_places(run: Run, kind: str) -> None:
    leaks = card_leaks(run, kind)
    assert not leaks, "\n".join(leaks)


def test_the_searches_find_a_planted_leak() -> None:
    """The checks themselves, on outputs made up here (no run): each form of a card and
    each secret found where it must not be, let through where it may be."""
    planted = Run(secrets={"the client secret": "s3cret"}, webhook_secret="whsec", dead_letters="d")
    entry = {"job": {"card_number": SEED_CARD}, "error": {"details": "card " + LOCKED_CARD}}
    planted.add("log", "worker", "card 9276-0044-2464-4352 and s3cret")
    planted.add("redis", "cardload:job:" + "0" * 32, SEED_CARD + " whsec")
    planted.add("redis", "d:" + "0" * 32, "d:x\n" + json.dumps(entry))
    planted.add("redis", "cardload:webhooks:endpoints" + QUEUED, "whsec")
    assert card_leaks(planted, "log") == ["card '9276-0044-2464-4352' in log:worker"]
    assert card_leaks(planted, "redis") == [f"card {LOCKED_CARD!r} in redis:d:{'0' * 32}"]
    assert secret_leaks(planted, "log") == ["the client secret in log:worker"]
    record = f"redis:cardload:job:{'0' * 32}"
    assert secret_leaks(planted, "redis") == [f"the webhook secret in {record}"]
