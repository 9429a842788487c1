"""``xpdeploy state``: read and repair the ledger (registered on ``main``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from xpdeploy.cli import common, main
from xpdeploy.errors import UserError

if TYPE_CHECKING:
    from xpdeploy.ledger import LedgerState, Record
    from xpdeploy.session import Session

FORMAT_VERSION = 1
_format = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)


@main.group()
def state() -> None:
    """Read and repair the state ledger of an environment."""


def _emit(
    session: Session, current: LedgerState, records: list[Record], fmt: str, detail: bool
) -> None:
    if fmt == "json":
        document = {
            "format_version": FORMAT_VERSION,
            "environment": current.environment,
            "lineage": current.lineage,
            "serial": current.serial,
            "executions": [r.as_dict() for r in records],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    from xpdeploy.runner import ledger_for

    location = ledger_for(session).location
    click.echo(f"environment {current.environment!r}: {location} (serial {current.serial})")
    if not records:
        click.echo("  (no executions recorded)")
    width = max((len(r.name) for r in records), default=0)
    for r in records:
        when = r.sent_at or r.updated_at
        click.echo(f"  {r.name.ljust(width)}  {r.status.value:<8} revision {r.revision}  {when}")
        if detail:
            click.echo(f"    body_sha256  {r.body_sha256}")
            click.echo(f"    campaign_id  {r.campaign_id}   audience {r.audience}")
            if r.message:
                click.echo(f"    message      {r.message}")
            if r.response is not None:
                click.echo(f"    response     {json.dumps(r.response, ensure_ascii=False)}")


def _read(session: Session) -> LedgerState:
    from xpdeploy.runner import ledger_for

    return ledger_for(session).read()


@state.command("list")
@_format
@common
def list_(session: Session, fmt: str) -> None:
    """Every execution in the ledger (works while an apply runs)."""
    current = _read(session)
    _emit(session, current, sorted(current.records.values(), key=lambda r: r.name), fmt, False)


@state.command()
@click.argument("name")
@_format
@common
def show(session: Session, name: str, fmt: str) -> None:
    """One execution's record, with the API's response."""
    current = _read(session)
    if name not in current.records:
        raise UserError(f"{name!r} is not in the ledger of environment {current.environment!r}")
    _emit(session, current, [current.records[name]], fmt, True)


def _say(session: Session, fmt: str, message: str, **facts: Any) -> None:
    """The outcome of a repair, for people or as JSON."""
    if fmt == "json":
        document = {"format_version": FORMAT_VERSION, "environment": session.env_name, **facts}
        click.echo(json.dumps({**document, "message": message}, indent=2))
    else:
        click.echo(message)


def _locked(session: Session, change: Callable[[LedgerState], Any]) -> None:
    from xpdeploy.ledger import LockInfo
    from xpdeploy.runner import ledger_for

    ledger = ledger_for(session)
    with ledger.lock(LockInfo.current(" ".join(["xpdeploy", *sys.argv[1:3]]))):
        events = change(ledger.read())
        ledger.append(events)


@state.command()
@click.argument("name")
@click.option("--sent", is_flag=True, help="It did go out: record it as applied.")
@click.option("--not-sent", is_flag=True, help="It did not: the next apply sends it.")
@_format
@common
def resolve(session: Session, name: str, sent: bool, not_sent: bool, fmt: str) -> None:
    """Settle a pending or unknown execution after checking what really happened."""
    from xpdeploy.ledger import Event, EventKind, Status

    if sent == not_sent:
        raise UserError("say what happened: --sent or --not-sent (one of them)")
    verdict = "sent" if sent else "not-sent"

    def change(current: LedgerState) -> list[Event]:
        record = current.records.get(name)
        if record is None:
            raise UserError(f"{name!r} is not in the ledger of environment {current.environment!r}")
        if record.status not in (Status.PENDING, Status.UNKNOWN):
            raise UserError(
                f"{name!r} is {record.status.value}, not pending or unknown: nothing to resolve"
            )
        kind = EventKind.RESOLVED_SENT if verdict == "sent" else EventKind.RESOLVED_NOT_SENT
        said = "it went out" if verdict == "sent" else "it did not go out"
        return [Event(kind, name, message=f"resolved by hand: {said}")]

    _locked(session, change)
    then = "it will not be sent again" if verdict == "sent" else "the next apply sends it"
    _say(session, fmt, f"{name}: recorded as {verdict}; {then}.", name=name, result=verdict)


@state.command()
@click.argument("name")
@_format
@common
def forget(session: Session, name: str, fmt: str) -> None:
    """Remove an execution from the ledger (a later apply may send it again)."""
    from xpdeploy.ledger import Event, EventKind

    def change(current: LedgerState) -> list[Event]:
        if name not in current.records:
            raise UserError(f"{name!r} is not in the ledger of environment {current.environment!r}")
        return [Event(EventKind.FORGOTTEN, name, message="forgotten by hand")]

    _locked(session, change)
    message = f"{name}: forgotten. If its spec still exists, the next plan will send it again."
    _say(session, fmt, message, name=name, result="forgotten")


@state.command()
@_format
@common
def unlock(session: Session, fmt: str) -> None:
    """Clear a stuck apply lock (file locks end with their process)."""
    from xpdeploy.runner import ledger_for

    _say(session, fmt, ledger_for(session).unlock(), result="unlocked")


@state.command()
@_format
@common
def compact(session: Session, fmt: str) -> None:
    """Rewrite the journal as one event per execution (atomically)."""
    from xpdeploy.ledger import LockInfo
    from xpdeploy.runner import ledger_for

    ledger = ledger_for(session)
    with ledger.lock(LockInfo.current("xpdeploy state compact")):
        ledger.compact()
    _say(session, fmt, f"compacted {ledger.location}", result="compacted")


@state.command()
@click.argument("old")
@click.argument("new")
@_format
@common
def mv(session: Session, old: str, new: str, fmt: str) -> None:
    """Move a record to a new name, after renaming its spec (nothing is sent again)."""
    import re
    from dataclasses import replace

    from xpdeploy.ledger import Event, EventKind
    from xpdeploy.model import NAME_PATTERN

    if not re.fullmatch(NAME_PATTERN, new):
        raise UserError(f"{new!r} cannot be a spec's name (it must match {NAME_PATTERN})")

    def change(current: LedgerState) -> list[Event]:
        record = current.records.get(old)
        if record is None:
            raise UserError(f"{old!r} is not in the ledger of environment {current.environment!r}")
        if new == old:
            raise UserError(f"{old!r} is already recorded under that name: nothing to move")
        if new in current.records:
            raise UserError(
                f"{new!r} is already in the ledger, with its own record; if that record is"
                f" wrong, `state forget {new}` first (the next apply may then send {new})"
            )
        moved = replace(Event.from_record(record), name=new, message=f"moved from {old}")
        return [moved, Event(EventKind.FORGOTTEN, old, message=f"moved to {new}")]

    _locked(session, change)
    _say(session, fmt, f"{old} is now recorded as {new}.", name=new, result="moved")


@state.command()
@click.option(
    "--to",
    "target",
    required=True,
    metavar="STATE",
    help="Where to copy the ledger: a path, postgresql://USER@HOST/DB or git:BRANCH:PATH.",
)
@_format
@common
def migrate(session: Session, target: str, fmt: str) -> None:
    """Copy the ledger to another backend, keeping lineage, serial and every event.

    Refuses a target that already has events. Afterwards, point `state:` (or the
    variable `state_env` names) at the target. Example:

        xpdeploy state migrate -e production --to postgresql://ci@db.internal/xpdeploy
    """
    from xpdeploy.ledger import LockInfo, open_ledger
    from xpdeploy.runner import ledger_for, shown_location

    env = session.env_name
    source = ledger_for(session)
    project = session.project
    destination = open_ledger(target, env, project.root, project.environment(env).state_remote)
    info = LockInfo.current("xpdeploy state migrate")
    with source.lock(info):  # no apply writes to the source while it is copied
        history = source.history()
        if not history.events:
            raise UserError(f"the ledger of environment {env!r} has no events: nothing to copy")
        with destination.lock(info):
            destination.adopt(history)
    copied = destination.read()
    where = shown_location(destination)
    message = (
        f"copied {len(history.events)} event(s) of environment {env!r} (lineage"
        f" {copied.lineage}, serial {copied.serial}) from {shown_location(source)} to {where};"
        f" now point `state:` of {env!r} at it"
    )
    _say(session, fmt, message, result="migrated", to=where, serial=copied.serial)


@state.command()
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@common
def export(session: Session, out: Path | None) -> None:
    """Write the ledger's journal as the file ledger's JSON lines (any backend).

    Example: xpdeploy state export -e production -o production-backup.jsonl
    """
    from xpdeploy.ledger.journal import encode, new_header
    from xpdeploy.report.render import atomic_write
    from xpdeploy.runner import ledger_for

    history = ledger_for(session).history()
    if not history.events:
        raise UserError(f"the ledger of environment {session.env_name!r} has no events")
    header = new_header(history.environment, history.lineage, history.serial_offset)
    data = encode(header, history.events).decode("utf-8")
    if out is None:
        click.echo(data, nl=False)
    else:
        atomic_write(out, data)
        click.echo(f"wrote {len(history.events)} event(s) to {out}", err=True)
