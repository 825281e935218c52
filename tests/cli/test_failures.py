"""What the CLI says when it cannot do what it was asked, and the code it exits with."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cardload._version import __version__
from cardload.cli import failures
from cardload.cli.localstack import free_port
from cardload.cli.main import build_parser, main
from tests.services import run_cli
from tests.support import make_settings

CARD = "9276004424644352"


@pytest.mark.parametrize(
    "args",
    [
        ("enqueue", "--card", CARD, "--amount", "20.00", "--key", "k1"),
        ("dlq", "list"),
        ("batch", "status", "b1"),
        ("job", "j1"),
    ],
)
def test_redis_unreachable_is_one_line_and_exit_3(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(f"redis://:redis-pw-123@127.0.0.1:{port}/0", "http://127.0.0.1:9")
    done = run_cli(settings, *args)
    assert done.returncode == failures.EXIT_UNREACHABLE, done.stderr
    command = " ".join(a for a in args[:2] if not a.startswith("-") and a not in ("b1", "j1"))
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"cardload {command}: Redis (redis://:**@127.0.0.1:{port}/0)")
    assert "redis-pw-123" not in done.stderr


def test_broker_unreachable_names_the_broker_without_its_password(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(redis_url, "http://127.0.0.1:9").model_copy(
        update={"broker_url": f"amqp://guest:broker-pw-9@127.0.0.1:{port}//"}
    )
    done = run_cli(settings, "enqueue", "--card", CARD, "--amount", "1.00", "--key", "k-broker")
    assert done.returncode == failures.EXIT_UNREACHABLE, done.stderr
    assert done.stderr.startswith(
        f"cardload enqueue: the broker (amqp://guest:**@127.0.0.1:{port}//) cannot be reached"
    )
    assert "enqueue again with the same keys" in done.stderr
    assert "broker-pw-9" not in done.stderr and "Traceback" not in done.stderr


def test_bad_input_exits_2_naming_the_file_or_field(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, "http://127.0.0.1:9")
    binary = tmp_path / "cards.xlsx"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    done = run_cli(settings, "batch", "submit", str(binary))
    assert done.returncode == failures.EXIT_INPUT
    assert done.stderr.strip() == (
        f"cardload batch submit: {binary}: not a text file (it holds NUL bytes)"
    )
    missing = run_cli(settings, "batch", "submit", str(tmp_path / "none.csv"))
    assert missing.returncode == failures.EXIT_INPUT
    assert missing.stderr.strip() == (
        f"cardload batch submit: {tmp_path / 'none.csv'}: No such file or directory"
    )
    card = run_cli(settings, "enqueue", "--card", "12345", "--amount", "1.00")
    assert card.returncode == failures.EXIT_INPUT
    assert card.stderr.strip() == "cardload enqueue: card_number: must be 16 digits"


def test_missing_settings_exit_2_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARDLOAD_JOBS_MAX_AMOUNT_CENTS", "lots")
    assert main(["dlq", "list"]) == failures.EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("cardload dlq list: ") and "CARDLOAD_JOBS_MAX_AMOUNT_CENTS" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"cardload {__version__}"


def test_batch_template_is_a_file_the_reader_takes(capsys: pytest.CaptureFixture[str]) -> None:
    for dialect, header in (
        ("en", "card_number,amount,currency,reference"),
        ("de", "Kartennummer;Betrag;Währung;Referenz"),
    ):
        assert main(["batch", "template", "--dialect", dialect]) == 0
        assert capsys.readouterr().out == header + "\n"


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_parsers(sub))
    return found


def test_every_command_and_argument_says_what_it_is_for() -> None:
    undocumented = []
    for prog, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                documented = {a.dest for a in action._choices_actions if a.help}
                undocumented += [f"{prog} {c}" for c in action.choices if c not in documented]
            elif not action.help or action.help == argparse.SUPPRESS:
                undocumented.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert undocumented == []


@pytest.mark.parametrize("variable", ["CARDLOAD_REDIS_URL", "CARDLOAD_BROKER_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "redis://:6390/aBcSECRETtail@127.0.0.1:6491/0",  # an unencoded "/" in the password
        "redis://:Xy7/aBcSECRET@127.0.0.1/0",
        "redis://:pa#SECRET@127.0.0.1/0",
        "redis://:SECRET@127.0.0.1:abc/0",  # not a port
    ],
)
def test_a_malformed_url_is_a_setting_error_that_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    url: str,
) -> None:
    monkeypatch.setenv(variable, url)
    assert main(["dlq", "list"]) == failures.EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("cardload dlq list: ") and variable in err
    assert "SECRET" not in err and "Xy7" not in err and "Traceback" not in err
