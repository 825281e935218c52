"""The chaos audit: many card loads through several workers while workers are SIGKILLed
and restarted every few seconds, the API misbehaves and Redis is killed and started
again once; then an audit that joins the sandbox's ledger (what the API booked), the job
records, the dead letters and the event stream, and `cardload reconcile`.

    .venv/bin/python bench/chaos.py --jobs 1000                     # a few minutes
    .venv/bin/python bench/chaos.py --jobs 10000 --workers 3
    .venv/bin/python bench/chaos.py --jobs 10000 --broker rabbitmq  # root, or user rabbitmq

It prints jobs accepted, cards loaded once, twice, lost, dead-lettered (and of those,
loaded anyway), events per job, whether every card's balance is the sum of its loads,
and what `cardload reconcile` found, and exits 1 on any discrepancy. Everything runs on
a private redis-server (AOF, appendfsync everysec: a kill loses at most the last
second, as in production) and a sandbox process of its own; the broker is that Redis,
or with ``--broker rabbitmq`` a private RabbitMQ node (its own ports, data and cookie),
SIGKILLed and started again once too, at three quarters of the loads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from stack import ROOT, bench_settings, sandbox_process, start, stop

from cardload.cli.localstack import free_port, wait_for
from cardload.config import Settings, to_env
from cardload.events import EventStream
from cardload.jobs import CardLoadJob, JobRecord, JobStatus, job_store
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app

FAULTS: list[dict[str, Any]] = [
    {"kind": "error_503", "probability": 0.05},
    {"kind": "commit_then_lose", "probability": 0.02, "lose_as": "timeout", "delay_ms": 6000},
    {"kind": "commit_then_lose", "probability": 0.02, "endpoint": "create"},
    {"kind": "commit_then_lose", "probability": 0.02, "endpoint": "start"},
    {"kind": "rate_limit", "probability": 0.01, "retry_after_s": 1},
]


class PrivateRedis:
    """redis-server with AOF on a port and directory of its own; killed and started again
    on the same ones."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir"]
        argv += [str(self.directory), "--appendonly", "yes", "--appendfsync", "everysec"]
        argv += ["--save", "", "--maxmemory-policy", "noeviction"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        # After a kill it loads its AOF before it answers: a large one takes a while.
        wait_for(lambda: _pings(client), 120, "redis-server to answer")
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class PrivateRabbit:
    """A RabbitMQ node of its own (name, AMQP and distribution ports, data directory,
    Erlang cookie), beside the machine's; SIGKILLed and started again on the same data,
    where its quorum queue recovers what it had confirmed."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin") or shutil.which(
            "rabbitmq-server"
        )
        assert binary, "rabbitmq-server is not installed"
        self.binary, self.directory = binary, directory
        self.port, self.dist_port = free_port(), free_port()
        (directory / "home").mkdir(parents=True, exist_ok=True)
        (directory / "plugins").write_text("[].\n")  # no management listener to collide
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> None:
        d = self.directory
        env = os.environ | {
            "HOME": str(d / "home"),
            "RABBITMQ_NODENAME": f"cardload-chaos-{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        with (d / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary], env=env, stdout=log, stderr=log, start_new_session=True
            )
        wait_for(self._listens, 120, "the private RabbitMQ to take connections")

    def _listens(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server ended: see {self.directory / 'server.log'}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Workers:
    def __init__(self, settings: Settings, count: int, logs: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
        self.env = env | to_env(settings)
        self.logs = logs
        self.started = 0
        self.procs = [self._start() for _ in range(count)]

    def _start(self) -> subprocess.Popen[str]:
        self.started += 1
        log = (self.logs / f"worker-{self.started}.log").open("w")
        command = ["worker", "--without-mingle", "--without-gossip", "--concurrency=16"]
        command += ["--hostname", f"chaos-{self.started}@%h"]
        return start(
            [sys.executable, "-m", "cardload.cli.main", *command],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = self._start()

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    store_redis = PrivateRedis(tmp / "redis")
    rabbit = PrivateRabbit(tmp / "rabbitmq") if args.broker == "rabbitmq" else None
    try:
        with sandbox_process(args.latency_ms) as url:
            http = httpx.Client(base_url=url, timeout=30)
            http.put("/_sandbox/faults", json={"seed": args.seed, "rules": FAULTS})
            cards = http.post("/_sandbox/cards", json={"count": args.jobs}).json()["cardnumbers"]
            settings = bench_settings(
                store_redis.url,
                url,
                jobs={"stall_after_s": 60, "visibility_timeout_s": 60, "lease_s": 10},
                retry={"max_backoff_s": 5, "max_attempts": 8},
                secuconnect={"read_timeout_s": 5},
            )
            if rabbit is not None:
                settings = settings.model_copy(update={"broker_url": rabbit.url})
            workers = Workers(settings, args.workers, tmp)
            try:
                return _chaos(
                    args, rng, settings, workers=workers, store_redis=store_redis,
                    rabbit=rabbit, http=http, cards=cards,
                )  # fmt: skip
            finally:
                workers.stop()
    finally:
        store_redis.stop()
        if rabbit is not None:
            rabbit.stop()


def _chaos(
    args: argparse.Namespace,
    rng: random.Random,
    settings: Settings,
    *,
    workers: Workers,
    store_redis: PrivateRedis,
    rabbit: PrivateRabbit | None,
    http: httpx.Client,
    cards: list[str],
) -> dict[str, Any]:
    app = create_app(settings)
    wait_for(lambda: app.control.ping(timeout=1), 60, "the workers")
    client = redis.Redis.from_url(settings.redis_url)
    producer = CardLoadProducer(app, job_store(client, settings), settings)
    jobs = [
        CardLoadJob(idempotency_key=f"chaos-{i}", card_number=card, amount_cents=100 + i % 900)
        for i, card in enumerate(cards)
    ]
    for i in range(0, len(jobs), 1000):
        producer.enqueue_many(jobs[i : i + 1000])
    began = time.monotonic()
    kills, redis_killed, broker_killed = 0, False, False
    deadline = began + args.timeout_s
    next_kill = began + args.kill_every_s
    while time.monotonic() < deadline:
        loads = int(http.get("/_sandbox/stats").json()["loads"])
        if not redis_killed and loads >= len(jobs) // 2:
            store_redis.kill()  # everything after the last fsync (at most a second) is lost
            time.sleep(1.0)  # down for a moment, as a restart is
            store_redis.start()
            redis_killed = True
            print(f"  redis killed and restarted at {loads} loads", flush=True)
        if rabbit is not None and not broker_killed and loads >= len(jobs) * 3 // 4:
            rabbit.kill()  # what it had confirmed is in its log on disk
            rabbit.start()
            broker_killed = True
            print(f"  rabbitmq killed and restarted at {loads} loads", flush=True)
        if time.monotonic() >= next_kill:
            workers.kill_one(rng)
            kills += 1
            next_kill += args.kill_every_s
        if _all_done(producer, jobs):
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - began
    report = _audit(
        settings, client, http, jobs=jobs, kills=kills, redis_killed=redis_killed, elapsed=elapsed
    )
    report["broker"] = args.broker
    if rabbit is not None:
        report["rabbitmq_killed"] = broker_killed
    return report


def _all_done(producer: CardLoadProducer, jobs: list[CardLoadJob]) -> bool:
    try:
        records = producer.store.load_many([j.job_id for j in jobs], history=False)
    except redis.RedisError:
        return False  # Redis restarting
    return all(r is not None and r.status.terminal for r in records)


def _audit(
    settings: Settings,
    client: redis.Redis,
    http: httpx.Client,
    *,
    jobs: list[CardLoadJob],
    kills: int,
    redis_killed: bool,
    elapsed: float,
) -> dict[str, Any]:
    store = job_store(client, settings)
    found = store.load_many([j.job_id for j in jobs], history=False)
    records = {j.job_id: r for j, r in zip(jobs, found, strict=True)}
    ledger = [e for e in http.get("/_sandbox/ledger").json() if e["kind"] == "load"]
    loads = Counter(e["card_number"] for e in ledger)
    by_card = {j.card_number: j for j in jobs}
    status = Counter(r.status.value if r else "lost" for r in records.values())
    dead = [j for j in jobs if _is(records[j.job_id], JobStatus.DEAD_LETTERED)]
    events: Counter[str] = Counter()
    for entry in EventStream(client, settings.events.stream).read(count=10 * len(jobs) + 100):
        events[entry.event.job_id] += 1
    balances_ok = 0
    for card in by_card:
        info = http.get(f"/_sandbox/cards/{card}").json()
        booked = sum(e["amount_cents"] for e in ledger if e["card_number"] == card)
        if _cash_cents(info) == booked:
            balances_ok += 1
    reconciled = _reconcile(settings)
    report = {
        "jobs_accepted": len(jobs),
        "statuses": dict(status),
        "cards_loaded_once": sum(1 for n in loads.values() if n == 1),
        "cards_loaded_twice_or_more": sum(1 for n in loads.values() if n > 1),
        "lost": sum(1 for r in records.values() if r is None or not r.status.terminal),
        "dead_lettered": len(dead),
        "dead_lettered_but_loaded": sum(1 for j in dead if loads[j.card_number]),
        "succeeded_but_not_loaded": sum(
            1
            for j in jobs
            if _is(records[j.job_id], JobStatus.SUCCEEDED) and not loads[j.card_number]
        ),
        "events_per_job": dict(Counter(events[j.job_id] for j in jobs)),
        "balances_equal_their_loads": f"{balances_ok}/{len(by_card)}",
        "reconcile": reconciled,
        "faults_fired": http.get("/_sandbox/stats").json()["faults_fired"],
        "worker_kills": kills,
        "redis_killed": redis_killed,
        "seconds": round(elapsed, 1),
    }
    return report


def _is(record: JobRecord | None, status: JobStatus) -> bool:
    return record is not None and record.status is status


def _cash_cents(card: dict[str, Any]) -> int:
    return int(card["cash_balance"])  # cents, as the API's merchant card carries it


def _reconcile(settings: Settings) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    command = ["reconcile", "--since", "1d", "--json", "--grace", "1s"]
    done = subprocess.run(
        [sys.executable, "-m", "cardload.cli.main", *command],
        check=False, cwd=ROOT, env=env | to_env(settings), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    try:
        found = json.loads(done.stdout)
    except json.JSONDecodeError:
        failed = f"cardload reconcile ({done.returncode}), not JSON: {done.stdout[:300]}"
        raise RuntimeError(f"{failed} {done.stderr[-2000:]}") from None
    return {
        "exit": done.returncode,
        "counts": found["counts"],
        "needs_a_person": found["needs_a_person"],
    }


def discrepancies(report: dict[str, Any]) -> list[str]:
    wrong = []
    if not report["redis_killed"] or report.get("rabbitmq_killed") is False:
        wrong.append("the run ended before Redis (or RabbitMQ) was killed: nothing was proven")
    if report["cards_loaded_twice_or_more"]:
        wrong.append("a card was loaded twice")
    if report["lost"]:
        wrong.append("jobs were lost (not finished)")
    if report["succeeded_but_not_loaded"]:
        wrong.append("jobs succeeded without a load")
    if set(report["events_per_job"]) != {1}:
        wrong.append("a job has not exactly one result event")
    ok, total = report["balances_equal_their_loads"].split("/")
    if ok != total:
        wrong.append("a card's balance is not the sum of its loads")
    paid = report["reconcile"]["counts"]
    if paid.get("second_load") or paid.get("unclaimed"):
        wrong.append("reconcile found a second load or an unclaimed payment")
    if paid.get("loaded_anyway", 0) != report["dead_lettered_but_loaded"]:
        wrong.append("reconcile and the ledger disagree on dead letters that loaded")
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description="Chaos audit of cardload.")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every-s", type=float, default=5.0)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cardload-chaos-") as tmp:
        report = run(args, Path(tmp))
    print(json.dumps(report, indent=2))
    wrong = discrepancies(report)
    for line in wrong:
        print(f"DISCREPANCY: {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
