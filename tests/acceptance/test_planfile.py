"""A saved plan is trusted for its bodies only: guards are re-checked from those bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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
