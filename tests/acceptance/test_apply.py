"""`xpdeploy apply` against a real emulator socket: each execution goes out exactly once."""

from __future__ import annotations

import os
import pty
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from deploy_helpers import (
    ENV,
    TOKEN,
    TOKEN_ENV,
    Deploy,
    lock_held_elsewhere,
    output,
    python_cli,
    run,
    spec_text,
)

from xpdeploy.emulator import Fault

MakeDeploy = Callable[..., Deploy]


def test_apply_twice_sends_each_execution_once(deploy: Deploy) -> None:
    first = deploy.apply()
    assert first.exit_code == 0, output(first)
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03"]
    assert deploy.statuses() == {"s01": "applied", "s02": "applied", "s03": "applied"}
    assert "Apply: 3 sent, 0 failed, 0 unknown, 0 blocked, 0 unresolved" in first.stdout

    second = deploy.apply()
    assert second.exit_code == 0, output(second)
    assert len(deploy.accepted) == 3
    assert "Plan: 0 to send, 3 unchanged" in second.stdout
    assert "Apply: 0 sent" in second.stdout


def test_accepted_bodies_are_the_rendered_ones_with_the_token(deploy: Deploy) -> None:
    assert deploy.apply("s02").exit_code == 0
    (body,) = deploy.accepted
    # The emulator checks the token (it would answer 401), then masks it in what it keeps.
    assert body == {
        "apptoken": "***",
        "id": 42,
        "target_by": "user_id",
        "target": ["crm-user-1", "crm-user-2"],
        "params": {"external_message_id": "s02-staging", "text": "Hello"},
        "time": "2031-01-01 12:00 UTC",
    }
    record = deploy.records()["s02"]
    assert record.campaign_id == 42
    assert record.audience == 2
    assert record.revision == 1
    assert record.sent_at
    assert record.response["success"] is True


def test_names_limit_the_apply(deploy: Deploy) -> None:
    result = deploy.apply("s01", "s03")
    assert result.exit_code == 0, output(result)
    assert sorted(deploy.accepted_names()) == ["s01", "s03"]
    assert deploy.actions() == {"s01": "unchanged", "s02": "send", "s03": "unchanged"}


def test_unknown_name_is_an_error_and_sends_nothing(deploy: Deploy) -> None:
    result = deploy.apply("nope")
    assert result.exit_code == 1
    assert "nope" in result.stderr
    assert "Traceback" not in output(result)
    assert deploy.accepted == []


def test_parallel_apply_sends_every_execution_once(make_deploy: MakeDeploy) -> None:
    deploy = make_deploy(12)
    result = deploy.apply("--parallelism", "4")
    assert result.exit_code == 0, output(result)
    counts = Counter(deploy.accepted_names())
    assert sorted(counts) == [f"s{i:02d}" for i in range(1, 13)]
    assert set(counts.values()) == {1}
    assert set(deploy.statuses().values()) == {"applied"}
    assert deploy.apply().exit_code == 0
    assert len(deploy.accepted) == 12


def test_in_process_emulator_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`api_url: emulator` starts the built-in emulator; no token is needed."""
    monkeypatch.setenv("XPDEPLOY_NOW", "2030-06-01T00:00:00Z")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "xpdeploy.yaml").write_text(
        'version: 1\nenvironments: {"local": {"api_url": "emulator"}}\n', encoding="utf-8"
    )
    (tmp_path / "campaigns" / "hello.yaml").write_text(spec_text("hello"), encoding="utf-8")
    first = run("apply", "--auto-approve")
    assert first.exit_code == 0, output(first)
    assert "hello: sent (HTTP 200" in first.stdout
    journal = (tmp_path / ".xpdeploy" / "local.jsonl").read_text(encoding="utf-8")
    assert '"kind":"applied"' in journal
    second = run("apply", "--auto-approve")
    assert second.exit_code == 0
    assert "Plan: 0 to send, 1 unchanged" in second.stdout


# --- drift, revisions, retirement ------------------------------------------------------


def test_drift_then_bump_then_retire(deploy: Deploy) -> None:
    assert deploy.apply().exit_code == 0
    deploy.write_spec("s01", text="Hello again")  # same revision, new body

    plan = deploy.plan_json()
    (drifted,) = [a for a in plan["actions"] if a["name"] == "s01"]
    assert drifted["action"] == "drifted"
    assert "bump revision to 2" in drifted["reason"]
    assert plan["summary"]["drifted"] == 1

    held = deploy.apply()
    assert held.exit_code == 0, output(held)
    assert "! s01" in held.stdout
    assert len(deploy.accepted) == 3

    deploy.write_spec("s01", text="Hello again", revision=2)
    assert deploy.actions()["s01"] == "send"
    bumped = deploy.apply()
    assert bumped.exit_code == 0, output(bumped)
    assert len(deploy.accepted) == 4
    assert deploy.accepted[-1]["params"]["text"] == "Hello again"
    assert deploy.records()["s01"].revision == 2
    assert deploy.apply().exit_code == 0
    assert len(deploy.accepted) == 4

    deploy.remove_spec("s02")
    plan = deploy.plan_json()
    assert {a["name"]: a["action"] for a in plan["actions"]}["s02"] == "retired"
    assert plan["summary"]["retired"] == 1
    retired = deploy.apply()
    assert retired.exit_code == 0, output(retired)
    assert len(deploy.accepted) == 4
    assert deploy.statuses()["s02"] == "applied"


def test_lower_revision_than_applied_never_sends(deploy: Deploy) -> None:
    deploy.write_spec("s01", revision=3)
    assert deploy.apply().exit_code == 0
    deploy.write_spec("s01", revision=2)
    assert deploy.actions()["s01"] in ("unchanged", "drifted")  # same body: nothing to do
    deploy.write_spec("s01", revision=2, text="changed")
    plan = deploy.plan_json()
    (lowered,) = [a for a in plan["actions"] if a["name"] == "s01"]
    assert lowered["action"] == "drifted"
    assert "lower than the applied revision 3" in lowered["reason"]
    assert deploy.apply().exit_code == 0
    assert len(deploy.accepted) == 3


# --- retries and ambiguous outcomes ----------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(status=503, retry_after=0.01)],
        [Fault(status=429, retry_after=0.01)],
        [Fault(status=503, retry_after=0.01), Fault(status=429, retry_after=0.02)],
    ],
    ids=["503", "429", "503-then-429"],
)
def test_retryable_answers_then_success_send_once(
    make_deploy: MakeDeploy, faults: list[Fault]
) -> None:
    deploy = make_deploy(1)
    deploy.emulator.inject(*faults)
    result = deploy.apply()
    assert result.exit_code == 0, output(result)
    assert deploy.accepted_names() == ["s01"]
    record = deploy.records()["s01"]
    assert record.status.value == "applied"
    assert record.response["success"] is True


@pytest.mark.parametrize(
    "fault",
    [Fault(status=500, accept=True), Fault(drop="after"), Fault(status=502, accept=True)],
    ids=["500-after-accept", "dropped-after-accept", "502-after-accept"],
)
def test_ambiguous_outcome_is_unknown_and_never_resent(
    make_deploy: MakeDeploy, fault: Fault
) -> None:
    deploy = make_deploy(2)
    deploy.emulator.inject(fault)
    first = deploy.apply("--parallelism", "1")
    assert first.exit_code == 1, output(first)
    assert deploy.accepted_names() == ["s01", "s02"]  # the emulator did act on s01
    assert deploy.statuses() == {"s01": "unknown", "s02": "applied"}
    assert "s01: UNKNOWN" in first.stdout
    assert "1 unknown" in first.stdout

    again = deploy.apply()
    assert again.exit_code == 1, output(again)
    assert len(deploy.accepted) == 2
    assert deploy.actions() == {"s01": "unresolved", "s02": "unchanged"}
    assert "xpdeploy state resolve s01" in again.stdout


@pytest.mark.parametrize("fault", [Fault(status=500, accept=True), Fault(drop="after")])
def test_resolve_sent_settles_an_unknown(make_deploy: MakeDeploy, fault: Fault) -> None:
    deploy = make_deploy(1)
    deploy.emulator.inject(fault)
    assert deploy.apply().exit_code == 1
    resolved = deploy.run("state", "resolve", "s01", "--sent")
    assert resolved.exit_code == 0, output(resolved)
    assert deploy.actions() == {"s01": "unchanged"}
    final = deploy.apply()
    assert final.exit_code == 0, output(final)
    assert len(deploy.accepted) == 1


@pytest.mark.parametrize("fault", [Fault(status=500, accept=True), Fault(drop="after")])
def test_resolve_not_sent_sends_it_once_more(make_deploy: MakeDeploy, fault: Fault) -> None:
    deploy = make_deploy(1)
    deploy.emulator.inject(fault)
    assert deploy.apply().exit_code == 1
    assert deploy.run("state", "resolve", "s01", "--not-sent").exit_code == 0
    assert deploy.actions() == {"s01": "send"}
    resent = deploy.apply()
    assert resent.exit_code == 0, output(resent)
    assert deploy.accepted_names() == ["s01", "s01"]
    assert deploy.statuses() == {"s01": "applied"}
    assert deploy.apply().exit_code == 0
    assert len(deploy.accepted) == 2


def test_success_false_body_is_failed(make_deploy: MakeDeploy) -> None:
    deploy = make_deploy(1)
    deploy.emulator.inject(
        Fault(status=200, body='{"code": 200, "success": false, "message": "Quota exceeded"}')
    )
    result = deploy.apply()
    assert result.exit_code == 1
    assert "Quota exceeded" in result.stdout
    assert deploy.statuses() == {"s01": "failed"}
    assert deploy.actions() == {"s01": "send"}


def test_unparseable_success_body_is_unknown(make_deploy: MakeDeploy) -> None:
    deploy = make_deploy(1)
    deploy.emulator.inject(Fault(status=200, body="<html>gateway</html>"))
    result = deploy.apply()
    assert result.exit_code == 1
    assert deploy.statuses() == {"s01": "unknown"}
    assert deploy.actions() == {"s01": "unresolved"}


# --- rejections --------------------------------------------------------------------------


def test_rejection_is_failed_then_sent_after_the_fix(make_deploy: MakeDeploy) -> None:
    deploy = make_deploy(2)
    deploy.write_spec("s01", campaign=999)  # the emulator does not know campaign 999
    first = deploy.apply("--parallelism", "1")
    assert first.exit_code == 1
    assert "s01: failed (HTTP 400: Campaign not found" in first.stdout
    assert deploy.statuses() == {"s01": "failed", "s02": "applied"}
    assert deploy.accepted_names() == ["s02"]
    assert "Campaign not found" in (deploy.records()["s01"].message or "")

    plan = deploy.plan_json()
    (again,) = [a for a in plan["actions"] if a["name"] == "s01"]
    assert again["action"] == "send"
    assert "did not go out (HTTP 400" in again["reason"]

    deploy.write_spec("s01", campaign=43)
    fixed = deploy.apply()
    assert fixed.exit_code == 0, output(fixed)
    assert deploy.accepted_names() == ["s02", "s01"]
    assert deploy.accepted[-1]["id"] == 43
    assert deploy.statuses() == {"s01": "applied", "s02": "applied"}


def test_wrong_token_is_a_rejection_not_a_send(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN + "-wrong")
    result = deploy.apply()
    assert result.exit_code == 1
    assert "HTTP 401: Authentication failed" in result.stdout
    assert deploy.accepted == []
    assert set(deploy.statuses().values()) == {"failed"}


# --- refusals ----------------------------------------------------------------------------


def test_second_concurrent_apply_fails_at_once_naming_the_holder(deploy: Deploy) -> None:
    with lock_held_elsewhere(deploy) as holder:
        result = deploy.apply()
    assert result.exit_code == 1
    assert f"pid {holder.pid}" in result.stderr
    assert "lock-holder-under-test" in result.stderr
    assert "locked" in result.stderr
    assert deploy.accepted == []
    assert deploy.state().serial == 0
    after = deploy.apply()  # the holder is gone, so is its lock
    assert after.exit_code == 0, output(after)


def test_without_auto_approve_and_no_tty_apply_refuses(deploy: Deploy) -> None:
    result = deploy.run("apply", input="yes\n")
    assert result.exit_code == 1
    assert "--auto-approve" in result.stderr
    assert deploy.accepted == []
    assert deploy.state().serial == 0


def test_missing_token_blocks_every_send(deploy: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    result = deploy.apply()
    assert result.exit_code == 1
    assert result.stdout.count(f"the environment variable {TOKEN_ENV} is not set") == 3
    assert "3 blocked" in result.stdout
    assert deploy.accepted == []
    assert deploy.state().serial == 0


def test_time_in_the_past_is_blocked(deploy: Deploy) -> None:
    deploy.write_spec("s02", time="2030-05-31 23:59 UTC")  # a minute before the pinned now
    plan = deploy.plan_json()
    (blocked,) = [a for a in plan["actions"] if a["action"] == "blocked"]
    assert blocked["name"] == "s02"
    assert "in the past" in blocked["reason"]
    result = deploy.apply()
    assert result.exit_code == 1
    assert "x s02" in result.stdout
    assert sorted(deploy.accepted_names()) == ["s01", "s03"]
    assert "s02" not in deploy.records()


def test_time_that_passes_between_plan_and_apply_blocks(deploy: Deploy) -> None:
    assert deploy.actions()["s01"] == "send"
    result = deploy.apply(env={"XPDEPLOY_NOW": "2031-06-01T00:00:00Z"})
    assert result.exit_code == 1
    assert deploy.accepted == []


def test_max_targets_guard_stops_apply_with_a_lint_error(make_deploy: MakeDeploy) -> None:
    deploy = make_deploy(1, guards={"max_targets": 1})
    lint = deploy.run("lint")
    assert lint.exit_code == 1
    assert "max-targets" in lint.stdout
    result = deploy.apply()
    assert result.exit_code == 1
    assert "max-targets" in result.stderr
    assert deploy.accepted == []


def test_environment_flag_picks_the_ledger(make_deploy: MakeDeploy, tmp_path: Path) -> None:
    deploy = make_deploy(1, extra_envs={"other": {"api_url": "emulator"}})
    # XPDEPLOY_API_URL would redirect every environment; without it, `other` is in-process.
    assert deploy.apply("-e", "other", env={"XPDEPLOY_API_URL": None}).exit_code == 0
    assert (tmp_path / ".xpdeploy" / "other.jsonl").is_file()
    assert not deploy.ledger_path.exists()
    assert deploy.actions("-e", ENV) == {"s01": "send"}


@pytest.mark.parametrize(("answer", "sent"), [("no", 0), ("y", 0), ("yes", 3)])
def test_on_a_terminal_only_yes_sends(deploy: Deploy, answer: str, sent: int) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            python_cli("apply"),
            cwd=deploy.root,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(secondary)
        os.write(primary, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(primary)
    assert "Send 3 execution(s) to environment 'staging'?" in out
    assert len(deploy.accepted) == sent
    if sent:
        assert proc.returncode == 0, out + err
    else:
        assert proc.returncode == 1
        assert "Apply cancelled: nothing was sent." in err
        assert deploy.state().serial == 0
