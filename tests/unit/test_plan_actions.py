"""xpdeploy.plan: one action per execution from its ledger record, guards, ordering."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from xpdeploy.canonical import body_sha256
from xpdeploy.execution import Execution
from xpdeploy.ledger import LedgerState, Record, Status
from xpdeploy.model import Environment
from xpdeploy.plan import ATTENTION, Action, PlannedAction, decide, guard, make_plan

NOW = datetime(2030, 6, 1, tzinfo=timezone.utc)
ENV = Environment()


def body(
    name: str = "x", time: str | None = "2031-01-01 12:00 UTC", **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": 42, "target_by": "user_id", "target": ["a", "b"]}
    out["params"] = {"external_message_id": name}
    if time is not None:
        out["time"] = time
    out.update(extra)
    return out


def execution(name: str = "x", revision: int = 1, **kwargs: Any) -> Execution:
    return Execution(name, revision, "staging", body(name, **kwargs), f"campaigns/{name}.yaml", 1)


def record(
    ex: Execution | None = None,
    *,
    name: str = "x",
    revision: int = 1,
    status: Status = Status.APPLIED,
    sha: str | None = None,
    message: str | None = None,
) -> Record:
    return Record(
        name=ex.name if ex else name,
        revision=revision,
        status=status,
        body_sha256=sha or (ex.sha256 if ex else "f" * 64),
        campaign_id=42,
        audience=2,
        sent_at="2030-05-01T00:00:00Z" if status is Status.APPLIED else None,
        response=None,
        message=message,
        updated_at="2030-05-01T00:00:00Z",
    )


def state(*records: Record) -> LedgerState:
    return LedgerState("staging", "lineage-1", 2 * len(records), {r.name: r for r in records})


# --- decide -------------------------------------------------------------------------------


def test_new_execution_is_sent() -> None:
    assert decide(execution(), None) == (Action.SEND, "new: not in the ledger")


@pytest.mark.parametrize(
    ("ledger_revision", "status", "same_body", "revision", "expected", "words"),
    [
        (1, Status.APPLIED, True, 1, Action.UNCHANGED, "applied at revision 1"),
        (1, Status.APPLIED, False, 1, Action.DRIFTED, "bump revision to 2"),
        (1, Status.APPLIED, True, 2, Action.SEND, "revision bumped from 1 to 2"),
        (1, Status.APPLIED, False, 2, Action.SEND, "revision bumped from 1 to 2"),
        (3, Status.APPLIED, False, 2, Action.DRIFTED, "lower than the applied revision 3"),
        (1, Status.PENDING, True, 1, Action.UNRESOLVED, "is pending"),
        (1, Status.UNKNOWN, True, 1, Action.UNRESOLVED, "is unknown"),
        (1, Status.UNKNOWN, False, 2, Action.UNRESOLVED, "state resolve x --sent"),
        (1, Status.PENDING, False, 9, Action.UNRESOLVED, "--not-sent"),
        (
            1,
            Status.FAILED,
            True,
            1,
            Action.SEND,
            "did not go out (HTTP 400: Campaign not found)",
        ),
        (1, Status.FAILED, False, 1, Action.SEND, "sending it again"),
        (1, Status.FAILED, False, 2, Action.SEND, "did not go out"),
        (3, Status.FAILED, False, 2, Action.DRIFTED, "lower than the ledger's 3"),
    ],
)
def test_decide(
    ledger_revision: int,
    status: Status,
    same_body: bool,
    revision: int,
    expected: Action,
    words: str,
) -> None:
    ex = execution(revision=revision)
    rec = record(
        ex,
        revision=ledger_revision,
        status=status,
        sha=None if same_body else "0" * 64,
        message="HTTP 400: Campaign not found" if status is Status.FAILED else None,
    )
    action, reason = decide(ex, rec)
    assert action is expected
    assert words in reason


def test_unresolved_is_never_sent_whatever_the_spec_says() -> None:
    """An interrupted send may have gone out: no revision bump may send it automatically."""
    for status in (Status.PENDING, Status.UNKNOWN):
        for revision in (1, 2, 50):
            action, _ = decide(execution(revision=revision), record(status=status, revision=1))
            assert action is Action.UNRESOLVED


# --- guard ----------------------------------------------------------------------------------


def planned(ex: Execution, action: Action = Action.SEND) -> PlannedAction:
    return PlannedAction(
        ex.name, action, ex.revision, "why", ex.body, ex.sha256, ex.campaign_id, ex.audience
    )


def test_guard_leaves_a_good_send_alone() -> None:
    a = planned(execution())
    assert guard(a, ENV, NOW) is a


def test_guard_blocks_a_time_in_the_past_but_not_now() -> None:
    past = guard(planned(execution(time="2030-05-31 23:59 UTC")), ENV, NOW)
    assert past.action is Action.BLOCKED
    assert past.reason == "time 2030-05-31 23:59 UTC is in the past"
    exactly_now = guard(planned(execution(time="2030-06-01 00:00 UTC")), ENV, NOW)
    assert exactly_now.action is Action.SEND
    no_time = guard(planned(execution(time=None)), ENV, NOW)
    assert no_time.action is Action.SEND


def test_guard_blocks_over_max_targets() -> None:
    env = Environment.model_validate({"guards": {"max_targets": 1}})
    blocked = guard(planned(execution()), env, NOW)
    assert blocked.action is Action.BLOCKED
    assert blocked.reason == "2 recipients exceed guards.max_targets (1)"
    at_limit = Environment.model_validate({"guards": {"max_targets": 2}})
    assert guard(planned(execution()), at_limit, NOW).action is Action.SEND


def test_guard_names_the_missing_token_variable_and_lists_every_problem() -> None:
    env = Environment.model_validate({"guards": {"max_targets": 1}})
    ex = execution(time="2020-01-01 00:00 UTC")
    blocked = guard(planned(ex), env, NOW, token_missing="XP_TOKEN_PROD")
    assert blocked.action is Action.BLOCKED
    assert blocked.reason.split("; ") == [
        "time 2020-01-01 00:00 UTC is in the past",
        "2 recipients exceed guards.max_targets (1)",
        "no apptoken: the environment variable XP_TOKEN_PROD is not set",
    ]
    assert blocked.body == ex.body  # the reviewer still sees what was blocked


@pytest.mark.parametrize("action", [a for a in Action if a is not Action.SEND])
def test_guard_only_touches_sends(action: Action) -> None:
    a = planned(execution(time="2020-01-01 00:00 UTC"), action)
    assert guard(a, ENV, NOW, token_missing="X") is a


# --- make_plan ------------------------------------------------------------------------------


def test_make_plan_orders_by_attention_then_name_and_retires_the_rest() -> None:
    unchanged = execution("a-unchanged")
    drifted = execution("b-drifted")
    unresolved = execution("c-unresolved")
    blocked = execution("d-blocked", time="2020-01-01 00:00 UTC")
    new_z, new_a = execution("z-new"), execution("e-new")
    ledger = state(
        record(unchanged),
        record(drifted, sha="0" * 64),
        record(unresolved, status=Status.UNKNOWN),
        record(name="gone"),
        record(name="elsewhere"),
    )
    plan = make_plan(
        "staging",
        ENV,
        [unchanged, drifted, unresolved, blocked, new_z, new_a],
        ledger,
        NOW,
        known_names={"elsewhere"},
    )
    assert [(a.name, a.action) for a in plan.actions] == [
        ("e-new", Action.SEND),
        ("z-new", Action.SEND),
        ("d-blocked", Action.BLOCKED),
        ("c-unresolved", Action.UNRESOLVED),
        ("b-drifted", Action.DRIFTED),
        ("elsewhere", Action.RETIRED),
        ("gone", Action.RETIRED),
        ("a-unchanged", Action.UNCHANGED),
    ]
    assert plan.summary() == {
        "send": 2,
        "unchanged": 1,
        "drifted": 1,
        "blocked": 1,
        "unresolved": 1,
        "retired": 2,
    }
    assert plan.has_sends
    assert (plan.lineage, plan.serial) == ("lineage-1", 10)
    retired = {a.name: a for a in plan.of(Action.RETIRED)}
    assert retired["gone"].reason.startswith("its spec is gone")
    assert retired["elsewhere"].reason.startswith("no longer applies to this environment")
    assert "cannot be unsent" in retired["gone"].reason
    assert retired["gone"].body is None
    assert retired["gone"].body_sha256 == "f" * 64
    assert plan.actions[-1].applied_sha256 == unchanged.sha256


def test_make_plan_token_missing_blocks_every_send_only() -> None:
    done = execution("done")
    plan = make_plan(
        "staging",
        ENV,
        [execution("a"), execution("b"), done],
        state(record(done)),
        NOW,
        token_missing="TOKEN_VAR",
    )
    assert [a.action for a in plan.actions] == [Action.BLOCKED, Action.BLOCKED, Action.UNCHANGED]
    assert not plan.has_sends


def test_empty_plan() -> None:
    plan = make_plan("staging", ENV, [], state(), NOW)
    assert plan.actions == []
    assert set(plan.summary().values()) == {0}
    assert (plan.lineage, plan.serial) == ("lineage-1", 0)


def test_planned_action_as_dict_has_the_json_keys() -> None:
    ex = execution()
    item = planned(ex).as_dict()
    assert {"name", "action", "revision", "body_sha256", "body", "reason"} <= set(item)
    assert item["action"] == "send"
    assert item["body_sha256"] == body_sha256(item["body"])


def test_every_action_has_a_sign_and_a_place() -> None:
    assert sorted(ATTENTION, key=lambda a: a.value) == sorted(Action, key=lambda a: a.value)
    assert [a.sign for a in Action] == ["+", "=", "!", "x", "?", "-"]


# --- no second send of the same message -----------------------------------------------------


def twin(name: str) -> Execution:
    """An execution whose body does not depend on its name."""
    same = {"id": 42, "target_by": "user_id", "target": ["a"], "time": "2031-01-01 12:00 UTC"}
    return Execution(name, 1, "staging", dict(same), f"campaigns/{name}.yaml", 1)


def test_two_specs_with_one_body_are_both_blocked() -> None:
    plan = make_plan("staging", ENV, [twin("promo"), twin("promo-copy")], state(), NOW)
    actions = {a.name: a for a in plan.actions}
    assert {a.action for a in actions.values()} == {Action.BLOCKED}
    assert "'promo-copy' would send this exact body too" in actions["promo"].reason
    assert "'promo' would send this exact body too" in actions["promo-copy"].reason


def test_a_body_already_in_the_ledger_under_another_name_is_blocked() -> None:
    sent = twin("old")
    plan = make_plan("staging", ENV, [twin("new")], state(record(sent)), NOW)
    actions = {a.name: a for a in plan.actions}
    assert actions["new"].action is Action.BLOCKED
    assert "xpdeploy state mv old new" in actions["new"].reason
    assert actions["old"].action is Action.RETIRED
    # A rejected body never went out: sending it under a new name is fine.
    failed = make_plan(
        "staging", ENV, [twin("new")], state(record(sent, status=Status.FAILED)), NOW
    )
    assert {a.name: a.action for a in failed.actions}["new"] is Action.SEND


@pytest.mark.parametrize("status", [Status.PENDING, Status.UNKNOWN])
def test_an_open_send_whose_spec_is_gone_stays_unresolved(status: Status) -> None:
    plan = make_plan("staging", ENV, [], state(record(name="gone", status=status)), NOW)
    [action] = plan.actions
    assert action.action is Action.UNRESOLVED
    assert "xpdeploy state resolve gone" in action.reason


@pytest.mark.parametrize("segment", [{"broadcast": 1}, {"conditions": {"operator": "AND"}}])
def test_segment_sends_are_blocked_under_max_targets(segment: dict[str, Any]) -> None:
    ex = Execution("seg", 1, "staging", {"id": 42, **segment}, "campaigns/seg.yaml", 1)
    guarded = Environment.model_validate({"guards": {"max_targets": 10}})
    [action] = make_plan("staging", guarded, [ex], state(), NOW).actions
    assert action.action is Action.BLOCKED and "cannot be checked" in action.reason
    allowed = Environment.model_validate(
        {"guards": {"max_targets": 10, "allow_segment_sends": True}}
    )
    assert make_plan("staging", allowed, [ex], state(), NOW).actions[0].action is Action.SEND
    assert make_plan("staging", ENV, [ex], state(), NOW).actions[0].action is Action.SEND


def test_a_send_that_looks_like_a_renamed_sent_execution_says_so() -> None:
    renamed = execution("spring-2031")  # its body names itself: the hashes differ
    old = record(name="spring", sha="e" * 64)  # applied, same campaign (42) and audience (2)
    plan = make_plan("staging", ENV, [renamed], state(old), NOW)
    actions = {a.name: a for a in plan.actions}
    assert actions["spring-2031"].action is Action.SEND
    assert "xpdeploy state mv spring spring-2031" in actions["spring-2031"].reason
    unrelated = make_plan("staging", ENV, [execution("other")], state(), NOW)
    assert "NOTE" not in unrelated.actions[0].reason
