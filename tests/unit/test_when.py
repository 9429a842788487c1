"""The time field: accepted forms, normalisation to the API's UTC format, and a pinned "now"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import cli, project

from xpdeploy.when import TimeFormatError, normalise_time, parse_api_time, utcnow


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2031-01-01 12:00 UTC", "2031-01-01 12:00 UTC"),
        (" 2031-01-01 12:00 UTC\n", "2031-01-01 12:00 UTC"),
        ("2031-01-01T12:00Z", "2031-01-01 12:00 UTC"),
        ("2031-01-01T12:00:00Z", "2031-01-01 12:00 UTC"),
        ("2031-01-01T12:00:00+02:00", "2031-01-01 10:00 UTC"),
        ("2031-01-01 12:00-05:30", "2031-01-01 17:30 UTC"),
        ("2031-01-01T12:00:00+0200", "2031-01-01 10:00 UTC"),  # Python 3.10 needs the colon added
        ("2031-01-01T12:00:00-00:00", "2031-01-01 12:00 UTC"),
        ("2031-01-01T01:30:00.000000+05:00", "2030-12-31 20:30 UTC"),  # the day rolls back
        ("2032-02-29T23:59+00:00", "2032-02-29 23:59 UTC"),  # a leap day
        ("0999-06-01T12:00+00:00", "0999-06-01 12:00 UTC"),  # four digits, as the API reads
    ],
)
def test_accepted_times_are_sent_in_utc(given: str, sent: str) -> None:
    assert normalise_time(given) == sent


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("tomorrow", "is not understood"),
        ("2031-01-01 12:00", "is not understood"),  # no zone
        ("2031-01-01T12:00:00", "is not understood"),  # ISO without an offset
        ("2031-01-01 12:00 CET", "is not understood"),
        ("2031-1-1 12:00 UTC", "is not understood"),
        ("2031-01-01", "is not understood"),
        ("\u0662\u0660\u0663\u0661-01-01 12:00 UTC", "is not understood"),  # Arabic-Indic digits
        ("2031-01-01T12:00+0\u0662:00", "is not understood"),
        ("2031-02-29 12:00 UTC", "is not a real date and time"),
        ("2031-01-01 24:00 UTC", "is not a real date and time"),
        ("2031-13-01T00:00Z", "is not a real date and time"),
        ("2031-01-01T12:00:00+25:00", "is not a real date and time"),
        ("2031-01-01T12:00:30Z", "has seconds; the API schedules to the minute"),
        ("2031-01-01T12:00:00.250000Z", "has seconds"),
        ("0001-01-01T00:00+01:00", "is out of range"),
        ("9999-12-31T23:59-01:00", "is out of range"),
        (1924992000, "time must be a string"),
        (None, "time must be a string"),
    ],
)
def test_refused_times(given: object, message: str) -> None:
    with pytest.raises(TimeFormatError, match=message):
        normalise_time(given)


def test_parse_api_time() -> None:
    assert parse_api_time("2031-01-01 12:00 UTC") == datetime(2031, 1, 1, 12, tzinfo=timezone.utc)
    assert parse_api_time("2032-02-29 23:59 UTC") == datetime(
        2032, 2, 29, 23, 59, tzinfo=timezone.utc
    )
    assert parse_api_time(None) is None
    for text in (
        "2031-01-01T12:00Z",
        "2031-01-01 12:00",
        "2031-02-30 12:00 UTC",
        "2031-01-01 12:00 UTC\n",
    ):
        with pytest.raises(ValueError):
            parse_api_time(text)


def test_now_can_be_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPDEPLOY_NOW", "2026-06-01T00:00:00Z")
    assert utcnow() == datetime(2026, 6, 1, tzinfo=timezone.utc)
    monkeypatch.setenv("XPDEPLOY_NOW", "2026-06-01T02:00:00+02:00")
    pinned = utcnow()
    assert pinned == datetime(2026, 6, 1, tzinfo=timezone.utc) and pinned.utcoffset() == timedelta(
        0
    )


def test_now_is_the_clock_when_not_pinned() -> None:
    now = utcnow()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)


@pytest.mark.parametrize("pinned", ["next tuesday", "0001-01-01T00:00:00+01:00"])
def test_an_unreadable_pinned_now_is_a_user_error(tmp_path: Path, pinned: str) -> None:
    project(tmp_path)
    result = cli(["lint"], env={"XPDEPLOY_NOW": pinned})
    assert result.exit_code == 1
    assert "XPDEPLOY_NOW" in result.stderr and "internal error" not in result.stderr
