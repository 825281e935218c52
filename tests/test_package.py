"""cardload as a library: one import name, a public API, and an import that changes
nothing in the process that embeds it (an order system's own Python process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import redis

import cardload
from cardload.jobs import JobStatus, job_store
from tests.services import ROOT
from tests.support import make_settings, queued

UNSHIPPED = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "tests", "bench")

HOST_SCRIPT = r"""
import json, logging, os, sys

import config, events, jobs, tasks, worker  # the host's own modules, same names as ours
from celery import Celery, current_app
from celery.signals import celeryd_init, setup_logging, worker_process_init, worker_ready

host = Celery("host", broker=os.environ["CELERY_BROKER_URL"])
host.conf.broker_pool_limit = 50
host.set_current()
host.pool  # the host's broker pool, at the host's limit
from kombu import pools

@host.task(name="host.ping")
def ping():
    return "pong"

signals = (setup_logging, worker_process_init, worker_ready, celeryd_init)
before = [len(s.receivers) for s in signals]
handlers = list(logging.getLogger().handlers)
modules = {name: sys.modules[name] for name in ("config", "events", "jobs", "tasks", "worker")}

import cardload
from cardload import enqueue_card_load

after_import = [len(s.receivers) for s in signals]
job_id = enqueue_card_load(
    idempotency_key="host-order-1", card_number="9276004424644352", amount_cents=100
)
print(json.dumps({
    "job_id": job_id,
    "version": cardload.__version__,
    "cardload_file": cardload.__file__,
    "receivers": [before, after_import, [len(s.receivers) for s in signals]],
    "current_is_host": current_app._get_current_object() is host,
    "host_tasks": sorted(t for t in host.tasks if not t.startswith("celery.")),
    "handlers_unchanged": logging.getLogger().handlers == handlers,
    "modules_unchanged": all(sys.modules[n] is m for n, m in modules.items()),
    "host_config": config.WHOSE,
    "pool_limit": pools.get_limit(),
}))
"""


def test_the_public_api_is_sorted_and_every_name_is_there() -> None:
    assert cardload.__all__ == sorted(cardload.__all__)
    for name in cardload.__all__:
        assert getattr(cardload, name) is not None, name
    assert cardload.__version__ == "0.3.0"
    assert cardload.enqueue_card_load.__doc__ and ":param idempotency_key:" in (
        cardload.enqueue_card_load.__doc__
    )


def test_every_error_cardload_raises_has_one_base() -> None:
    from cardload.producers.batch import BatchFileError
    from cardload.producers.batch_report import UnknownBatch

    for error in (
        cardload.SettingsError,
        cardload.IdempotencyConflict,
        cardload.AmountError,
        cardload.AmountLimitError,
        BatchFileError,
        UnknownBatch,
    ):
        assert issubclass(error, cardload.CardloadError), error
    from cardload.secuconnect import SecuconnectError

    assert issubclass(SecuconnectError, cardload.CardloadError)


def test_the_wheel_embeds_in_a_host_with_our_module_names_and_its_own_celery_app(
    tmp_path: Path, redis_url: str, real_redis: redis.Redis
) -> None:
    """The wheel into a fresh virtual environment; a host directory with its own
    ``config/``, ``tasks.py``, ``worker.py``, ``events/``, ``jobs/`` and its own current
    Celery app imports the public API and enqueues a job against a private Redis."""
    source = tmp_path / "source"  # built from a copy: the build leaves files behind
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNSHIPPED))
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist)]
    subprocess.run([*build, str(source)], check=True, timeout=300, cwd=tmp_path)
    [wheel] = dist.glob("cardload-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert top == {"cardload", f"cardload-{cardload.__version__}.dist-info"}, top

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*install, str(wheel)], check=True, timeout=600, cwd=tmp_path)

    host = tmp_path / "host"
    for package in ("config", "events", "jobs"):
        (host / package).mkdir(parents=True)
        (host / package / "__init__.py").write_text('WHOSE = "host"\n')
    (host / "tasks.py").write_text('WHOSE = "host"\n')
    (host / "worker.py").write_text('WHOSE = "host"\n')
    (host / "run.py").write_text(HOST_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARDLOAD_", "PYTHON"))}
    env["CARDLOAD_REDIS_URL"] = redis_url
    # The host's own broker, as cookiecutter-django sets it: never cardload's.
    env["CELERY_BROKER_URL"] = redis_url.rsplit("/", 1)[0] + "/1"
    done = subprocess.run(
        [str(python), "run.py"], cwd=host, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["cardload_file"].startswith(str(venv))  # the wheel's, not this checkout
    before, after_import, after_enqueue = result["receivers"]
    assert after_import == before  # importing connected nothing
    # Enqueueing made cardload's app: only a celeryd_init hook for its own workers.
    assert after_enqueue[:3] == before[:3] and after_enqueue[3] == before[3] + 1
    assert result["current_is_host"] and result["host_tasks"] == ["host.ping"]
    assert result["handlers_unchanged"] and result["modules_unchanged"]
    assert result["host_config"] == "host"
    assert result["pool_limit"] == 50  # kombu's process-wide limit: still the host's

    settings = make_settings(redis_url, "http://unused")
    record = job_store(real_redis, settings).load(result["job_id"])
    assert record is not None and record.status is JobStatus.QUEUED
    [message] = queued(real_redis)  # on cardload's broker, not the host's
    assert json.loads(message)["headers"]["task"] == "cardload.create"
    host_broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    assert host_broker.dbsize() == 0
    host_broker.close()


def test_apps_made_for_a_while_are_let_go(redis_url: str) -> None:
    """A producer made per request (with settings) makes an app each time; once dropped,
    its app and the hook it connected for its own worker go with it."""
    import gc
    import weakref

    from cardload.producers import CardLoadProducer

    settings = make_settings(redis_url, "http://unused")
    refs = [weakref.ref(CardLoadProducer.from_settings(settings).app) for _ in range(50)]
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0


def test_an_app_made_with_settings_runs_with_them(redis_url: str) -> None:
    from cardload.worker import create_app

    settings = make_settings(redis_url, "http://unused")
    app = create_app(settings)
    assert app.cardload_settings is settings
    pipeline = app.pipeline()
    assert pipeline.settings is settings and app.pipeline() is pipeline
    pipeline.leases.stop()


def test_the_cli_works_without_the_sandbox_extra() -> None:
    """h11 blocked as if not installed: every command but the simulator's still works,
    and those say which extra they need."""
    code = (
        "import sys; sys.modules['h11'] = None; from cardload.cli.main import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    run = [sys.executable, "-c", code]
    listing = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env)
    assert listing.returncode == 0 and "sandbox" in listing.stdout
    serve = subprocess.run([*run, "sandbox", "serve"], capture_output=True, text=True, env=env)
    assert serve.returncode == 2 and "pip install 'cardload[sandbox]'" in serve.stderr
    assert "Traceback" not in serve.stderr
