"""`xpdeploy plan`: actions, formats, exit codes, golden output, and saved plan files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    ENV,
    TOKEN_ENV,
    Deploy,
    output,
)

from xpdeploy.canonical import body_sha256
from xpdeploy.emulator import Fault

MakeDeploy = Callable[..., Deploy]
GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SUMMARY_KEYS = {"send", "unchanged", "drifted", "blocked", "unresolved", "retired"}
ACTION_KEYS = {"name", "action", "revision", "body_sha256", "body", "reason"}


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/NAME; XPDEPLOY_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("XPDEPLOY_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.is_file(), f"{path} is missing: run with XPDEPLOY_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs (XPDEPLOY_UPDATE_GOLDEN=1 rewrites it)"


def sends(plan_file: Path) -> dict[str, dict[str, Any]]:
    document = json.loads(plan_file.read_text(encoding="utf-8"))
    return {a["name"]: a for a in document["actions"] if a["action"] == "send"}


def unmasked(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("apptoken", "***") == "***"
    return {k: v for k, v in body.items() if k != "apptoken"}


# --- actions, exit codes, JSON ---------------------------------------------------------


def test_detailed_exitcode(deploy: Deploy) -> None:
    assert deploy.run("plan").exit_code == 0
    assert deploy.run("plan", "--detailed-exitcode").exit_code == 2
    assert deploy.apply().exit_code == 0
    assert deploy.run("plan", "--detailed-exitcode").exit_code == 0
    deploy.write_spec("s01", text="changed")  # drifted is not a send
    assert deploy.run("plan", "--detailed-exitcode").exit_code == 0
    deploy.write_spec("s01", text="changed", revision=2)
    assert deploy.run("plan", "--detailed-exitcode").exit_code == 2


def test_detailed_exitcode_is_one_on_error(deploy: Deploy) -> None:
    deploy.spec_path("s01").write_text("name: s01\nexecute: {id: 42, target: [a]\n")
    result = deploy.run("plan", "--detailed-exitcode")
    assert result.exit_code == 1
    assert "yaml-syntax" in result.stderr
    assert "Traceback" not in output(result)


def test_json_plan_shape(deploy: Deploy) -> None:
    assert deploy.apply("s03").exit_code == 0
    plan = deploy.plan_json()
    assert plan["format_version"] == 1
    assert plan["environment"] == ENV
    assert set(plan["summary"]) == SUMMARY_KEYS
    assert plan["summary"] == {
        "send": 2,
        "unchanged": 1,
        "drifted": 0,
        "blocked": 0,
        "unresolved": 0,
        "retired": 0,
    }
    assert [(a["name"], a["action"]) for a in plan["actions"]] == [
        ("s01", "send"),
        ("s02", "send"),
        ("s03", "unchanged"),
    ]
    for action in plan["actions"]:
        assert set(action) >= ACTION_KEYS
        assert action["revision"] == 1
        assert isinstance(action["reason"], str)
        assert action["reason"]
        assert action["body"]["apptoken"] == "***"
        assert body_sha256(action["body"]) == action["body_sha256"]
    sent = deploy.accepted[0]
    assert plan["actions"][2]["body"] == sent
    assert plan["actions"][2]["body_sha256"] == deploy.records()["s03"].body_sha256


def test_names_limit_the_plan(deploy: Deploy) -> None:
    plan = deploy.plan_json("s02")
    assert [a["name"] for a in plan["actions"]] == ["s02"]
    assert plan["summary"]["send"] == 1
    missing = deploy.run("plan", "nope")
    assert missing.exit_code == 1
    assert "nope" in missing.stderr


def test_text_plan_lines(deploy: Deploy) -> None:
    assert deploy.apply("s01").exit_code == 0
    deploy.write_spec("s01", text="changed")
    result = deploy.run("plan")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"xpdeploy plan for environment '{ENV}' (ledger state/{ENV}.jsonl, serial 2)"
    assert "  + s02  send  (revision 1, campaign 42, 2 recipients, 2031-01-01 12:00 UTC)" in lines
    assert any(line.startswith("  ! s01  drifted") for line in lines)
    assert "+ s02 (revision 1) will send:" in lines
    assert "+ s01 (revision 1) will send:" not in lines
    assert lines[-1] == "Plan: 2 to send, 0 unchanged, 1 drifted, 0 blocked."


def test_plan_reads_the_ledger_but_never_writes_it(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    assert not deploy.ledger_path.exists()
    assert deploy.accepted == []


# --- golden output ------------------------------------------------------------------------


def every_action(deploy: Deploy) -> None:
    """A ledger and a project with one execution of each plan action."""
    for name in ("welcome", "promo", "reminder", "gone", "flaky", "late"):
        deploy.write_spec(name)
    for name in ("s01", "s02", "s03"):
        deploy.remove_spec(name)
    deploy.emulator.inject(Fault(status=500, accept=True))
    assert deploy.apply("flaky").exit_code == 1
    assert deploy.apply().exit_code == 1  # flaky stays unresolved
    assert deploy.statuses() == {
        "flaky": "unknown",
        **{name: "applied" for name in ("welcome", "promo", "reminder", "gone", "late")},
    }
    deploy.write_spec("promo", text="Hello, changed")  # drifted
    deploy.write_spec("reminder", revision=2, text="Second reminder")  # send
    deploy.remove_spec("gone")  # retired
    deploy.write_spec("late", revision=2, time="2030-05-01 09:00 UTC")  # blocked: past
    deploy.write_spec("newcomer", recipients=["crm-user-9"], time=None)  # send, now


def test_golden_text_plan(deploy: Deploy) -> None:
    every_action(deploy)
    result = deploy.run("plan", "--format", "text")
    assert result.exit_code == 0, output(result)
    check_golden("plan.txt", result.stdout)


def test_golden_markdown_plan(deploy: Deploy) -> None:
    every_action(deploy)
    result = deploy.run("plan", "--format", "markdown")
    assert result.exit_code == 0, output(result)
    check_golden("plan.md", result.stdout)


def test_markdown_plan_structure(deploy: Deploy) -> None:
    every_action(deploy)
    text = deploy.run("plan", "--format", "markdown").stdout
    assert text.startswith(f"<!-- xpdeploy plan: {ENV} -->\n")
    assert "| | execution | action | campaign | audience | schedule |" in text
    for name in ("welcome", "promo", "reminder", "gone", "flaky", "late", "newcomer"):
        assert f"`{name}`" in text
    # One <details> per execution (SPEC §6), unchanged ones last.
    assert text.count("<details>") == text.count("</details>") == 7
    assert text.rindex("<code>welcome</code>: unchanged") > text.rindex("<code>newcomer</code>")
    assert "left out" not in text


def test_plan_output_has_nothing_that_changes_between_runs(deploy: Deploy) -> None:
    """The golden plans show no ports, paths or times that change from run to run."""
    every_action(deploy)
    for fmt in ("text", "markdown"):
        text = deploy.run("plan", "--format", fmt).stdout
        assert deploy.emulator.url not in text
        assert str(deploy.root) not in text


# --- saved plans ------------------------------------------------------------------------------


def test_saved_plan_sends_exactly_the_reviewed_bodies(deploy: Deploy) -> None:
    saved = deploy.run("plan", "-o", "plan.json")
    assert saved.exit_code == 0, output(saved)
    assert "plan.json" in saved.stderr
    reviewed = sends(deploy.root / "plan.json")
    assert sorted(reviewed) == ["s01", "s02", "s03"]

    # The work tree moves on after review; apply PLANFILE must not notice.
    deploy.write_spec("s01", text="not what was reviewed", revision=5)
    deploy.remove_spec("s02")
    deploy.write_spec("s04")

    result = deploy.apply("plan.json")
    assert result.exit_code == 0, output(result)
    accepted = {body["params"]["external_message_id"]: body for body in deploy.accepted}
    assert len(deploy.accepted) == 3
    for name, action in reviewed.items():
        assert unmasked(accepted[f"{name}-{ENV}"]) == unmasked(action["body"])
        assert deploy.records()[name].body_sha256 == action["body_sha256"]
        assert deploy.records()[name].revision == 1
    assert "s04" not in deploy.records()

    again = deploy.apply("plan.json")
    assert again.exit_code == 1
    assert "stale plan" in again.stderr
    assert "nothing was sent" in again.stderr
    assert len(deploy.accepted) == 3


def test_plan_file_contents(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json", "--ttl", "2h").exit_code == 0
    document = json.loads((deploy.root / "plan.json").read_text(encoding="utf-8"))
    assert document["environment"] == ENV
    assert document["serial"] == 0
    assert document["lineage"] is None
    assert document["tool_version"]
    assert "commit" in document
    assert document["created_at"].startswith("2030-06-01T00:00:00")
    assert document["expires_at"].startswith("2030-06-01T02:00:00")
    for action in document["actions"]:
        assert body_sha256(action["body"]) == action["body_sha256"]


def test_plan_made_before_the_first_apply_is_stale_after_it(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    assert deploy.apply("s01").exit_code == 0
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "stale plan" in result.stderr
    assert "lineage" in result.stderr
    assert deploy.accepted_names() == ["s01"]


def test_plan_made_before_another_apply_is_stale(deploy: Deploy) -> None:
    assert deploy.apply("s01").exit_code == 0
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    assert deploy.apply("s02").exit_code == 0
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "stale plan: the ledger moved from serial 2 to 4" in result.stderr
    assert deploy.accepted_names() == ["s01", "s02"]


def test_a_different_ledger_makes_the_plan_stale(deploy: Deploy) -> None:
    assert deploy.apply("s01").exit_code == 0
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    deploy.ledger_path.unlink()  # a new ledger, with a new lineage, at the same serial
    assert deploy.apply("s01").exit_code == 0
    assert deploy.state().serial == 2
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "lineage" in result.stderr
    assert deploy.accepted_names() == ["s01", "s01"]


def test_expired_plan_is_refused(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json", "--ttl", "1h").exit_code == 0
    later = {"XPDEPLOY_NOW": "2030-06-01T01:00:00Z"}  # expiry is exclusive: exactly 1h is late
    result = deploy.apply("plan.json", env=later)
    assert result.exit_code == 1
    assert "expired" in result.stderr
    assert deploy.accepted == []
    assert deploy.state().serial == 0
    fresh = deploy.apply("plan.json", env={"XPDEPLOY_NOW": "2030-06-01T00:59:00Z"})
    assert fresh.exit_code == 0, output(fresh)
    assert len(deploy.accepted) == 3


@pytest.mark.parametrize(
    "tamper",
    [
        lambda a: a["body"]["target"].append("crm-intruder"),
        lambda a: a["body"].pop("time"),
        lambda a: a.update(body_sha256="0" * 64),
    ],
    ids=["added-recipient", "removed-field", "hash"],
)
def test_tampered_plan_is_refused(deploy: Deploy, tamper: Callable[[Any], None]) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    path = deploy.root / "plan.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    tamper(document["actions"][1])
    path.write_text(json.dumps(document), encoding="utf-8")
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "does not match its hash" in result.stderr
    assert "Traceback" not in output(result)
    assert deploy.accepted == []
    assert not deploy.ledger_path.exists()


@pytest.mark.parametrize(
    "content", ["not json", "[]", '{"kind": "something-else"}', '{"kind": "xpdeploy-plan"}']
)
def test_unreadable_plan_file_is_refused(deploy: Deploy, content: str) -> None:
    (deploy.root / "plan.json").write_text(content, encoding="utf-8")
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "plan" in result.stderr
    assert "Traceback" not in output(result)
    assert deploy.accepted == []


def test_saved_plan_is_blocked_by_a_guard_added_after_review(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    deploy.write_project(guards={"max_targets": 1})
    assert "max-targets" in deploy.run("lint").stdout
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "exceed guards.max_targets (1)" in result.stdout
    assert "3 blocked" in result.stdout
    assert deploy.accepted == []


def test_saved_plan_is_blocked_when_its_time_has_passed(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json", "--ttl", "1000d").exit_code == 0
    result = deploy.apply("plan.json", env={"XPDEPLOY_NOW": "2031-02-01T00:00:00Z"})
    assert result.exit_code == 1
    assert "in the past" in result.stdout
    assert deploy.accepted == []


def test_saved_plan_without_token_is_blocked(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    monkeypatch.delenv(TOKEN_ENV)
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert TOKEN_ENV in result.stdout
    assert deploy.accepted == []


def test_saved_plan_for_another_environment_is_refused(make_deploy: MakeDeploy) -> None:
    deploy = make_deploy(1, extra_envs={"prod": {"api_url": "https://example.invalid"}})
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    result = deploy.apply("plan.json", "-e", "prod")
    assert result.exit_code == 1
    assert "'staging'" in result.stderr
    assert deploy.accepted == []


def test_saved_plan_with_names_sends_only_those(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    result = deploy.apply("plan.json", "s02")
    assert result.exit_code == 0, output(result)
    assert deploy.accepted_names() == ["s02"]


def test_saved_plan_for_a_removed_environment_is_a_user_error(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    text = (deploy.root / "xpdeploy.yaml").read_text(encoding="utf-8")
    (deploy.root / "xpdeploy.yaml").write_text(text.replace(ENV, "renamed"), encoding="utf-8")
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert deploy.accepted == []
    assert "internal error" not in result.stderr
    assert ENV in result.stderr


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(expires_at="2030-06-02T00:00:00"),
        lambda d: d["actions"][0].update(name=["s01"]),
    ],
    ids=["naive-expiry", "list-name"],
)
def test_malformed_plan_values_are_user_errors(
    deploy: Deploy, edit: Callable[[dict[str, Any]], None]
) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    path = deploy.root / "plan.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert deploy.accepted == []
    assert "internal error" not in result.stderr
    assert "plan" in result.stderr
