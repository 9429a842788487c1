"""Saved plans (``plan -o``): what was reviewed is exactly what apply sends, once."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from xpdeploy import __version__
from xpdeploy.canonical import body_sha256, strict_loads
from xpdeploy.errors import UserError
from xpdeploy.execution import Execution
from xpdeploy.plan import Action, Plan, PlannedAction
from xpdeploy.report.render import atomic_write

KIND = "xpdeploy-plan"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    created_at: datetime
    expires_at: datetime
    commit: str | None
    tool_version: str


def write_planfile(
    path: Path, plan: Plan, now: datetime, ttl: timedelta, commit: str | None
) -> None:
    """The plan with full bodies (never an apptoken), written atomically."""
    document = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "tool_version": __version__,
        "environment": plan.environment,
        "lineage": plan.lineage,
        "serial": plan.serial,
        "created_at": now.isoformat(),
        "expires_at": (now + ttl).isoformat(),
        "commit": commit,
        "actions": [action.as_dict() for action in plan.actions],
    }
    atomic_write(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1)]
    action: Action
    revision: Annotated[int, Field(strict=True, ge=1)]
    reason: str = ""
    body: dict[str, Any] | None = None
    body_sha256: str | None = None
    campaign_id: str | int | None = None
    audience: int | None = None
    schedule: str | None = None


class _PlanFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format_version: int
    kind: str
    tool_version: str
    environment: str
    lineage: str | None
    serial: int
    created_at: AwareDatetime
    expires_at: AwareDatetime
    commit: str | None = None
    actions: list[_Action]


def _from_body(action: PlannedAction) -> PlannedAction:
    if action.body is None:
        return action
    facts = Execution(action.name, action.revision, "", action.body, "", 0)
    return replace(
        action, campaign_id=facts.campaign_id, audience=facts.audience, schedule=facts.schedule
    )


def read_planfile(path: Path) -> SavedPlan:
    """Load a plan file; anything malformed or tampered with is refused."""
    shown = str(path)
    try:
        document = strict_loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read plan file: {exc}", path=shown) from None
    except RecursionError:
        raise UserError("cannot read plan file: nested too deeply", path=shown) from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise UserError("not an xpdeploy plan file (made by `xpdeploy plan -o`)", path=shown)
    if document.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"plan file format {document.get('format_version')!r} is not supported by"
            f" xpdeploy {__version__}; plan again",
            path=shown,
        )
    try:
        saved = _PlanFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(step) for step in first["loc"])
        raise UserError(
            f"plan file is malformed at {where}: {first['msg']}; plan again", path=shown
        ) from None
    for item in saved.actions:
        if item.action is Action.SEND and (
            item.body is None or body_sha256(item.body) != item.body_sha256
        ):
            raise UserError(
                f"the body of {item.name!r} does not match its hash: the plan file was changed"
                " after it was made; nothing was sent; plan again",
                path=shown,
            )
        if item.body is not None and "apptoken" in item.body:
            raise UserError(f"the body of {item.name!r} holds an apptoken: refused", path=shown)
    # What the guards check is taken from the bodies that will be sent, not from the file.
    actions = [_from_body(PlannedAction(**item.model_dump())) for item in saved.actions]
    plan = Plan(saved.environment, saved.lineage, saved.serial, actions)
    return SavedPlan(plan, saved.created_at, saved.expires_at, saved.commit, saved.tool_version)
