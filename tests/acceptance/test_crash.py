"""A real `xpdeploy apply` process killed mid-send loses no record and leaves no lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_helpers import (
    Deploy,
    output,
    python_cli,
)

from xpdeploy.emulator import Fault
from xpdeploy.ledger import LockInfo

DEADLINE = 30.0  # seconds; a generous bound for polling, never a measured duration


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition()`` until it is true, failing after DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def apply_process(deploy: Deploy) -> Iterator[list[subprocess.Popen[str]]]:
    """Started `xpdeploy apply` processes; any still running at the end are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEADLINE)


def start_apply(deploy: Deploy, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        python_cli("apply", "--auto-approve", "--parallelism", "1"),
        cwd=deploy.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def assert_journal_is_json_lines(path: Path) -> None:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.decode("utf-8").splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_kill_9_mid_send_leaves_one_pending_and_no_lock(
    deploy: Deploy, apply_process: list[subprocess.Popen[str]]
) -> None:
    deploy.emulator.inject(Fault(delay=30))  # accepted, then the answer hangs
    proc = start_apply(deploy, apply_process)
    wait_for(lambda: deploy.accepted or proc.poll() is not None, "the first request")
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL

    assert deploy.accepted_names() == ["s01"]
    assert deploy.statuses() == {"s01": "pending"}  # s02, s03 were never started
    assert_journal_is_json_lines(deploy.ledger_path)
    kinds = [line.get("kind") for line in deploy.journal()[1:]]
    assert kinds == ["pending"]

    ledger = deploy.ledger()
    with ledger.lock(LockInfo.current("test: after the kill")):  # at once, or LockHeld
        pass

    result = deploy.apply()
    assert result.exit_code == 1, output(result)
    assert "? s01" in result.stdout
    assert "unresolved" in result.stdout
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03"]
    assert deploy.statuses() == {"s01": "pending", "s02": "applied", "s03": "applied"}
    assert deploy.actions() == {"s01": "unresolved", "s02": "unchanged", "s03": "unchanged"}
    assert_journal_is_json_lines(deploy.ledger_path)

    assert deploy.run("state", "resolve", "s01", "--sent").exit_code == 0
    final = deploy.apply()
    assert final.exit_code == 0, output(final)
    assert len(deploy.accepted) == 3


def test_second_apply_process_is_refused_while_one_runs(
    deploy: Deploy, apply_process: list[subprocess.Popen[str]]
) -> None:
    deploy.emulator.inject(Fault(delay=30))
    proc = start_apply(deploy, apply_process)
    wait_for(lambda: deploy.accepted or proc.poll() is not None, "the first request")
    assert proc.poll() is None, proc.communicate()

    second = deploy.apply()
    assert second.exit_code == 1
    assert f"pid {proc.pid}" in second.stderr
    assert "xpdeploy apply" in second.stderr
    listed = deploy.run("state", "list")
    assert listed.exit_code == 0
    assert "s01" in listed.stdout
    assert "pending" in listed.stdout
    assert len(deploy.accepted) == 1


def test_sigterm_finishes_the_send_in_flight_and_starts_no_more(
    deploy: Deploy, apply_process: list[subprocess.Popen[str]]
) -> None:
    deploy.emulator.inject(Fault(delay=1, times=3))
    proc = start_apply(deploy, apply_process)
    wait_for(lambda: deploy.accepted or proc.poll() is not None, "the first request")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1, stdout + stderr
    assert "Stopped by a signal" in stderr

    statuses = deploy.statuses()
    # Whatever went out is recorded as applied; nothing is left pending; the rest never started.
    assert sorted(statuses) == sorted(deploy.accepted_names())
    assert set(statuses.values()) == {"applied"}
    assert "s03" not in statuses
    assert_journal_is_json_lines(deploy.ledger_path)
