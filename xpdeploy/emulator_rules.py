"""The execute-campaign validation the API documents, and the faults the emulator injects.

Written apart from :mod:`xpdeploy.model` on purpose: the emulator checks what
xpdeploy sends against the API's documented rules, not against xpdeploy's own
models, so a mistake in the models cannot hide itself.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

TARGET_BY = frozenset({"user_id", "id", "external_id", "token", "email"})
MESSAGE_TYPES = frozenset({"1", "2", "3", "6", "7", "8", "9"})
RETRY_PERIODS = frozenset({"hours", "days", "weeks"})
_TIME_FORMAT = "%Y-%m-%d %H:%M UTC"
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", re.ASCII)

Reply = tuple[int, str | None, list[str] | None]
MAX_FAULT_TIMES = 10_000  # each planned fault is kept in a queue


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_time(value: Any) -> bool:
    if is_int(value):
        return bool(value >= 0)
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        return False
    try:
        datetime.strptime(value, _TIME_FORMAT)
    except ValueError:
        return False
    return True


def _objects(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())


def _identifiers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(is_int(t) or (isinstance(t, str) and t) for t in value)
    )


def _key_values(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(i, dict) and i.get("key") and "value" in i for i in value
    )


def _one_of(allowed: frozenset[str]) -> str:
    return "must be one of " + ", ".join(sorted(allowed))


# One row per documented execute field: the check its value must pass, and the error.
_FIELD_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("target", _identifiers, "target: must be a non-empty list of identifiers"),
    ("target_with_params", lambda v: _objects(v) and bool(v), "target_with_params: must be a "
     "non-empty object mapping each recipient to an object"),
    ("target_by", lambda v: v in TARGET_BY, f"target_by: {_one_of(TARGET_BY)}"),
    ("time", _valid_time, 'time: use "YYYY-MM-DD HH:MM UTC" or a Unix timestamp'),
    ("messages", lambda v: _objects(v) and set(v) <= MESSAGE_TYPES, "messages: must map "
     f"message types ({', '.join(sorted(MESSAGE_TYPES))}) to objects"),
    ("payload_add", _key_values, "payload_add: must be a list of {key, value} objects"),
    ("retry_for", lambda v: is_int(v) and v > 0, "retry_for: must be a positive integer"),
    ("retry_for_period", lambda v: v in RETRY_PERIODS,
     f"retry_for_period: {_one_of(RETRY_PERIODS)}"),
    ("params", lambda v: isinstance(v, dict), "params: must be an object"),
    ("target_existing_only", lambda v: v in (0, 1) and is_int(v),
     "target_existing_only: must be 0 or 1"),
]  # fmt: skip


def check_apptoken(body: dict[str, Any], apptoken: str | None) -> Reply | None:
    """The API's auth answer for a body, or None when the token is good (or not checked)."""
    if apptoken is None:
        return None
    given = body.get("apptoken")
    if given is None or given == "":
        # The API answers unauthenticated requests with 400, not 401.
        return 400, "Missing apptoken", ["apptoken: required"]
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), apptoken.encode()):
        return 401, "Authentication failed", ["apptoken: not valid for this project"]
    return None


def campaign_error(cid: Any, campaigns: frozenset[str] | None) -> str | None:
    """Why a campaign id would be refused, or None; ids compare as strings."""
    if not (is_int(cid) or (isinstance(cid, str) and cid.strip())):
        return "id: a campaign id is required"
    if campaigns is not None and str(cid).strip() not in campaigns:
        return "Campaign not found"
    return None


def execute_errors(body: dict[str, Any], campaigns: frozenset[str] | None) -> list[str]:
    """Every documented rule an execute body breaks; empty when it would be accepted."""
    problem = campaign_error(body.get("id"), campaigns)
    errors = [problem] if problem else []
    if "target" in body and "target_with_params" in body:
        errors.append("target and target_with_params are alternatives: send exactly one")
    segment = body.get("broadcast") in (1, "1") or "conditions" in body
    if not ("target" in body or "target_with_params" in body or segment):
        errors.append("A target must be provided (target, target_with_params or segmentation)")
    errors += [error for key, ok, error in _FIELD_RULES if key in body and not ok(body[key])]
    if ("retry_for" in body) != ("retry_for_period" in body):
        errors.append("retry_for and retry_for_period must be given together")
    return errors


@dataclass
class Fault:
    """One misbehaviour for the next execute request(s); see SPEC §8."""

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    drop: Literal["before", "after"] | None = None
    body: str | None = None
    accept: bool = False
    times: int = 1

    def __post_init__(self) -> None:
        # Faults also arrive as JSON through /_emulator/faults, so check what they say.
        def seconds(value: Any) -> bool:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return number and math.isfinite(value) and value >= 0

        checks = {
            "status must be an HTTP status code (100-599)": self.status is None
            or (is_int(self.status) and 100 <= self.status <= 599),
            "retry_after must be seconds >= 0": self.retry_after is None
            or seconds(self.retry_after),
            "delay must be seconds >= 0": seconds(self.delay),
            "drop must be 'before', 'after' or null": self.drop in (None, "before", "after"),
            "body must be a string": self.body is None or isinstance(self.body, str),
            "accept must be a boolean": isinstance(self.accept, bool),
            f"times must be an integer from 1 to {MAX_FAULT_TIMES}": is_int(self.times)
            and 1 <= self.times <= MAX_FAULT_TIMES,
        }
        for problem, ok in checks.items():
            if not ok:
                raise ValueError(problem)
