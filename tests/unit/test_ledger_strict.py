"""A journal line that says something else than xpdeploy writes is an error naming its
line, never an event read half-way: a fuzzing run found that a one-character typo in a
`pending` line dropped the record, and the next apply sent the execution again.

The fold and the file format are in test_ledger.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_helpers import ENV, INFO, SHA1, K, pending

from xpdeploy.errors import UserError
from xpdeploy.ledger import Event, FileLedger


def _write(ledger: FileLedger, *events: Event) -> None:
    with ledger.lock(INFO):
        ledger.append(events)


def _journal(ledger: FileLedger) -> list[str]:
    """A real journal: welcome pending then applied; the lines as written."""
    _write(ledger, pending())
    _write(ledger, Event(K.APPLIED, "welcome", response={"code": 200}, at="T2"))
    return ledger.path.read_text(encoding="utf-8").splitlines()


def _edit(line: str, change: dict[str, object], drop: tuple[str, ...] = ()) -> str:
    data = json.loads(line)
    data.update(change)
    for key in drop:
        data.pop(key)
    return json.dumps(data)


PENDING_EDITS = {
    "no revision": ({}, ("revision",)),
    "revision misspelt": ({"revisinn": 1}, ("revision",)),
    "revision as text": ({"revision": "1"}, ()),
    "revision 0": ({"revision": 0}, ()),
    "revision false": ({"revision": False}, ()),
    "revision 1.5": ({"revision": 1.5}, ()),
    "no body hash": ({}, ("body_sha256",)),
    "body hash a list": ({"body_sha256": [1]}, ()),
    "body hash not hex": ({"body_sha256": "x" * 64}, ()),
    "body hash short": ({"body_sha256": SHA1[:10]}, ()),
    "empty name": ({"name": ""}, ()),
    "name a number": ({"name": 7}, ()),
    "audience negative": ({"audience": -1}, ()),
    "campaign a list": ({"campaign_id": [7]}, ()),
    "endpoint a number": ({"endpoint": 7}, ()),
    "at a number": ({"at": 7}, ()),
    "no at": ({}, ("at",)),
    "unknown kind": ({"kind": "sent"}, ()),
}


@pytest.mark.parametrize(("change", "drop"), PENDING_EDITS.values(), ids=list(PENDING_EDITS))
def test_a_changed_pending_line_is_an_error(
    ledger: FileLedger, change: dict[str, object], drop: tuple[str, ...]
) -> None:
    lines = _journal(ledger)
    lines[1] = _edit(lines[1], change, drop)
    ledger.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="corrupt ledger line") as raised:
        FileLedger(ledger.path, ENV).read()
    assert raised.value.line in (2, 3)  # the line itself, or the outcome it leaves orphaned


@pytest.mark.parametrize(
    "line",
    [
        '{"kind": "applied", "name": "welcome", "at": "T2", "response": NaN}',
        '{"kind": "applied", "name": "welcome", "at": "T2", "audience": Infinity}',
        "[" * 100_000,
        "[]",
        '"text"',
    ],
    ids=["nan", "infinity", "deep", "a list", "a string"],
)
def test_a_line_that_is_not_a_json_event_is_an_error(ledger: FileLedger, line: str) -> None:
    lines = _journal(ledger)
    lines[2] = line
    ledger.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="corrupt ledger line") as raised:
        FileLedger(ledger.path, ENV).read()
    assert raised.value.line == 3


def test_an_outcome_whose_pending_line_is_gone_is_an_error(ledger: FileLedger) -> None:
    lines = _journal(ledger)
    del lines[1]
    ledger.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="no earlier line starts") as raised:
        FileLedger(ledger.path, ENV).read()
    assert raised.value.line == 2


@pytest.mark.parametrize("offset", ['"3"', "-1", "null", "[1]"])
def test_a_header_with_an_odd_serial_offset_is_an_error(ledger: FileLedger, offset: str) -> None:
    lines = _journal(ledger)
    header = json.loads(lines[0])
    lines[0] = json.dumps(header)[:-1] + f', "serial_offset": {offset}}}'
    ledger.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="not an xpdeploy ledger header"):
        FileLedger(ledger.path, ENV).read()


def test_what_xpdeploy_writes_still_reads(ledger: FileLedger, state_path: Path) -> None:
    _journal(ledger)
    _write(ledger, Event(K.RESOLVED_NOT_SENT, "welcome", message="by hand"))
    _write(ledger, pending("other", revision=2), Event(K.UNKNOWN, "other", message="timeout"))
    _write(ledger, Event(K.FORGOTTEN, "gone"))
    records = FileLedger(state_path, ENV).read().records
    assert {name: r.status.value for name, r in records.items()} == {
        "welcome": "failed",
        "other": "unknown",
    }
