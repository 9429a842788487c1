"""Rendered executions × the ledger → one action per execution (SPEC §6)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any

from xpdeploy.execution import Execution
from xpdeploy.ledger import LedgerState, Record, Status
from xpdeploy.model import Environment
from xpdeploy.when import parse_api_time


class Action(str, Enum):
    SEND = "send"
    UNCHANGED = "unchanged"
    DRIFTED = "drifted"
    BLOCKED = "blocked"
    UNRESOLVED = "unresolved"
    RETIRED = "retired"

    @property
    def sign(self) -> str:
        return _SIGNS[self]


_SIGNS = {
    Action.SEND: "+",
    Action.UNCHANGED: "=",
    Action.DRIFTED: "!",
    Action.BLOCKED: "x",
    Action.UNRESOLVED: "?",
    Action.RETIRED: "-",
}

# Order of attention: what will happen first, what needs a person next.
ATTENTION = [
    Action.SEND,
    Action.BLOCKED,
    Action.UNRESOLVED,
    Action.DRIFTED,
    Action.RETIRED,
    Action.UNCHANGED,
]


@dataclass(frozen=True)
class PlannedAction:
    """What apply will do with one execution, and why."""

    name: str
    action: Action
    revision: int
    reason: str
    body: dict[str, Any] | None = None
    body_sha256: str | None = None
    campaign_id: Any = None
    audience: int | None = None
    schedule: str | None = None
    path: str | None = None
    line: int | None = None
    applied_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action.value,
            "revision": self.revision,
            "body_sha256": self.body_sha256,
            "body": self.body,
            "reason": self.reason,
            "campaign_id": self.campaign_id,
            "audience": self.audience,
            "schedule": self.schedule,
            "applied_body_sha256": self.applied_sha256,
        }


@dataclass(frozen=True)
class Plan:
    """The actions for one environment against one ledger state."""

    environment: str
    lineage: str | None
    serial: int
    actions: list[PlannedAction] = field(default_factory=list)
    ledger: str | None = None  # where the ledger is, for people reading the plan
    behind: str | None = None  # why the ledger read may lack records (apply refuses then)

    def summary(self) -> dict[str, int]:
        counts = Counter(a.action for a in self.actions)
        return {action.value: counts[action] for action in Action}

    def of(self, *actions: Action) -> list[PlannedAction]:
        return [a for a in self.actions if a.action in actions]

    @property
    def has_sends(self) -> bool:
        return any(a.action is Action.SEND for a in self.actions)


def _from_execution(
    ex: Execution, action: Action, reason: str, record: Record | None
) -> PlannedAction:
    return PlannedAction(
        name=ex.name,
        action=action,
        revision=ex.revision,
        reason=reason,
        body=ex.body,
        body_sha256=ex.sha256,
        campaign_id=ex.campaign_id,
        audience=ex.audience,
        schedule=ex.schedule,
        path=ex.path,
        line=ex.line,
        applied_sha256=record.body_sha256 if record else None,
    )


def decide(ex: Execution, record: Record | None) -> tuple[Action, str]:
    """The action for one execution given its ledger record."""
    if record is None:
        return Action.SEND, "new: not in the ledger"
    if record.status in (Status.PENDING, Status.UNKNOWN):
        return Action.UNRESOLVED, (
            f"revision {record.revision} is {record.status.value} after an interrupted or"
            " ambiguous send: check whether it went out, then run"
            f" `xpdeploy state resolve {ex.name} --sent` or `--not-sent`"
        )
    if record.status is Status.FAILED:
        if ex.revision < record.revision:
            return (
                Action.DRIFTED,
                f"revision {ex.revision} is lower than the ledger's {record.revision}",
            )
        why = f" ({record.message})" if record.message else ""
        return (
            Action.SEND,
            f"revision {record.revision} did not go out{why}; sending it again",
        )

    if ex.revision > record.revision:
        return Action.SEND, f"revision bumped from {record.revision} to {ex.revision}"
    if ex.sha256 == record.body_sha256:
        return Action.UNCHANGED, f"applied at revision {record.revision}"
    if ex.revision < record.revision:
        return Action.DRIFTED, (
            f"revision {ex.revision} is lower than the applied revision {record.revision}"
        )
    return Action.DRIFTED, (
        f"the body changed since revision {record.revision} was applied: nothing is sent;"
        f" bump revision to {record.revision + 1} to send it again"
    )


def guard(
    action: PlannedAction, env: Environment, now: datetime, *, token_missing: str | None = None
) -> PlannedAction:
    """A send that a check stops becomes blocked, with the reason."""
    if action.action is not Action.SEND:
        return action
    problems = []
    if action.body is not None:
        scheduled = parse_api_time(action.body.get("time"))
        if scheduled is not None and scheduled < now:
            problems.append(f"time {action.body['time']} is in the past")
    guards = env.guards
    if guards.max_targets is not None and not guards.allow_segment_sends:
        if action.audience is None:
            # broadcast: 1 or conditions: the largest audiences are the ones nobody can count.
            problems.append(
                "no explicit recipients (a segment or broadcast send) cannot be checked against"
                f" guards.max_targets ({guards.max_targets}): set guards.allow_segment_sends"
            )
        elif action.audience > guards.max_targets:
            problems.append(
                f"{action.audience} recipients exceed guards.max_targets ({guards.max_targets})"
            )
    if token_missing:
        problems.append(f"no apptoken: the environment variable {token_missing} is not set")
    if not problems:
        return action
    return replace(action, action=Action.BLOCKED, reason="; ".join(problems))


def _twins(actions: list[PlannedAction], state: LedgerState) -> list[PlannedAction]:
    """Block sends whose exact body may already have gone out, or goes out twice now.

    The API has no idempotency key: a spec renamed or copied with an unchanged body
    would be a new name, and the same message would reach the same people again.
    """
    in_ledger = {
        record.body_sha256: name
        for name, record in state.records.items()
        if record.status is not Status.FAILED
    }
    sends: dict[str, list[str]] = {}
    for action in actions:
        if action.action is Action.SEND and action.body_sha256:
            sends.setdefault(action.body_sha256, []).append(action.name)
    checked = []
    for action in actions:
        twin = in_ledger.get(action.body_sha256 or "")
        others = [n for n in sends.get(action.body_sha256 or "", []) if n != action.name]
        if action.action is Action.SEND and twin is not None and twin != action.name:
            action = replace(
                action,
                action=Action.BLOCKED,
                reason=(
                    f"this exact body is already in the ledger as {twin!r}"
                    f" ({state.records[twin].status.value}): if the spec was renamed, run"
                    f" `xpdeploy state mv {twin} {action.name}`; to send it again on purpose,"
                    " change the body (e.g. params.external_message_id)"
                ),
            )
        elif action.action is Action.SEND and others:
            action = replace(
                action,
                action=Action.BLOCKED,
                reason=(
                    f"{', '.join(repr(n) for n in others)} would send this exact body too:"
                    " the same message would reach the same people twice; remove the copy"
                ),
            )
        checked.append(action)
    return checked


def _rename_hints(
    actions: list[PlannedAction], state: LedgerState, present: set[str]
) -> list[PlannedAction]:
    """Say so when a new send looks like a sent execution whose spec is gone (a rename).

    Only a hint: a body that names itself ({{ name }}) differs after a rename, so the
    exact-body check cannot tell; the same campaign and audience are a strong sign.
    """
    gone = [
        (name, r)
        for name, r in state.records.items()
        if name not in present and r.status is Status.APPLIED
    ]
    hinted = []
    for action in actions:
        if action.action is Action.SEND and action.name not in state.records:
            alike = [
                name
                for name, r in gone
                if r.campaign_id == action.campaign_id and r.audience == action.audience
            ]
            if alike:
                action = replace(
                    action,
                    reason=f"{action.reason}; NOTE: {alike[0]!r} was sent to the same campaign and"
                    f" audience and its spec is gone: if this is it renamed, run `xpdeploy state"
                    f" mv {alike[0]} {action.name}` instead of sending it again",
                )
        hinted.append(action)
    return hinted


def _left_behind(name: str, record: Record, known_names: set[str]) -> PlannedAction:
    """A ledger entry with no execution in this environment any more."""
    where = "no longer applies to this environment" if name in known_names else "its spec is gone"
    if record.status in (Status.PENDING, Status.UNKNOWN):
        # A send whose outcome nobody knows still needs a person, spec or no spec.
        action, reason = (
            Action.UNRESOLVED,
            f"{where}, but revision {record.revision} is {record.status.value}: run"
            f" `xpdeploy state resolve {name} --sent` or `--not-sent`",
        )
    else:
        action, reason = (
            Action.RETIRED,
            f"{where}; revision {record.revision} stays {record.status.value} in the ledger"
            " (a sent message cannot be unsent)",
        )
    return PlannedAction(
        name=name,
        action=action,
        revision=record.revision,
        reason=reason,
        body_sha256=record.body_sha256,
        campaign_id=record.campaign_id,
        audience=record.audience,
    )


def make_plan(
    environment: str,
    env: Environment,
    executions: Sequence[Execution],
    state: LedgerState,
    now: datetime,
    *,
    known_names: Iterable[str] = (),
    token_missing: str | None = None,
) -> Plan:
    """One action per execution, plus the ledger entries whose execution is gone."""
    actions = []
    for ex in executions:
        record = state.records.get(ex.name)
        action, reason = decide(ex, record)
        planned = _from_execution(ex, action, reason, record)
        actions.append(guard(planned, env, now, token_missing=token_missing))
    actions = _twins(actions, state)
    present = {ex.name for ex in executions}
    actions = _rename_hints(actions, state, present)
    known = set(known_names)
    actions += [
        _left_behind(name, record, known)
        for name, record in sorted(state.records.items())
        if name not in present
    ]
    actions.sort(key=lambda a: (ATTENTION.index(a.action), a.name))
    return Plan(environment, state.lineage, state.serial, actions)
