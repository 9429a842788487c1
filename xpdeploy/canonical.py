"""Canonical JSON of a request body: the bytes that are hashed, compared and diffed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

APPTOKEN_KEY = "apptoken"
MASK = "***"


def canonical_json(body: dict[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 text; the apptoken is never part of it."""
    clean = {k: v for k, v in body.items() if k != APPTOKEN_KEY}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_sha256(body: dict[str, Any]) -> str:
    """SHA-256 hex digest of the canonical body."""
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def pretty_json(body: dict[str, Any]) -> str:
    """Indented, key-sorted JSON for people and diffs."""
    return json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False)


def masked(body: dict[str, Any]) -> dict[str, Any]:
    """The body as shown to people: the apptoken slot shown as ``***``, first."""
    return {APPTOKEN_KEY: MASK, **{k: v for k, v in body.items() if k != APPTOKEN_KEY}}
