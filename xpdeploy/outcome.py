"""The result of one execute call, shared by the client and the send loop.

Kept apart from :mod:`xpdeploy.client` so that planning never imports the HTTP library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Outcome:
    """What one execute call came to, in the ledger's terms; never holds the apptoken."""

    status: Literal["applied", "failed", "unknown"]
    http_status: int | None
    response: Any
    message: str
    attempts: int
