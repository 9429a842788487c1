"""The ledger's apply lock: one holder across processes, refused at once, freed when its
process dies, ``unlock``, and the LockInfo that describes the holder.

The shared helpers (``pending``, ``INFO``, the ``state_path`` and ``ledger`` fixtures)
are in deploy_helpers.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import ENV, INFO, K, pending

import xpdeploy
from xpdeploy.errors import UserError
from xpdeploy.ledger import Event, FileLedger, LockHeld, LockInfo, Status

REPO = Path(xpdeploy.__file__).resolve().parents[1]


# --- lock -----------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from xpdeploy.ledger import Event, EventKind, LockInfo, open_ledger
ledger = open_ledger(sys.argv[1], "staging", Path("/"))
with ledger.lock(LockInfo.current("xpdeploy apply")):
    ledger.append([Event(EventKind.PENDING, "in-flight", revision=1, body_sha256="c" * 64)])
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(state_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate process that holds the lock (in a fake CI run) until stdin closes."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/campaigns",
        "GITHUB_RUN_ID": "987",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_lock_held_by_another_process_fails_at_once(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeld) as err, ledger.lock(INFO):
        pytest.fail("took a lock another process holds")
    assert err.value.holder is not None
    assert (err.value.holder.pid, err.value.holder.host) == (holder.pid, socket.gethostname())
    message = str(err.value)
    assert f"pid {holder.pid} on {socket.gethostname()}" in message
    assert "CI run https://github.com/acme/campaigns/actions/runs/987" in message
    assert str(ledger.lock_path) in message
    assert isinstance(err.value, UserError)


def test_read_works_while_another_process_holds_the_lock(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    state = ledger.read()
    assert state.serial == 1
    assert state.records["in-flight"].status is Status.PENDING


def test_killed_holder_leaves_no_stuck_lock(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    stale = json.loads(ledger.lock_path.read_text())
    assert stale["pid"] == holder.pid  # its description is still there, and must not matter
    with ledger.lock(INFO):
        ledger.append([Event(K.UNKNOWN, "in-flight")])
    assert ledger.read().records["in-flight"].status is Status.UNKNOWN


def test_unlock_refuses_while_a_process_holds_the_lock(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeld, match=f"pid {holder.pid}.*ends with its process"):
        ledger.unlock()
    assert ledger.lock_path.exists()


def test_unlock_removes_a_stale_lock_file(ledger: FileLedger) -> None:
    ledger.lock_path.parent.mkdir(parents=True)
    ledger.lock_path.write_text(json.dumps(INFO.as_dict()))
    assert "no lock was held (file locks end with their process)" in ledger.unlock()
    assert not ledger.lock_path.exists()
    assert ledger.unlock() == "no lock was held (file locks end with their process)"


def test_lock_conflicts_within_one_process_and_frees_on_exit(state_path: Path) -> None:
    first, second = FileLedger(state_path, ENV), FileLedger(state_path, ENV)
    with first.lock(INFO):
        assert json.loads(first.lock_path.read_text())["pid"] == INFO.pid
        with pytest.raises(LockHeld, match="pid 4242 on host-test"), second.lock(INFO):
            pytest.fail("took a held lock")
    assert not first.lock_path.exists()
    with second.lock(INFO):
        second.append([pending()])
    assert second.read().serial == 1


# --- lock holder description ----------------------------------------------------------


def test_lock_info_names_the_ci_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/campaigns")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    info = LockInfo.current("xpdeploy apply")
    assert info.ci_run == "https://github.example.com/acme/campaigns/actions/runs/42"
    assert (info.pid, info.host) == (os.getpid(), socket.gethostname())
    assert info.describe().endswith(f"(CI run {info.ci_run})")
    assert LockInfo.from_dict(info.as_dict()) == info


def test_lock_info_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    info = LockInfo.current("xpdeploy apply")
    assert info.ci_run is None
    assert info.describe().startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
    assert "CI run" not in info.describe()
