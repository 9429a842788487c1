"""The ledger's data model, its event fold, and the interface every backend follows."""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from xpdeploy.errors import UserError


def utc_now() -> str:
    """The current time as ISO-8601 UTC with a ``Z``, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Status(str, Enum):
    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"
    UNKNOWN = "unknown"


class EventKind(str, Enum):
    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"
    UNKNOWN = "unknown"
    RESOLVED_SENT = "resolved_sent"
    RESOLVED_NOT_SENT = "resolved_not_sent"
    FORGOTTEN = "forgotten"


@dataclass(frozen=True, slots=True)
class Record:
    """What the ledger knows about one execution (spec name) in one environment."""

    name: str
    revision: int
    status: Status
    body_sha256: str
    campaign_id: str | int | None
    audience: int | None
    sent_at: str | None
    response: Any
    message: str | None
    updated_at: str
    endpoint: str | None = None  # where the send went: an API origin, or "emulator"

    def as_dict(self) -> dict[str, Any]:
        """The SPEC §4 state JSON shape, plus ``message``, ``updated_at`` and ``endpoint``."""
        return {
            "name": self.name,
            "revision": self.revision,
            "status": self.status.value,
            "body_sha256": self.body_sha256,
            "campaign_id": self.campaign_id,
            "audience": self.audience,
            "sent_at": self.sent_at,
            "response": self.response,
            "message": self.message,
            "updated_at": self.updated_at,
            "endpoint": self.endpoint,
        }


@dataclass(frozen=True)
class LedgerState:
    """The folded ledger; ``lineage`` is None and ``serial`` 0 before the first write."""

    environment: str
    lineage: str | None
    serial: int
    records: dict[str, Record]


@dataclass(frozen=True, slots=True)
class Event:
    """One journal entry; ``at`` is when it was written, ``sent_at`` a known send time."""

    kind: EventKind
    name: str
    revision: int | None = None
    body_sha256: str | None = None
    campaign_id: str | int | None = None
    audience: int | None = None
    response: Any = None
    message: str | None = None
    sent_at: str | None = None
    at: str = field(default_factory=utc_now)
    endpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The journal form: unset fields left out so lines stay short in a diff."""
        out: dict[str, Any] = {"kind": self.kind.value, "name": self.name, "at": self.at}
        keys = (
            "revision",
            "body_sha256",
            "campaign_id",
            "audience",
            "message",
            "sent_at",
            "endpoint",
        )
        for key in keys:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.response is not None:
            out["response"] = self.response
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Event:
        """Inverse of `to_dict`, checking every field: a journal line that says something
        else than xpdeploy writes is an error, never an event read half-way. Unknown keys
        are ignored so newer journals stay readable."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind = EventKind(data["kind"])
        starts = kind is EventKind.PENDING  # a pending event starts a record: it says all
        return cls(
            kind=kind,
            name=_checked(data, "name", _is_name, "a non-empty string", required=True),
            revision=_checked(data, "revision", _is_revision, "an integer >= 1", required=starts),
            body_sha256=_checked(data, "body_sha256", _is_sha256, "a hex sha256", required=starts),
            campaign_id=_checked(data, "campaign_id", _is_campaign, "a string or an integer"),
            audience=_checked(data, "audience", _is_count, "an integer >= 0"),
            response=data.get("response"),
            message=_checked(data, "message", _is_text, "a string"),
            sent_at=_checked(data, "sent_at", _is_text, "a string"),
            at=_checked(data, "at", _is_text, "a string", required=True),
            endpoint=_checked(data, "endpoint", _is_text, "a string"),
        )

    @classmethod
    def from_record(cls, record: Record) -> Event:
        """The one event whose fold recreates ``record`` exactly (used by compaction)."""
        return cls(
            kind=EventKind(record.status.value),
            name=record.name,
            revision=record.revision,
            body_sha256=record.body_sha256,
            campaign_id=record.campaign_id,
            audience=record.audience,
            response=record.response,
            message=record.message,
            sent_at=record.sent_at,
            at=record.updated_at,
            endpoint=record.endpoint,
        )


def _checked(
    data: dict[str, Any], key: str, valid: Callable[[Any], bool], what: str, required: bool = False
) -> Any:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"the event has no {key!r}")
        return None
    if not valid(value):
        raise ValueError(f"{key!r} must be {what}, not {json.dumps(value)[:60]}")
    return value


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_revision(value: Any) -> bool:
    return type(value) is int and value >= 1


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _is_campaign(value: Any) -> bool:
    return isinstance(value, str) or type(value) is int


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


_SHA256 = re.compile(r"[0-9a-f]{64}")

_OUTCOME = {
    EventKind.APPLIED: Status.APPLIED,
    EventKind.FAILED: Status.FAILED,
    EventKind.UNKNOWN: Status.UNKNOWN,
}


def fold_event(records: dict[str, Record], event: Event) -> None:
    """Apply one event to ``records`` in place."""
    kind, old = event.kind, records.get(event.name)
    if kind is EventKind.FORGOTTEN:
        records.pop(event.name, None)
        return
    if kind is EventKind.PENDING or old is None:
        # A pending event starts a fresh attempt, so nothing of the last one carries over.
        # Other kinds start a record only in a compacted journal, which writes them whole.
        if event.revision is None or event.body_sha256 is None:
            raise ValueError(
                f"a {kind.value} event for {event.name!r}, which no earlier line starts:"
                " a line before it is missing or changed"
            )
        status = Status.PENDING if kind is EventKind.PENDING else _status_of(kind)
        records[event.name] = Record(
            name=event.name,
            revision=event.revision,
            status=status,
            body_sha256=event.body_sha256,
            campaign_id=event.campaign_id,
            audience=event.audience,
            sent_at=(event.sent_at or event.at) if status is Status.APPLIED else None,
            response=event.response,
            message=event.message,
            updated_at=event.at,
            endpoint=event.endpoint,
        )
        return
    status = _status_of(kind)
    resolved = kind in (EventKind.RESOLVED_SENT, EventKind.RESOLVED_NOT_SENT)
    if status is Status.APPLIED:
        sent_at: str | None = event.sent_at or event.at
    else:
        sent_at = None
    records[event.name] = Record(
        name=event.name,
        revision=old.revision if event.revision is None else event.revision,
        status=status,
        body_sha256=old.body_sha256 if event.body_sha256 is None else event.body_sha256,
        campaign_id=old.campaign_id if event.campaign_id is None else event.campaign_id,
        audience=old.audience if event.audience is None else event.audience,
        sent_at=sent_at,
        # An outcome brings its own response; a resolution only adds a human's verdict.
        response=old.response if resolved and event.response is None else event.response,
        message=event.message,
        updated_at=event.at,
        endpoint=old.endpoint if event.endpoint is None else event.endpoint,
    )


def _status_of(kind: EventKind) -> Status:
    if kind is EventKind.RESOLVED_SENT:
        return Status.APPLIED
    if kind is EventKind.RESOLVED_NOT_SENT:
        return Status.FAILED
    return _OUTCOME.get(kind, Status.PENDING)


def fold(events: Iterable[Event], records: dict[str, Record] | None = None) -> dict[str, Record]:
    """Fold ``events`` (in journal order) into records, starting from ``records``."""
    out = {} if records is None else records
    for event in events:
        fold_event(out, event)
    return out


@dataclass(frozen=True)
class LockInfo:
    """Who holds a ledger lock, so that a second apply can name it."""

    host: str
    pid: int
    started_at: str
    ci_run: str | None
    command: str

    @classmethod
    def current(cls, command: str) -> LockInfo:
        """This process, now, with its CI run URL when GitHub Actions says so."""
        server = os.environ.get("GITHUB_SERVER_URL")
        repo = os.environ.get("GITHUB_REPOSITORY")
        run_id = os.environ.get("GITHUB_RUN_ID")
        ci_run = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else None
        return cls(socket.gethostname(), os.getpid(), utc_now(), ci_run, command)

    def describe(self) -> str:
        """``pid 123 on host-a since 2026-… running 'xpdeploy apply' (CI run https://…)``."""
        text = f"pid {self.pid} on {self.host} since {self.started_at}"
        if self.command:
            text += f" running '{self.command}'"
        if self.ci_run:
            text += f" (CI run {self.ci_run})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "ci_run": self.ci_run,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LockInfo:
        return cls(
            host=str(data["host"]),
            pid=int(data["pid"]),
            started_at=str(data["started_at"]),
            ci_run=data.get("ci_run"),
            command=str(data.get("command", "")),
        )


class LockHeld(UserError):
    """Another process holds the ledger's lock."""

    def __init__(
        self,
        lock_path: str,
        holder: LockInfo | None,
        hint: str = "wait for it to finish: only one apply per environment runs at a time",
        what: str = "lock file",
    ) -> None:
        who = holder.describe() if holder else "another process (it left no description)"
        super().__init__(f"the ledger is locked by {who}, {what} {lock_path}; {hint}")
        self.lock_path = lock_path
        self.holder = holder


class LeaseLost(UserError):
    """This apply no longer holds its environment's ledger exclusively: send nothing more."""


@dataclass(frozen=True)
class History:
    """A ledger's whole journal, as `state export` writes it and `state migrate` copies it."""

    environment: str
    lineage: str | None
    serial_offset: int
    events: list[Event]


# What of an API reply the ledger keeps: replies are evidence, not payload, and one that
# cannot be written as strict JSON and read back must still leave its outcome recorded.
RESPONSE_LIMIT = 64 * 1024
_RESPONSE_DEPTH = 64


def storable(value: Any) -> Any:
    """``value`` as the ledger can write and read back: itself when it is plain, finite
    JSON of a modest size and depth; otherwise a note with an excerpt of it."""
    if value is None:
        return None
    problem = _unstorable(value, 0)
    if problem is None:
        try:
            size = len(json.dumps(value, allow_nan=False))
        except (ValueError, TypeError, RecursionError):
            problem = "it is not plain JSON"
        else:
            problem = None if size <= RESPONSE_LIMIT else f"it is {size:,} bytes of JSON"
    if problem is None:
        return value
    try:
        excerpt = repr(value)[:2000]
    except RecursionError:
        excerpt = "(too deep to show)"
    text = excerpt.encode("utf-8", "replace").decode("utf-8")
    return {"xpdeploy_note": f"reply kept as an excerpt: {problem}", "excerpt": text}


def _unstorable(value: Any, depth: int) -> str | None:
    if depth > _RESPONSE_DEPTH:
        return "it is nested too deeply"
    if isinstance(value, float) and not math.isfinite(value):
        return "it holds NaN or Infinity"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "it holds text that is not valid Unicode"
        return None
    if isinstance(value, dict):
        items: Iterable[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = _unstorable(item, depth + 1)
        if problem:
            return problem
    return None


class Ledger(Protocol):
    """A state backend: the file journal, a PostgreSQL database, a git branch."""

    environment: str

    @property
    def location(self) -> str:
        """Where the ledger lives, for messages (a path, a URL)."""
        ...

    def read(self) -> LedgerState:
        """The current state; needs no lock and works during an apply."""
        ...

    def lock(self, info: LockInfo) -> AbstractContextManager[Ledger]:
        """Take the exclusive lock at once or raise `LockHeld`; held for the ``with`` block."""
        ...

    def append(self, events: Sequence[Event]) -> None:
        """Durably record ``events`` (one write for the batch) before returning; needs the
        lock. Raises `LeaseLost` when the write is fenced off (another holder, a lost store)."""
        ...

    def check(self) -> None:
        """Raise `LeaseLost` unless this holder still has the ledger to itself; called
        before each batch of sends, so a lost lease stops sending before the next request."""
        ...

    def history(self) -> History:
        """Every event in journal order, with the lineage and serial they started from."""
        ...

    def adopt(self, history: History) -> None:
        """Make this empty ledger hold ``history`` exactly (lineage, serial, events); needs
        the lock and refuses a ledger that already has events."""
        ...

    def compact(self) -> None:
        """Rewrite the history as one event per current record; needs the lock."""
        ...

    def unlock(self) -> str:
        """Clear a lock left behind, where the backend allows it; says what it did."""
        ...

    def behind(self) -> str | None:
        """Why this copy may lack records the shared ledger has (apply refuses then);
        None when it is not known to."""
        ...
