"""review.redact: body paths whose values reviewers should not see (``params.*``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REDACTED = "(redacted)"


def _parts(pattern: str) -> list[str]:
    return [part for part in pattern.split(".") if part]


def _apply(value: Any, parts: list[str]) -> Any:
    if not parts:
        return REDACTED
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        if not keys:
            return value
        out = dict(value)
        for key in keys:
            out[key] = _apply(value[key], rest)
        return out
    if isinstance(value, list) and (head == "*" or head.isdigit()):
        indexes = range(len(value)) if head == "*" else [int(head)]
        return [_apply(item, rest) if i in indexes else item for i, item in enumerate(value)]
    return value


def redact(body: dict[str, Any], patterns: Sequence[str]) -> dict[str, Any]:
    """A copy of ``body`` with every value matched by a pattern replaced by (redacted)."""
    result: Any = body
    for pattern in patterns:
        parts = _parts(pattern)
        if parts:  # the project schema refuses empty patterns; never mask the whole body
            result = _apply(result, parts)
    return dict(result)
