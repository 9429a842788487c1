"""Saved plans (``plan -o``): what was reviewed is exactly what apply sends, once."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from xpdeploy import __version__
from xpdeploy.canonical import body_sha256
from xpdeploy.errors import UserError
from xpdeploy.plan import Action, Plan, PlannedAction
from xpdeploy.report.render import atomic_write

KIND = "xpdeploy-plan"
FORMAT_VERSION = 1
DEFAULT_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    created_at: datetime
    expires_at: datetime
    commit: str | None
    tool_version: str


def git_commit(folder: Path) -> str | None:
    """HEAD of the repository holding ``folder``, with ``-dirty`` for uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


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


def read_planfile(path: Path) -> SavedPlan:
    """Load a plan file; anything malformed or tampered with is refused."""
    shown = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read plan file: {exc}", path=shown) from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise UserError("not an xpdeploy plan file (made by `xpdeploy plan -o`)", path=shown)
    if document.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"plan file format {document.get('format_version')!r} is not supported by"
            f" xpdeploy {__version__}; plan again",
            path=shown,
        )
    try:
        actions = [_action(item) for item in document["actions"]]
        plan = Plan(document["environment"], document["lineage"], int(document["serial"]), actions)
        saved = SavedPlan(
            plan,
            datetime.fromisoformat(document["created_at"]),
            datetime.fromisoformat(document["expires_at"]),
            document.get("commit"),
            str(document.get("tool_version")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"plan file is malformed ({exc}); plan again", path=shown) from None
    return saved


def _action(item: dict[str, Any]) -> PlannedAction:
    action = Action(item["action"])
    body = item.get("body")
    digest = item.get("body_sha256")
    if action is Action.SEND and (not isinstance(body, dict) or body_sha256(body) != digest):
        raise ValueError(f"the body of {item['name']!r} does not match its hash")
    return PlannedAction(
        name=item["name"],
        action=action,
        revision=int(item["revision"]),
        reason=item.get("reason", ""),
        body=body,
        body_sha256=digest,
        campaign_id=item.get("campaign_id"),
        audience=item.get("audience"),
        schedule=item.get("schedule"),
    )
