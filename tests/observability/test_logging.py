from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from cardload.observability import (
    bind_job,
    configure_logging,
    get_logger,
    mask_card_number,
    mask_text,
)
from cardload.observability.masking import mask_receipt


def test_masking() -> None:
    assert mask_card_number("9276004424644352") == "927600******4352"
    assert mask_text("card 9276004424644352 and 9276 0000") == "card 927600******4352 and 9276 0000"
    assert (
        mask_text("TA 32076570, runtime 0.07488760000001093 s")
        == "TA 32076570, runtime 0.07488760000001093 s"
    )
    lines = [
        {
            "type": "name-value",
            "value": {"name": "Kartennummer:", "value": "9276004424644352", "decoration": []},
        }
    ]
    assert mask_receipt(lines)[0]["value"]["value"] == "927600******4352"


@pytest.mark.parametrize("length", range(1, 21))
def test_a_plain_number_is_masked_as_a_spaced_one(length: int) -> None:
    """Plain digits take a shortcut past the regex: the same stars as the long way."""
    number = "9276004424644352123456789"[:length]
    spaced = " ".join(number)
    if length < 13:  # not a card number: nothing of it shown
        assert mask_card_number(number) == "*" * length
    else:
        assert mask_card_number(number) == mask_card_number(spaced).replace(" ", "")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_json_lines_with_job_context_and_nothing_secret(json_logs: io.StringIO) -> None:
    bind_job("job-1", transaction_id="STX_1", attempt=2, step="start")
    get_logger("t").info(
        "card.loaded",
        card="9276004424644352",
        token="qb56tjj1",
        headers={"Authorization": "Bearer x"},
    )
    logging.getLogger("celery").warning("received %s", "9276004424644352")
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    first, second = lines
    assert (first["event"], first["job_id"], first["transaction_id"], first["attempt"]) == (
        "card.loaded",
        "job-1",
        "STX_1",
        2,
    )
    assert first["card"] == "927600******4352"
    assert first["token"] == "**********" and first["headers"]["Authorization"] == "**********"
    assert second["event"] == "received 927600******4352" and second["level"] == "warning"
    structlog.contextvars.clear_contextvars()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 9276 0044 2464 4352 is locked", "card 9276 00** **** 4352 is locked"),
        ("card 9276-0044-2464-4352", "card 9276-00**-****-4352"),
        ("9276004424644352", "927600******4352"),
        ("Karten-Nr.9276004424644352 ist gesperrt", "Karten-Nr.927600******4352 ist gesperrt"),
        ("9276\u00a00044\u00a02464\u00a04352", "9276\u00a000**\u00a0****\u00a04352"),
        ("9276\t0044\t2464\t4352", "9276\t00**\t****\t4352"),
        ("9276  0044  2464  4352", "9276  00**  ****  4352"),
        ("9276.0044.2464.4352", "9276.00**.****.4352"),
        ("9276/0044/2464/4352", "9276/00**/****/4352"),
        ("9276 - 0044 - 2464 - 4352", "9276 - 00** - **** - 4352"),
        ("9276 0044 2464 4352 1234 5678", "9276 00** **** **** **** 5678"),  # inside more
        ("succeeded in 0.05137203699996462s", "succeeded in 0.05137203699996462s"),
        ("1.234.567,89 EUR on 27.11.2026 04:31", "1.234.567,89 EUR on 27.11.2026 04:31"),
        ("+49 170 1234 5678", "+49 170 1*** 5678"),  # 13 digits: masked, the safe side
        ("92760044 24644352", "927600** ****4352"),
        ("(9276) 0044_2464\u20094352", "(9276) 00**_****\u20094352"),
        ("row 1,9276004424644352,20.00", "row 1,927600******4352,20.00"),
        ("on 2026-11-27 12:00, TA 32076570", "on 2026-11-27 12:00, TA 32076570"),
        ("STX_W28QKGS8H2X07TF64EDJ8DZEJN9RA2", "STX_W28QKGS8H2X07TF64EDJ8DZEJN9RA2"),
    ],
)
def test_card_numbers_with_separators_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_exception_text_is_masked_before_it_is_written(json_logs: io.StringIO) -> None:
    try:
        raise ValueError("card 9276 0044 2464 4352 refused")
    except ValueError:
        logging.getLogger("celery.app.trace").exception("Task failed")
        get_logger("t").exception("step.crashed")
    out = json_logs.getvalue()
    assert "9276 0044 2464 4352" not in out and "2464" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert all("9276 00** **** 4352" in line["exception"] for line in lines)


def test_our_ids_stay_readable(json_logs: io.StringIO) -> None:
    job_id = "ab1234567890123456cd" + "0" * 12  # random hex may hold a long digit run
    bind_job(job_id, transaction_id="STX_1")
    get_logger("t").info("step.done", support_id="1234567890123456")
    [line] = [json.loads(x) for x in json_logs.getvalue().splitlines()]
    assert line["job_id"] == job_id and line["support_id"] == "1234567890123456"
    structlog.contextvars.clear_contextvars()
