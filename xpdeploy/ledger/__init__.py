"""State ledgers: what was sent where, behind one small backend interface."""

from __future__ import annotations

from pathlib import Path

from xpdeploy.ledger.base import (
    Event,
    EventKind,
    LeaseLost,
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
    "LeaseLost",
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


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_ledger(state: str, environment: str, root: Path, remote: str = "origin") -> Ledger:
    """The ledger for ``environment`` that a ``state:`` value names: a PostgreSQL URL,
    ``git:BRANCH:PATH`` on ``remote``, or a file path relative to the project ``root``."""
    if state.startswith(POSTGRES_SCHEMES):
        from xpdeploy.ledger.postgres import PostgresLedger

        return PostgresLedger(state, environment)
    if state.startswith("git:"):
        from xpdeploy.ledger.gitbranch import GitBranchLedger

        return GitBranchLedger.from_state(state, environment, root, remote)
    return FileLedger(root / state, environment)
