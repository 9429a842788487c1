"""A renamed spec must not be sent again: plan blocks it, `state mv` moves its record."""

from __future__ import annotations

from deploy_helpers import (
    Deploy,
    output,
)

BODY = """\
execute:
  id: 42
  target_by: user_id
  target: [crm-user-1]
  params: {external_message_id: spring-1}
  time: "2031-01-01 12:00 UTC"
"""


def write(deploy: Deploy, name: str) -> None:
    for old in (deploy.root / "campaigns").glob("*.yaml"):
        old.unlink()
    deploy.spec_path(name).write_text(f"name: {name}\n" + BODY, encoding="utf-8")


def test_a_renamed_spec_is_blocked_then_moved_not_resent(deploy: Deploy) -> None:
    write(deploy, "spring-promo")
    assert deploy.apply().exit_code == 0
    assert len(deploy.accepted) == 1
    write(deploy, "spring-promo-2031")  # the same execution under a new name
    plan = {a["name"]: a for a in deploy.plan_json()["actions"]}
    assert plan["spring-promo-2031"]["action"] == "blocked"
    assert "xpdeploy state mv spring-promo spring-promo-2031" in plan["spring-promo-2031"]["reason"]
    assert plan["spring-promo"]["action"] == "retired"
    assert deploy.apply().exit_code == 1
    assert len(deploy.accepted) == 1  # blocked: nothing went out
    moved = deploy.run("state", "mv", "spring-promo", "spring-promo-2031")
    assert moved.exit_code == 0, output(moved)
    assert deploy.actions() == {"spring-promo-2031": "unchanged"}
    assert deploy.statuses() == {"spring-promo-2031": "applied"}
    assert deploy.apply().exit_code == 0
    assert len(deploy.accepted) == 1


def test_mv_refuses_unknown_and_taken_names(deploy: Deploy) -> None:
    assert deploy.apply("s01", "s02").exit_code == 0
    assert deploy.run("state", "mv", "nope", "s09").exit_code == 1
    taken = deploy.run("state", "mv", "s01", "s02")
    assert taken.exit_code == 1 and "already in the ledger" in output(taken)
    same = deploy.run("state", "mv", "s01", "s01")
    assert same.exit_code == 1 and "nothing to move" in output(same)
    before = deploy.ledger_path.read_bytes()
    for name in ("", "Upper", "x\n", "two words", "caf\udce9"):
        refused = deploy.run("state", "mv", "s01", name)
        assert refused.exit_code == 1 and "cannot be a spec's name" in output(refused), name
    assert deploy.ledger_path.read_bytes() == before
    assert deploy.statuses() == {"s01": "applied", "s02": "applied"}
