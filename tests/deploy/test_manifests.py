"""The deployment artifacts in deploy/, read and checked without Docker or a cluster.

Every ``cardload`` command they run exists in the CLI, every ``CARDLOAD_*`` name is a
setting, no file holds a secret value (placeholders and references only), and the
things operations rely on hold: a non-root multi-stage image with a health check,
Redis with AOF and ``noeviction``, workers given more time to stop than Celery's soft
shutdown, autoscaling on the queue's real Redis lists, probes on routes that exist.

The YAML checks need PyYAML; without it they are skipped, the others still run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from cardload.cli.main import build_parser
from cardload.config.settings import JobSettings, Settings, env_name
from cardload.jobs.routing import STEP_PRIORITY
from cardload.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from cardload.sandbox.world import CONTRACT_ID, DEVICE_ID
from cardload.worker.settings import celery_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
SECRET_TEMPLATE = K8S / "secret.example.yaml"
RUNTIME_IMAGE = "python:3.11-slim"

# Names whose values are secrets, wherever they are set.
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|_PASS|_AUTH|TOKEN|_KEY)(_|$)")
# A placeholder to fill in (<...>) or a reference to a value kept elsewhere.
PLACEHOLDER = re.compile(r"<[^<>\n]+>|\$\{[A-Za-z_][^}]*\}|\$\([A-Za-z_][^)]*\)|\$[A-Za-z_]\w*")
# The simulator's published defaults are no secret (cardload sandbox serve prints them).
PUBLIC_VALUES = {DEFAULT_CLIENT_SECRET}
SECRET_FLAGS = ("--basic-auth", "--basic_auth", "--requirepass", "--client-secret", "--password")
SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")


def _yaml() -> Any:
    return pytest.importorskip(
        "yaml", reason="PyYAML is not installed here (no dev dependency names it yet)"
    )


def _documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    return [doc for doc in _yaml().safe_load_all(text) if doc is not None]


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _text_files() -> list[Path]:
    files = []
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _soft_shutdown_s() -> float:
    return float(celery_config(Settings(_env_file=None))["worker_soft_shutdown_timeout"])


def _is_placeholder(value: str) -> bool:
    return not value.strip() or value in PUBLIC_VALUES or bool(PLACEHOLDER.search(value))


def _seconds(duration: str) -> float:
    """A Compose duration (90s, 1m30s) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# --- the Dockerfile ---------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
        current = ""
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_or_shell(arguments: str) -> list[str]:
    if arguments.startswith("["):
        argv = json.loads(arguments)
        assert isinstance(argv, list)
        return [str(a) for a in argv]
    return ["/bin/sh", "-c", arguments]


def _image_argv() -> tuple[list[str], list[str]]:
    """The final stage's ENTRYPOINT and CMD."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for keyword, arguments in _final_stage():
        if keyword == "ENTRYPOINT":
            entrypoint = _exec_or_shell(arguments)
        elif keyword == "CMD":
            cmd = _exec_or_shell(arguments)
    return entrypoint, cmd


def _healthcheck_argv() -> list[str] | None:
    for keyword, arguments in _final_stage():
        if keyword == "HEALTHCHECK":
            found = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(.+)", arguments)
            assert found, f"HEALTHCHECK without CMD: {arguments}"
            return _exec_or_shell(found.group(1))
    return None


def test_the_image_is_built_in_stages_on_python_311_slim() -> None:
    froms = [arguments for keyword, arguments in _dockerfile() if keyword == "FROM"]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    stages = {}
    for arguments in froms:
        found = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments, flags=re.IGNORECASE)
        assert found, f"every stage is named (FROM image AS name): {arguments}"
        stages[found.group(2)] = found.group(1)
    assert froms[-1].split()[0] == RUNTIME_IMAGE
    builder = next(iter(stages))
    final = " ".join(arguments for _, arguments in _final_stage())
    assert f"from={builder}" in final, "the runtime stage installs what the builder made"
    assert any(k == "RUN" and "pip wheel" in a for k, a in _dockerfile()), "the builder's wheels"


def test_the_wheel_carries_the_extras_the_image_runs() -> None:
    extras_defined = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]["optional-dependencies"]
    wheel = next(a for k, a in _dockerfile() if k == "RUN" and "pip wheel" in a)
    found = re.search(r"\.\[([a-z,_-]+)\]", wheel)
    assert found, wheel
    extras = set(found.group(1).split(","))
    assert {"api", "flower", "sandbox"} <= extras  # the API, Flower and the sandbox run
    assert extras <= set(extras_defined), extras - set(extras_defined)
    install = next(a for k, a in _final_stage() if k == "RUN" and "pip install" in a)
    assert f"cardload[{found.group(1)}]" in install
    assert "--no-index" in install


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [arguments for keyword, arguments in _final_stage() if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    # Numeric, or Kubernetes' runAsNonRoot cannot verify it.
    assert uid.isdigit() and int(uid) != 0, users[-1]


def test_one_image_runs_a_worker_by_default_and_checks_its_health() -> None:
    entrypoint, cmd = _image_argv()
    assert entrypoint == ["cardload"]
    assert cmd == ["worker"]
    health = _healthcheck_argv()
    assert health is not None, "the runtime stage has a HEALTHCHECK"
    assert [c.args for c in _commands("Dockerfile", health)] == [("health",)]


def test_the_build_context_holds_only_what_the_builder_copies() -> None:
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile for
    # `docker build -f deploy/Dockerfile .`
    ignore = DEPLOY / "Dockerfile.dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything is left out first"
    for keyword, arguments in _dockerfile():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                assert f"!{source.rstrip('/')}" in patterns, f"COPY {source} is ignored"
    assert "**/.env" in patterns


# --- commands: every cardload command used exists --------------------------------------


@dataclass(frozen=True)
class Command:
    where: str
    program: str  # cardload or celery
    args: tuple[str, ...]


def _program(token: str) -> str | None:
    for name in ("cardload", "celery"):
        if token == name or token.endswith(f"/bin/{name}"):
            return name
    return None


def _commands(where: str, argv: list[str]) -> Iterator[Command]:
    """The cardload and celery invocations in one argv, a shell's -c script included."""
    if len(argv) >= 3 and argv[0] in SHELLS and argv[1] == "-c":
        yield from _script_commands(where, argv[2])
        return
    for i, token in enumerate(argv):
        program = _program(token)
        if program:
            if argv[i + 1 :]:
                yield Command(where, program, tuple(argv[i + 1 :]))
            return


def _script_commands(where: str, script: str) -> Iterator[Command]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    simple: list[str] = []
    for token in [*lexer, ";"]:
        if token and set(token) <= set(";&|()<>"):
            yield from _commands(where, simple)
            simple = []
        else:
            simple.append(token)


def _dockerfile_commands() -> Iterator[Command]:
    entrypoint, cmd = _image_argv()
    yield from _commands("Dockerfile CMD", entrypoint + cmd)
    health = _healthcheck_argv()
    if health:
        yield from _commands("Dockerfile HEALTHCHECK", health)


def _systemd_commands() -> Iterator[Command]:
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                value = line.partition("=")[2].lstrip("-@+!:")
                yield from _commands(_where(unit), shlex.split(value))


def _readme_commands() -> Iterator[Command]:
    """Lines of its code blocks and its inline code that run cardload."""
    readme = DEPLOY / "README.md"
    text = readme.read_text(encoding="utf-8")
    snippets: list[str] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        snippets += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    snippets += re.findall(r"`([^`\n]+)`", prose)
    for snippet in snippets:
        if re.search(r"(^|[\s/])(cardload|celery)(\s|$)", snippet):
            yield from _script_commands(_where(readme), snippet)


def _compose_commands() -> Iterator[Command]:
    services = _compose()["services"]
    entrypoint, cmd = _image_argv()
    for name, service in services.items():
        where = f"compose.yaml services.{name}"
        ours = "build" in service
        argv_entry = _argv(service.get("entrypoint")) if "entrypoint" in service else None
        argv_cmd = _argv(service.get("command")) if "command" in service else None
        if ours:
            # Compose drops the image's CMD when it sets the entrypoint.
            default_cmd = [] if argv_entry is not None else cmd
            argv = (entrypoint if argv_entry is None else argv_entry) + (
                default_cmd if argv_cmd is None else argv_cmd
            )
        else:
            argv = (argv_entry or []) + (argv_cmd or [])
        yield from _commands(where, argv)
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, str):
            yield from _script_commands(where + " healthcheck", test)
        elif test and test[0] == "CMD-SHELL":
            yield from _script_commands(where + " healthcheck", test[1])
        elif test and test[0] == "CMD":
            yield from _commands(where + " healthcheck", test[1:])


def _k8s_commands() -> Iterator[Command]:
    entrypoint, cmd = _image_argv()
    for path, doc in _k8s_documents():
        for container in _containers(doc):
            where = f"{_where(path)} {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            command, args = container.get("command"), container.get("args")
            if command is None:
                argv = entrypoint + (cmd if args is None else args)
            else:
                argv = command + (args or [])
            yield from _commands(where, argv)
            for probe in PROBES:
                exec_ = container.get(probe, {}).get("exec")
                if exec_:
                    yield from _commands(f"{where} {probe}", exec_["command"])


def _argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _subcommands() -> set[str]:
    parser = build_parser()
    choices: set[str] = set()
    for action in parser._actions:  # argparse keeps its subparsers there
        if action.choices and isinstance(action.choices, dict):
            choices |= set(action.choices)
    return choices


def _cli_error(args: tuple[str, ...]) -> str | None:
    """What the CLI says about these arguments, None if it takes them."""
    if args[0] == "worker":
        return None  # everything after "worker" goes to celery worker
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(list(args))
        except SystemExit as exc:
            if exc.code:
                lines = err.getvalue().strip().splitlines()
                return lines[-1] if lines else f"exit code {exc.code}"
    return None


def _celery_error(args: tuple[str, ...]) -> str | None:
    argv = list(args)
    app: str | None = None
    rest: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("-A", "--app") and i + 1 < len(argv):
            app, rest = argv[i + 1], argv[i + 2 :]
            break
        if arg.startswith(("-A=", "--app=")):
            app, rest = arg.partition("=")[2], argv[i + 1 :]
            break
    if app != "cardload.worker":
        return f"celery runs app {app!r}, not cardload.worker"
    if not rest or rest[0] not in ("flower", "worker", "inspect", "status"):
        return f"unexpected celery command {rest[:1]}"
    if rest[0] == "flower":
        return _flower_error(rest[1:])
    return None


def _flower_options() -> Any:
    if importlib.util.find_spec("flower") is None:
        pytest.fail("Flower is used but not installed (the flower extra)")
    importlib.import_module("flower.options")  # defines Flower's options on tornado's registry
    from tornado.options import options

    return options


def _flower_error(args: list[str]) -> str | None:
    options = _flower_options()
    for arg in args:
        if arg.startswith("--"):
            name = arg[2:].partition("=")[0]
            if name not in options:
                return f"flower has no option --{name}"
    return None


def _check(commands: list[Command]) -> list[str]:
    problems = []
    for command in commands:
        if command.program == "celery":
            error = _celery_error(command.args)
        else:
            error = _cli_error(command.args)
        if error:
            problems.append(f"{command.where}: {command.program} {' '.join(command.args)}: {error}")
    return problems


def _collect(source: str) -> list[Command]:
    collectors = {
        "Dockerfile": _dockerfile_commands,
        "systemd": _systemd_commands,
        "README": _readme_commands,
        "compose": _compose_commands,
        "k8s": _k8s_commands,
    }
    return list(collectors[source]())


@pytest.mark.parametrize("source", ["Dockerfile", "systemd", "README", "compose", "k8s"])
def test_every_command_used_exists(source: str) -> None:
    commands = _collect(source)
    assert commands, f"no cardload command found in {source}"
    if "health" not in _subcommands():
        # Checked on its own below, once it exists.
        commands = [c for c in commands if c.args[0] != "health"]
    assert _check(commands) == []


def test_the_probes_use_cardload_health() -> None:
    used = [
        c for s in ("Dockerfile", "compose", "k8s") for c in _collect(s) if c.args[0] == "health"
    ]
    where = {c.where.split()[0] for c in used}
    assert {"Dockerfile", "deploy/k8s/worker.yaml"} <= where, where
    if "health" not in _subcommands():
        pytest.skip(
            "`cardload health` does not exist yet (another change adds it: exit 0 healthy, "
            "1 degraded, 2 down); the Dockerfile HEALTHCHECK and the worker's readiness "
            "probe run it"
        )
    assert _check(used) == []


# --- environment names: every CARDLOAD_* is a setting --------------------------------------


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names |= {env_name((name, child)) for child in section.model_fields}
        else:
            names.add(env_name((name,)))
    return names


def _secret_setting_names() -> set[str]:
    """Settings that hold a secret: SecretStr fields and the URLs (a password in them)."""
    names = {env_name(("redis_url",)), env_name(("broker_url",))}
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for child, inner in section.model_fields.items():
                if SecretStr in (inner.annotation, *getattr(inner.annotation, "__args__", ())):
                    names.add(env_name((name, child)))
    return names


def test_the_setting_names_are_derived_from_the_settings() -> None:
    names = _setting_names()
    assert {
        "CARDLOAD_REDIS_URL",
        "CARDLOAD_SECUCONNECT_CLIENT_SECRET",
        "CARDLOAD_JOBS_QUEUE",
    } <= names
    assert {"CARDLOAD_SECUCONNECT_CLIENT_SECRET", "CARDLOAD_JOBS_ROW_KEY_SECRET"} <= (
        _secret_setting_names()
    )


def test_every_cardload_variable_in_deploy_is_a_setting() -> None:
    valid = _setting_names()
    unknown = set()
    for path in _text_files():
        for name in re.findall(r"\bCARDLOAD_[A-Z0-9_]+", path.read_text(encoding="utf-8")):
            if not name.endswith("_") and name not in valid:  # CARDLOAD_SECUCONNECT_*: a prefix
                unknown.add(f"{_where(path)}: {name}")
    assert sorted(unknown) == []


# --- secrets: placeholders and references only -----------------------------------------------


def _mask_references(text: str) -> str:
    return re.sub(r"\$\{[^}]*\}|\$\([^)]*\)", "$REF", text)


def _url_password_problems(where: str, text: str) -> list[str]:
    problems = []
    for userinfo in re.findall(r"\b[a-z][a-z0-9+.-]*://([^\s/@'\"`]*)@", _mask_references(text)):
        password = userinfo.partition(":")[2]
        if password and password != "**" and not _is_placeholder(password):
            problems.append(f"{where}: a password in a URL ({userinfo.partition(':')[0]}:...)")
    return problems


def _flag_problems(where: str, argv: list[str]) -> list[str]:
    problems = []
    for i, arg in enumerate(argv):
        for flag in SECRET_FLAGS:
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.partition("=")[2]
            else:
                continue
            if not _is_placeholder(value):
                problems.append(f"{where}: {flag} with a literal value")
    return problems


def test_no_file_holds_a_literal_secret() -> None:
    problems = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8")
        where = _where(path)
        problems += _url_password_problems(where, text)
        for name, value in re.findall(r"\b([A-Z][A-Z0-9_]*)=([^\n`'\"]*)", text):
            if SECRET_NAME.search(name) and not _is_placeholder(value):
                problems.append(f"{where}: {name}=...")
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                problems += _flag_problems(where, shlex.split(line, comments=True))
    assert problems == []


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _mapping_problems(where: str, mapping: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in mapping.items():
        if isinstance(value, str):
            if SECRET_NAME.search(str(key)) and not _is_placeholder(value):
                problems.append(f"{where}: {key}")
            problems += _url_password_problems(f"{where} {key}", value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            problems += _flag_problems(f"{where} {key}", value)
    # A Kubernetes env item: {name: X, value: Y}
    name, value = mapping.get("name"), mapping.get("value")
    if isinstance(name, str) and isinstance(value, str) and SECRET_NAME.search(name):
        problems += [] if _is_placeholder(value) else [f"{where}: env {name}"]
    return problems


def test_no_manifest_holds_a_literal_secret() -> None:
    problems = []
    for path in _yaml_files():
        for doc in _documents(path):
            where = _where(path)
            for mapping in _walk(doc):
                problems += _mapping_problems(where, mapping)
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                assert "data" not in doc, f"{where}: stringData with placeholders only"
                for key, value in doc.get("stringData", {}).items():
                    if not re.search(r"<[^<>]+>", str(value)):
                        problems.append(f"{where}: Secret key {key} is no placeholder")
    assert problems == []


def test_the_sandbox_env_file_holds_the_simulators_public_defaults() -> None:
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / "sandbox.env").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert values == {
        "CARDLOAD_SECUCONNECT_BASE_URL": "http://sandbox:8600",
        "CARDLOAD_SECUCONNECT_CLIENT_ID": DEFAULT_CLIENT_ID,
        "CARDLOAD_SECUCONNECT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "CARDLOAD_SECUCONNECT_CONTRACT_ID": CONTRACT_ID,
        "CARDLOAD_SECUCONNECT_DEVICE_ID": DEVICE_ID,
    }


# --- YAML: every file parses -------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert COMPOSE in files and len(files) > 5
    for path in files:
        assert _documents(path), _where(path)


# --- Compose ---------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    (doc,) = _documents(COMPOSE)
    assert isinstance(doc, dict)
    return doc


def test_compose_redis_persists_every_write_and_never_evicts() -> None:
    redis = _compose()["services"]["redis"]
    command = " ".join(_argv(redis["command"]))
    for setting in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert setting in command
    assert any(str(v).endswith(":/data") for v in redis["volumes"]), "the AOF on a volume"
    assert "ports" not in redis, "Redis is reached on the project's network only"
    conf = (DEPLOY / "redis" / "cardload.conf").read_text(encoding="utf-8").splitlines()
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert line in conf


def test_compose_workers_scale_and_stop_gracefully() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert "replicas" in worker["deploy"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N"
    assert _seconds(worker["stop_grace_period"]) > _soft_shutdown_s()
    assert any("secuconnect" in str(f) for f in worker["env_file"])
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        if "profiles" not in service and name != "redis":
            assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_compose_serves_the_api_and_flower_behind_basic_auth() -> None:
    services = _compose()["services"]
    assert services["api"]["command"] == ["api", "--host", "0.0.0.0"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    flower = services["flower"]
    assert flower["entrypoint"][:4] == ["celery", "-A", "cardload.worker", "flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH(:\?[^}]*)?\}", auth), auth
    assert not any("basic" in arg for arg in _argv(flower["command"]))
    assert "basic_auth" in _flower_options()  # what Flower reads FLOWER_BASIC_AUTH into


def test_compose_profiles() -> None:
    services = _compose()["services"]
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    for name in ("redis", "worker", "api", "flower"):
        assert "profiles" not in services[name], name


# --- Kubernetes -----------------------------------------------------------------------------


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [(path, doc) for doc in _documents(path)]
    return docs


def _kinds(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _k8s_documents() if d["kind"] == kind}


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def test_kustomization_applies_every_manifest_but_the_secrets() -> None:
    (kustomization,) = _documents(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE.name}
    assert listed == present
    assert [image["name"] for image in kustomization["images"]] == ["cardload"]
    for _, doc in _k8s_documents():
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        for container in _containers(doc):
            assert container["image"] == "cardload", "the image kustomization.yaml sets"


def test_k8s_pods_run_as_non_root() -> None:
    users = [a for k, a in _final_stage() if k == "USER"]
    for name, deployment in _kinds("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert str(pod["securityContext"]["runAsUser"]) == users[-1].split(":")[0], name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_worker_gets_longer_to_stop_than_celerys_soft_shutdown() -> None:
    worker = _kinds("Deployment")["cardload-worker"]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
        _soft_shutdown_s()
    )
    assert "replicas" not in worker["spec"], "the ScaledObject owns the replica count"
    unit = (DEPLOY / "systemd" / "cardload-worker@.service").read_text(encoding="utf-8")
    found = re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.MULTILINE)
    assert found and int(found.group(1)) > _soft_shutdown_s()


def test_the_worker_is_ready_when_cardload_health_says_so() -> None:
    (container,) = _containers(_kinds("Deployment")["cardload-worker"])
    assert container["readinessProbe"]["exec"]["command"] == ["cardload", "health"]
    assert "CARDLOAD_SECUCONNECT_CLIENT_SECRET" in _env(container)


def _api_routes() -> set[str]:
    from cardload.api.health import router

    return {str(getattr(route, "path", "")) for route in router.routes}


def test_the_api_probes_its_health_routes() -> None:
    (container,) = _containers(_kinds("Deployment")["cardload-api"])
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz")
    assert {"/readyz", "/healthz"} <= _api_routes()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = _kinds("ConfigMap")["cardload-config"]["data"]
    assert ports[readiness["port"]] == ports[liveness["port"]] == int(config["CARDLOAD_API_PORT"])
    assert container["args"][:3] == ["api", "--host", "0.0.0.0"]
    assert "CARDLOAD_SECUCONNECT_CLIENT_SECRET" not in _env(container), "producers never hold it"


def test_services_and_budgets_select_the_pods_they_mean() -> None:
    deployments = _kinds("Deployment")
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for name, deployment in deployments.items():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels[name].items()
    for kind, key in (("Service", "selector"), ("PodDisruptionBudget", "selector")):
        for name, doc in _kinds(kind).items():
            selector = doc["spec"][key]
            selector = selector.get("matchLabels", selector)
            assert any(selector.items() <= pod.items() for pod in labels.values()), name
    budgets = _kinds("PodDisruptionBudget")
    assert budgets["cardload-worker"]["spec"]["maxUnavailable"] == 1
    for name, service in _kinds("Service").items():
        (container,) = _containers(deployments[name])
        names = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names, name


def test_flower_takes_its_basic_auth_from_a_secret() -> None:
    (container,) = _containers(_kinds("Deployment")["cardload-flower"])
    assert container["command"] == ["celery"]
    assert container["args"][:3] == ["-A", "cardload.worker", "flower"]
    assert "secretKeyRef" in _env(container)["FLOWER_BASIC_AUTH"]["valueFrom"]
    assert not any("basic" in arg for arg in container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthcheck"


def _secret_keys() -> dict[str, set[str]]:
    return {
        doc["metadata"]["name"]: set(doc["stringData"])
        for doc in _documents(SECRET_TEMPLATE)
        if doc["kind"] == "Secret"
    }


def test_every_secret_and_config_reference_resolves() -> None:
    secrets = _secret_keys()
    config_maps = set(_kinds("ConfigMap"))
    for name, deployment in _kinds("Deployment").items():
        for container in _containers(deployment):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], (name, ref)
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, name
    for auth in _kinds("TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]], ref


def test_the_configmap_holds_no_secret_setting() -> None:
    data = _kinds("ConfigMap")["cardload-config"]["data"]
    assert not set(data) & _secret_setting_names()
    assert not [key for key in data if SECRET_NAME.search(key)]
    assert data["CARDLOAD_JOBS_QUEUE"] == JobSettings().queue


def _queue_lists(queue: str) -> set[str]:
    """The Redis lists kombu's Redis transport keeps for a queue, one per priority step."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    options = celery_config(Settings(_env_file=None))["broker_transport_options"]
    steps = options.get("priority_steps", PRIORITY_STEPS)
    lists = {queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in steps}
    # Every priority a step is sent with lands in one of them.
    for priority in STEP_PRIORITY.values():
        step = max(s for s in steps if s <= priority)
        assert (queue if step == 0 else f"{queue}{Channel.sep}{step}") in lists
    return lists


def test_keda_scales_workers_on_the_sum_of_the_queues_lists() -> None:
    scaled = _kinds("ScaledObject")["cardload-worker"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] in _kinds("Deployment")
    queue = _kinds("ConfigMap")["cardload-config"]["data"]["CARDLOAD_JOBS_QUEUE"]
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    names = {t["metadata"]["listName"] for t in triggers}
    assert (
        names == _queue_lists(queue) == {"cardload", *(f"cardload\x06\x16{n}" for n in (3, 6, 9))}
    )
    formula = spec["advanced"]["scalingModifiers"]["formula"]
    assert sorted(re.findall(r"\w+", formula)) == sorted(t["name"] for t in triggers)
    assert "+" in formula and spec["minReplicaCount"] >= 1
    auth = set(_kinds("TriggerAuthentication"))
    assert {t["authenticationRef"]["name"] for t in triggers} <= auth
