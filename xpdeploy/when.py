"""The ``time`` field: accepted forms, normalisation to the API's format, and "now"."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

from xpdeploy.errors import UserError

# ASCII digits only: `\d` alone would let '٢٠٣١-01-01 12:00 UTC' through, to be sent as is.
_API_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\Z", re.ASCII)
_ISO_WITH_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})\Z", re.ASCII
)


class TimeFormatError(ValueError):
    """A time that is neither the API's format nor ISO-8601 with an offset."""


def normalise_time(value: object) -> str:
    """``YYYY-MM-DD HH:MM UTC`` for an API-format or offset ISO-8601 time."""
    hint = "use 'YYYY-MM-DD HH:MM UTC' or ISO-8601 with an offset, e.g. 2026-12-01T13:00:00+01:00"
    if not isinstance(value, str):
        raise TimeFormatError(f"time must be a string ({hint}), not {type(value).__name__}")
    text = value.strip()
    if _API_PATTERN.match(text):
        try:
            _api_time(text)
        except ValueError:
            raise TimeFormatError(f"time {value!r} is not a real date and time") from None
        return text
    if not _ISO_WITH_OFFSET.match(text):
        raise TimeFormatError(f"time {value!r} is not understood: {hint}")
    try:
        parsed = datetime.fromisoformat(_iso_offset(text).replace(" ", "T", 1))
    except ValueError:
        raise TimeFormatError(f"time {value!r} is not a real date and time") from None
    if parsed.second or parsed.microsecond:
        raise TimeFormatError(f"time {value!r} has seconds; the API schedules to the minute")
    try:
        utc = parsed.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC minute
        raise TimeFormatError(f"time {value!r} is out of range") from None
    return utc.isoformat(sep=" ", timespec="minutes")[:16] + " UTC"  # %Y would not pad 0999


def utcnow() -> datetime:
    """The current time; ``XPDEPLOY_NOW`` (ISO-8601) pins it for reproducible runs and tests."""
    pinned = os.environ.get("XPDEPLOY_NOW")
    if not pinned:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(_iso_offset(pinned.strip()))
    except ValueError:
        raise UserError(
            f"XPDEPLOY_NOW={pinned!r} is not an ISO-8601 date-time (e.g. 2026-12-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # a time without offset is UTC, as in the API
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise UserError(f"XPDEPLOY_NOW={pinned!r} is out of range") from None


def _iso_offset(text: str) -> str:
    """'Z' and '+0200' spelled as '+00:00' and '+02:00', which Python 3.10 requires."""
    if text.endswith("Z"):
        return text[:-1] + "+00:00"
    return re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)


def parse_api_time(value: object) -> datetime | None:
    """The moment a normalised ``time`` names; None for "now" (no time)."""
    if not isinstance(value, str):
        return None
    return _api_time(value)


def _api_time(text: str) -> datetime:
    """``YYYY-MM-DD HH:MM UTC`` as an aware datetime; ValueError for anything else.

    ``fromisoformat`` reads the date and time part as ``strptime`` would,
    without the regular expressions ``strptime`` compiles at its first call."""
    if not _API_PATTERN.match(text):
        raise ValueError(f"{text!r} is not in the API's time format")
    return datetime.fromisoformat(text[:16]).replace(tzinfo=timezone.utc)
