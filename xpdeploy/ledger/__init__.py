"""State ledgers: what was sent where, behind one small backend interface (SPEC §6)."""

from __future__ import annotations

from pathlib import Path

from xpdeploy.ledger.base import (
    Event,
    EventKind,
    Ledger,
    LedgerState,
    LockHeld,
    LockInfo,
    Record,
    Status,
    fold,
    fold_event,
    utc_now,
)
from xpdeploy.ledger.file import FileLedger

__all__ = [
    "Event",
    "EventKind",
    "FileLedger",
    "Ledger",
    "LedgerState",
    "LockHeld",
    "LockInfo",
    "Record",
    "Status",
    "fold",
    "fold_event",
    "open_ledger",
    "utc_now",
]


def open_ledger(path: Path, environment: str) -> Ledger:
    """The ledger for ``environment`` at its ``state:`` path (the file backend)."""
    return FileLedger(path, environment)
