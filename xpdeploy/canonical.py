"""Canonical JSON of a request body: the bytes that are hashed, compared and diffed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

APPTOKEN_KEY = "apptoken"
MASK = "***"


_CHUNK = 256  # containers larger than this are encoded entry by entry


def strict_loads(text: str | bytes) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity, which Python's parser takes, refused."""
    return json.loads(text, parse_constant=_not_json)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _chunks(value: Any, top: bool = False) -> Iterator[str]:
    """The canonical encoding in pieces, so a 100,000-recipient body is never one string."""
    if isinstance(value, dict) and (top or len(value) > _CHUNK):
        yield "{"
        for i, key in enumerate(sorted(value)):
            yield ("," if i else "") + _dumps(key) + ":"
            yield from _chunks(value[key])
        yield "}"
    elif isinstance(value, list) and len(value) > _CHUNK:
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _chunks(item)
        yield "]"
    else:
        yield _dumps(value)


def canonical_json(body: dict[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 text; the apptoken is never part of it."""
    return "".join(_chunks({k: v for k, v in body.items() if k != APPTOKEN_KEY}, top=True))


def body_sha256(body: dict[str, Any]) -> str:
    """SHA-256 hex digest of the canonical body, computed piece by piece."""
    digest = hashlib.sha256()
    for chunk in _chunks({k: v for k, v in body.items() if k != APPTOKEN_KEY}, top=True):
        digest.update(chunk.encode("utf-8"))
    return digest.hexdigest()


def pretty_json(body: dict[str, Any]) -> str:
    """Indented, key-sorted JSON for people and diffs."""
    return json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False)


def masked(body: dict[str, Any]) -> dict[str, Any]:
    """The body as shown to people: the apptoken slot shown as ``***``, first."""
    return {APPTOKEN_KEY: MASK, **{k: v for k, v in body.items() if k != APPTOKEN_KEY}}


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON value with every secret string replaced by ``***``, keys included."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [mask_secrets(v, secrets) for v in value]
    if isinstance(value, dict):
        return {mask_secrets(k, secrets): mask_secrets(v, secrets) for k, v in value.items()}
    return value
