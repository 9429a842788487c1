"""A saved plan is trusted for its bodies only: guards are re-checked from those bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy_helpers import (
    Deploy,
    output,
)

from xpdeploy.canonical import body_sha256


def test_guards_count_the_recipients_in_the_body_not_the_file(
    make_deploy: Callable[..., Deploy],
) -> None:
    deploy = make_deploy(1, guards={"max_targets": 5})
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    path = Path("plan.json")
    document = json.loads(path.read_text())
    [action] = document["actions"]
    # An edited body with a recomputed hash, and an audience that claims it is small.
    action["body"]["target"] = [f"user-{i}" for i in range(50)]
    action["body_sha256"] = body_sha256(action["body"])
    action["audience"] = 1
    path.write_text(json.dumps(document))
    result = deploy.apply("plan.json")
    assert result.exit_code == 1
    assert "50 recipients exceed guards.max_targets (5)" in output(result)
    assert deploy.accepted == []


def test_a_plan_body_with_an_apptoken_is_refused(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    path = Path("plan.json")
    document = json.loads(path.read_text())
    body = document["actions"][0]["body"]
    body["apptoken"] = "smuggled"
    document["actions"][0]["body_sha256"] = body_sha256(body)  # the hash leaves it out anyway
    path.write_text(json.dumps(document))
    result = deploy.apply("plan.json")
    assert result.exit_code == 1 and "holds an apptoken" in output(result)
    assert deploy.accepted == []


def test_names_that_are_not_in_the_saved_plan_are_an_error(deploy: Deploy) -> None:
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    result = deploy.apply("plan.json", "s01", "typo")
    assert result.exit_code == 1 and "not in the saved plan: typo" in output(result)
    assert deploy.accepted == [] and not deploy.ledger_path.exists()


# --- a plan file is decided again against the ledger (found by fuzzing) -------------------


def _saved_after_s01(deploy: Deploy) -> tuple[Path, dict[str, Any]]:
    """s01 applied, then a plan saved: s01 unchanged, s02 and s03 to send."""
    assert deploy.apply("s01").exit_code == 0
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    path = Path("plan.json")
    return path, json.loads(path.read_text())


def _sent_body(deploy: Deploy) -> dict[str, Any]:
    """The body s01 was sent with, as a plan file holds it (no apptoken)."""
    return {k: v for k, v in deploy.accepted[0].items() if k != "apptoken"}


def _action(document: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [a for a in document["actions"] if a["name"] == name]
    return found


def _refused(deploy: Deploy, path: Path, document: dict[str, Any], message: str) -> None:
    path.write_text(json.dumps(document))
    result = deploy.apply(str(path))
    assert result.exit_code == 1 and message in output(result), output(result)
    assert deploy.accepted_names() == ["s01"]


def test_an_applied_execution_marked_send_in_the_file_is_refused(deploy: Deploy) -> None:
    path, document = _saved_after_s01(deploy)
    s01 = _action(document, "s01")
    assert s01["action"] == "unchanged"
    s01["action"] = "send"
    s01["body"] = _sent_body(deploy)
    s01["body_sha256"] = body_sha256(s01["body"])
    _refused(deploy, path, document, "the saved plan sends 's01', but against the ledger it is")


def test_an_action_twice_in_the_file_is_refused(deploy: Deploy) -> None:
    path, document = _saved_after_s01(deploy)
    document["actions"].append(_action(document, "s02"))
    _refused(deploy, path, document, "the saved plan sends s02 more than once")


def test_a_sent_body_under_another_name_in_the_file_is_not_sent(deploy: Deploy) -> None:
    path, document = _saved_after_s01(deploy)
    s02 = _action(document, "s02")
    s02["body"] = _sent_body(deploy)
    s02["body_sha256"] = body_sha256(s02["body"])
    path.write_text(json.dumps(document))
    result = deploy.apply(str(path))
    assert result.exit_code == 1 and "blocked" in output(result)
    assert sorted(deploy.accepted_names()) == ["s01", "s03"]  # s02 blocked, s03 as planned


def test_a_revision_below_1_in_the_file_is_refused(deploy: Deploy) -> None:
    path, document = _saved_after_s01(deploy)
    _action(document, "s02")["revision"] = -5
    _refused(deploy, path, document, "plan file is malformed")


def test_an_untouched_saved_plan_still_applies(deploy: Deploy) -> None:
    path, _ = _saved_after_s01(deploy)
    assert deploy.apply(str(path)).exit_code == 0
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03"]


def test_a_saved_plan_applies_with_the_reasons_it_was_planned_with(deploy: Deploy) -> None:
    """Re-planned from its sends alone, s02's record looked like a renamed spec's."""
    assert deploy.apply("s02").exit_code == 0
    assert deploy.run("plan", "-o", "plan.json").exit_code == 0
    result = deploy.apply("plan.json")
    assert result.exit_code == 0 and "spec is gone" not in output(result)
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03"]
