"""`xpdeploy state`: read the ledger (even during an apply) and repair it by hand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from deploy_helpers import (
    ENV,
    HOLD_LOCK,
    STATE,
    Deploy,
    lock_held_elsewhere,
    output,
)

from xpdeploy.emulator import Fault

RECORD_KEYS = {
    "name",
    "revision",
    "status",
    "body_sha256",
    "campaign_id",
    "audience",
    "sent_at",
    "response",
}


@pytest.fixture
def mixed(deploy: Deploy) -> Deploy:
    """s01 applied, s02 failed (unknown campaign), s03 unknown (500 after accept)."""
    deploy.write_spec("s02", campaign=999)
    assert deploy.apply("s01", "s02", "--parallelism", "1").exit_code == 1
    deploy.emulator.inject(Fault(status=500, accept=True))
    assert deploy.apply("s03").exit_code == 1
    assert deploy.statuses() == {"s01": "applied", "s02": "failed", "s03": "unknown"}
    return deploy


def state_json(deploy: Deploy, *args: str) -> dict[str, Any]:
    result = deploy.run("state", *args, "--format", "json")
    assert result.exit_code == 0, output(result)
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_list_json_shape(mixed: Deploy) -> None:
    document = state_json(mixed, "list")
    assert document["format_version"] == 1
    assert document["environment"] == ENV
    executions = {e["name"]: e for e in document["executions"]}
    assert [e["name"] for e in document["executions"]] == ["s01", "s02", "s03"]
    for item in executions.values():
        assert set(item) >= RECORD_KEYS
        assert item["revision"] == 1
        assert item["audience"] == 2
        assert len(item["body_sha256"]) == 64
    plan = {a["name"]: a for a in mixed.plan_json()["actions"]}
    assert executions["s01"]["body_sha256"] == plan["s01"]["body_sha256"]
    assert executions["s01"]["campaign_id"] == 42
    assert executions["s02"]["campaign_id"] == 999
    assert [executions[n]["status"] for n in ("s01", "s02", "s03")] == [
        "applied",
        "failed",
        "unknown",
    ]
    assert executions["s01"]["sent_at"]
    assert executions["s02"]["sent_at"] is None
    assert executions["s03"]["sent_at"] is None
    assert executions["s01"]["response"]["success"] is True
    assert executions["s02"]["response"]["message"] == "Campaign not found"


def test_list_text(mixed: Deploy) -> None:
    result = mixed.run("state", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"environment '{ENV}': ")
    assert STATE in lines[0]
    assert "(serial 6)" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["s01", "applied"],
        ["s02", "failed"],
        ["s03", "unknown"],
    ]


def test_list_of_an_empty_ledger(deploy: Deploy) -> None:
    text = deploy.run("state", "list")
    assert text.exit_code == 0
    assert "(no executions recorded)" in text.stdout
    assert state_json(deploy, "list")["executions"] == []
    assert not deploy.ledger_path.exists()


def test_show(mixed: Deploy) -> None:
    document = state_json(mixed, "show", "s02")
    (item,) = document["executions"]
    assert item["name"] == "s02"
    assert item["status"] == "failed"
    assert set(item) >= RECORD_KEYS
    text = mixed.run("state", "show", "s02")
    assert text.exit_code == 0
    assert "Campaign not found" in text.stdout
    assert item["body_sha256"] in text.stdout
    missing = mixed.run("state", "show", "nope")
    assert missing.exit_code == 1
    assert "'nope' is not in the ledger" in missing.stderr


def test_resolve_sent_and_not_sent(mixed: Deploy) -> None:
    sent = mixed.run("state", "resolve", "s03", "--sent")
    assert sent.exit_code == 0, output(sent)
    assert "s03: recorded as sent" in sent.stdout
    (item,) = state_json(mixed, "show", "s03")["executions"]
    assert item["status"] == "applied"
    assert item["sent_at"]
    assert mixed.actions()["s03"] == "unchanged"

    mixed.emulator.inject(Fault(drop="after"))
    mixed.write_spec("s01", revision=2)
    assert mixed.apply("s01").exit_code == 1
    not_sent = mixed.run("state", "resolve", "s01", "--not-sent")
    assert not_sent.exit_code == 0
    assert "the next apply sends it" in not_sent.stdout
    assert mixed.actions()["s01"] == "send"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["s01", "--sent"], "'s01' is applied, not pending or unknown"),
        (["s02", "--not-sent"], "'s02' is failed, not pending or unknown"),
        (["nope", "--sent"], "'nope' is not in the ledger"),
        (["s03"], "--sent or --not-sent"),
        (["s03", "--sent", "--not-sent"], "--sent or --not-sent (one of them)"),
    ],
)
def test_resolve_refusals(mixed: Deploy, args: list[str], message: str) -> None:
    before = mixed.ledger_path.read_bytes()
    result = mixed.run("state", "resolve", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert mixed.ledger_path.read_bytes() == before


def test_forget_lets_the_next_apply_send_again(mixed: Deploy) -> None:
    result = mixed.run("state", "forget", "s01")
    assert result.exit_code == 0, output(result)
    assert "s01" not in mixed.records()
    assert mixed.actions()["s01"] == "send"
    assert mixed.apply("s01").exit_code == 0
    assert mixed.accepted_names().count("s01") == 2
    missing = mixed.run("state", "forget", "nope")
    assert missing.exit_code == 1
    assert "'nope' is not in the ledger" in missing.stderr


def test_list_and_show_work_while_the_apply_lock_is_held(mixed: Deploy) -> None:
    with lock_held_elsewhere(mixed) as holder:
        listed = state_json(mixed, "list")
        assert len(listed["executions"]) == 3
        assert mixed.run("state", "show", "s01").exit_code == 0
        assert mixed.run("plan").exit_code == 0
        # Repairs need the lock, and say who has it.
        resolve = mixed.run("state", "resolve", "s03", "--sent")
        assert resolve.exit_code == 1
        assert f"pid {holder.pid}" in resolve.stderr
        unlock = mixed.run("state", "unlock")
        assert unlock.exit_code == 1
        assert f"pid {holder.pid}" in unlock.stderr
        assert mixed.lock_path_exists()
    assert mixed.statuses()["s03"] == "unknown"


def test_unlock(deploy: Deploy) -> None:
    free = deploy.run("state", "unlock")
    assert free.exit_code == 0
    assert "no lock was held" in free.stdout
    # A process killed while holding the lock leaves its description behind, not a lock.
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(deploy.ledger_path), ENV],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert deploy.lock_path_exists()
    assert deploy.apply("s01").exit_code == 0  # the stale file blocks nobody
    deploy.lock_path.write_text(
        '{"host": "h", "pid": 1, "started_at": "x", "ci_run": null, "command": "c"}\n'
    )
    removed = deploy.run("state", "unlock")
    assert removed.exit_code == 0, output(removed)
    assert "removed" in removed.stdout
    assert not deploy.lock_path_exists()


@pytest.mark.parametrize("args", [["resolve", "s03", "--sent"], ["forget", "s01"], ["unlock"]])
def test_repairs_accept_format_json(mixed: Deploy, args: list[str]) -> None:
    result = mixed.run("state", *args, "--format", "json")
    assert result.exit_code == 0, output(result)
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert document["environment"] == ENV


def test_compact_keeps_the_state_and_the_serial(mixed: Deploy) -> None:
    before = state_json(mixed, "list")
    journal = mixed.root / STATE
    lines_before = journal.read_text().splitlines()
    result = mixed.run("state", "compact")
    assert result.exit_code == 0, output(result)
    lines_after = journal.read_text().splitlines()
    assert len(lines_after) == 1 + 3 < len(lines_before)  # header + one event per record
    after = state_json(mixed, "list")
    assert after == before  # same records, lineage and serial: a saved plan stays valid
    assert mixed.plan_json()["summary"]["unchanged"] == 1
