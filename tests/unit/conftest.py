"""Fixtures of the ledger's own tests (test_ledger.py, test_ledger_lock.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import ENV

from xpdeploy.ledger import FileLedger


@pytest.fixture(name="state_path")
def state_path_fixture(tmp_path: Path) -> Path:
    """Where ``ledger`` keeps its journal; nothing is there yet."""
    return tmp_path / "state" / f"{ENV}.jsonl"


@pytest.fixture(name="ledger")
def ledger_fixture(state_path: Path) -> FileLedger:
    """An unlocked `FileLedger` of ENV at ``state_path`` (test_apply_loop.py has its own)."""
    return FileLedger(state_path, ENV)
