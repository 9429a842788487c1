"""The journal's text form: JSON lines, a header line then one event per line.

The file backend keeps it on disk, the git backend on a branch, and `state export`
writes any backend's history in it; one parser and one encoder serve them all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xpdeploy.canonical import strict_loads
from xpdeploy.errors import UserError
from xpdeploy.ledger.base import Event, LedgerState, Record, fold_event, utc_now

FORMAT_VERSION = 1
_CONFLICT_MARKS = (b"<<<<<<<", b"=======", b">>>>>>>")


def encode_line(obj: dict[str, Any]) -> bytes:
    """One journal line: compact, key-sorted JSON, so a git diff reads well.

    Text stays readable UTF-8; only a line that UTF-8 cannot hold (a lone surrogate
    in an API reply) is written with ``\\u`` escapes, which read back the same.
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        return text.encode("ascii") + b"\n"


def new_header(
    environment: str, lineage: str | None = None, serial_offset: int = 0
) -> dict[str, Any]:
    """The first line of a new journal."""
    header: dict[str, Any] = {
        "created_at": utc_now(),
        "environment": environment,
        "format_version": FORMAT_VERSION,
        "lineage": lineage or str(uuid.uuid4()),
    }
    if serial_offset:
        header["serial_offset"] = serial_offset
    return header


def encode(header: dict[str, Any], events: Iterable[Event]) -> bytes:
    """A whole journal."""
    return encode_line(header) + b"".join(encode_line(e.to_dict()) for e in events)


@dataclass(frozen=True)
class Journal:
    """A parsed journal: its header, its events in order, and their fold."""

    header: dict[str, Any] | None
    events: list[Event]
    state: LedgerState
    valid_size: int  # bytes up to the end of the last good line
    size: int
    unterminated: bool  # the last event is whole but has no newline (an editor dropped it)

    @property
    def serial_offset(self) -> int:
        return int(self.header.get("serial_offset", 0)) if self.header else 0


def empty(environment: str) -> Journal:
    return Journal(None, [], LedgerState(environment, None, 0, {}), 0, 0, False)


def parse(data: bytes, environment: str, where: str) -> Journal:
    """Parse and fold a journal's bytes; ``where`` names it in messages.

    Only the text after the last newline can be a torn write (a crash mid-append): a
    line with its newline was written whole, so one that does not parse was changed
    afterwards, and dropping it would lose an event. Text that was once a journal and
    is now empty, blank or only a header is an error, never a new ledger: reading it
    as "nothing sent" would send everything again.
    """
    if not data.strip():
        raise UserError(
            "the ledger file is empty (or blank): it is not a new ledger, it lost its"
            " contents; restore it from git (or a backup) before anything is sent",
            path=where,
        )
    lines = data.split(b"\n")
    if len(lines) == 1:
        raise _corrupt(where, 1, lines[0], "the header line is incomplete")
    header = _parse_header(lines[0], environment, where)
    records: dict[str, Record] = {}
    events: list[Event] = []
    valid_size = len(lines[0]) + 1
    for index in range(1, len(lines) - 1):
        raw = lines[index]
        if raw.strip():
            try:
                event = Event.from_dict(strict_loads(raw))
                fold_event(records, event)
            except (ValueError, KeyError, RecursionError) as exc:
                raise _corrupt(where, index + 1, raw, _reason(exc)) from exc
            events.append(event)
        valid_size += len(raw) + 1
    tail, unterminated = lines[-1], False
    if tail.strip():
        try:
            event = Event.from_dict(strict_loads(tail))
            fold_event(records, event)
        except (ValueError, KeyError, RecursionError):
            pass  # a torn write: the event never finished, so its step never happened
        else:
            events.append(event)
            valid_size, unterminated = len(data), True
    if not events:
        raise UserError(
            "the ledger has its header line but no events: xpdeploy never writes one like"
            " that, so its events were removed; restore it from git (or a backup) before"
            " anything is sent",
            path=where,
        )
    serial = int(header.get("serial_offset", 0)) + len(events)
    state = LedgerState(environment, header["lineage"], serial, records)
    return Journal(header, events, state, valid_size, len(data), unterminated)


def _parse_header(raw: bytes, environment: str, where: str) -> dict[str, Any]:
    try:
        header = strict_loads(raw)
    except (ValueError, RecursionError):
        header = None
    offset = header.get("serial_offset", 0) if isinstance(header, dict) else None
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("lineage"), str)
        or type(offset) is not int
        or offset < 0
    ):
        raise _corrupt(where, 1, raw, "the first line is not an xpdeploy ledger header")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"ledger format_version {version!r} is not {FORMAT_VERSION}; "
            "it was written by another xpdeploy version: use that version, or upgrade",
            path=where,
            line=1,
        )
    if header.get("environment") != environment:
        raise UserError(
            f"this ledger belongs to environment {header.get('environment')!r}, "
            f"not {environment!r}: give each environment its own `state:` "
            "in xpdeploy.yaml",
            path=where,
            line=1,
        )
    return header


def _corrupt(where: str, line: int, raw: bytes, reason: str) -> UserError:
    if raw.startswith(_CONFLICT_MARKS):
        what = (
            "an unresolved git merge conflict: keep the event lines of both sides in "
            "the order of their `at` times, drop the markers, and run again"
        )
    else:
        what = (
            f"{reason}; the journal is append-only, so this line was changed by hand "
            f"or by a merge: restore it from git (git log -p -- {where}) or fix it"
        )
    return UserError(f"corrupt ledger line: {what}", path=where, line=line)


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"the event has no {exc} field"
    if isinstance(exc, RecursionError):
        return "not a ledger event (nested too deeply)"
    return f"not a ledger event ({exc})"
