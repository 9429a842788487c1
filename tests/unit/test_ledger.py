"""The state ledger: the event fold, the JSON-lines journal, compaction, the backend.

The lock and its holder's description are in test_ledger_lock.py; the shared helpers
(``pending``, ``INFO``, the ``state_path`` and ``ledger`` fixtures) in deploy_helpers.py.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

import pytest
from deploy_helpers import ENV, INFO, SHA1, SHA2, K, pending

from xpdeploy.errors import UserError
from xpdeploy.ledger import Event, EventKind, FileLedger, Record, Status, fold, open_ledger


def fold_one(*events: Event) -> Record:
    records = fold(events)
    assert list(records) == ["welcome"]
    return records["welcome"]


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write(ledger: FileLedger, *events: Event) -> None:
    with ledger.lock(INFO):
        ledger.append(events)


# --- fold -----------------------------------------------------------------------------


def test_fold_pending_records_the_attempt() -> None:
    record = fold_one(pending())
    assert record.status is Status.PENDING
    assert (record.revision, record.body_sha256, record.campaign_id, record.audience) == (
        1,
        SHA1,
        7,
        2,
    )
    assert record.sent_at is None
    assert record.updated_at == "T1"


def test_fold_applied_sets_sent_at_and_response() -> None:
    record = fold_one(pending(), Event(K.APPLIED, "welcome", response={"success": True}, at="T2"))
    assert record.status is Status.APPLIED
    assert record.sent_at == "T2"
    assert record.response == {"success": True}
    assert (record.revision, record.body_sha256) == (1, SHA1)


@pytest.mark.parametrize(
    ("kind", "status"), [(K.FAILED, Status.FAILED), (K.UNKNOWN, Status.UNKNOWN)]
)
def test_fold_failed_and_unknown(kind: EventKind, status: Status) -> None:
    record = fold_one(pending(), Event(kind, "welcome", message="HTTP 502", at="T2"))
    assert record.status is status
    assert record.sent_at is None
    assert record.message == "HTTP 502"
    assert record.revision == 1


def test_fold_resolved_sent_keeps_revision_and_hash() -> None:
    unknown = Event(K.UNKNOWN, "welcome", response={"raw": "x"}, at="T2")
    record = fold_one(pending(), unknown, Event(K.RESOLVED_SENT, "welcome", at="T3"))
    assert record.status is Status.APPLIED
    assert (record.revision, record.body_sha256) == (1, SHA1)
    assert record.sent_at == "T3"
    assert record.response == {"raw": "x"}  # a resolution keeps what the API said


def test_fold_resolved_sent_uses_a_known_send_time() -> None:
    resolved = Event(K.RESOLVED_SENT, "welcome", sent_at="T1.5", at="T3")
    assert fold_one(pending(), resolved).sent_at == "T1.5"


def test_fold_resolved_not_sent_makes_it_sendable_again() -> None:
    record = fold_one(
        pending(), Event(K.UNKNOWN, "welcome", at="T2"), Event(K.RESOLVED_NOT_SENT, "welcome")
    )
    assert record.status is Status.FAILED
    assert record.sent_at is None
    assert record.revision == 1


def test_fold_forgotten_removes_the_record() -> None:
    records = fold([pending(), pending("other"), Event(K.FORGOTTEN, "welcome")])
    assert list(records) == ["other"]


def test_fold_new_revision_clears_the_previous_outcome() -> None:
    applied = Event(K.APPLIED, "welcome", response={"ok": 1}, at="T2")
    record = fold_one(pending(), applied, pending(revision=2, sha=SHA2, at="T3"))
    assert record.status is Status.PENDING
    assert (record.revision, record.body_sha256) == (2, SHA2)
    assert record.sent_at is None
    assert record.response is None


def test_record_as_dict_has_the_state_json_keys() -> None:
    record = fold_one(pending(), Event(K.APPLIED, "welcome", at="T2"))
    data = record.as_dict()
    assert list(data)[:-1] == [
        *("name", "revision", "status", "body_sha256", "campaign_id", "audience"),
        *("sent_at", "response", "message", "updated_at"),
    ]
    assert data["status"] == "applied"
    json.dumps(data)


# --- the journal ----------------------------------------------------------------------


def test_missing_ledger_reads_as_empty(ledger: FileLedger) -> None:
    state = ledger.read()
    assert (state.environment, state.lineage, state.serial, state.records) == (ENV, None, 0, {})


def test_first_append_creates_the_file_with_a_header(ledger: FileLedger, state_path: Path) -> None:
    with ledger.lock(INFO):
        assert not state_path.exists()  # locking alone writes no journal
        ledger.append([pending()])
        assert state_path.exists()
    header, event = lines(state_path)
    assert header["environment"] == ENV
    assert header["format_version"] == 1
    assert uuid.UUID(str(header["lineage"])).version == 4
    assert "created_at" in header
    assert event["kind"] == "pending"
    assert sorted(p.name for p in state_path.parent.iterdir()) == [state_path.name]
    assert oct(state_path.stat().st_mode & 0o777) == oct(0o644)
    state = ledger.read()
    assert (state.lineage, state.serial) == (header["lineage"], 1)


def test_failed_first_write_leaves_no_half_file(
    ledger: FileLedger, state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("xpdeploy.ledger.file.os.replace", crash)
    with ledger.lock(INFO), pytest.raises(UserError, match="No space left"):
        ledger.append([pending()])
    assert list(state_path.parent.iterdir()) == []


def test_lines_are_compact_sorted_json_and_serial_counts_events(
    ledger: FileLedger, state_path: Path
) -> None:
    write(ledger, pending(), Event(K.APPLIED, "welcome", response={"z": 1, "a": 2}))
    write(ledger, pending("other"))
    raw = state_path.read_text(encoding="utf-8").splitlines()
    for line in raw:
        assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))
    assert ledger.read().serial == 3 == len(raw) - 1
    assert sum(1 for line in lines(state_path) if "lineage" in line) == 1  # one header


def test_read_gives_the_fold_of_what_was_appended(ledger: FileLedger) -> None:
    events = [
        pending(),
        Event(K.APPLIED, "welcome", response={"success": True}, at="T2"),
        pending("b", at="T3"),
        Event(K.UNKNOWN, "b", message="timeout", at="T4"),
        Event(K.RESOLVED_NOT_SENT, "b", at="T5"),
        pending("c", at="T6"),
        Event(K.FORGOTTEN, "c", at="T7"),
    ]
    write(ledger, *events)
    assert ledger.read().records == fold(events)


@pytest.mark.parametrize("torn", [b'{"at":"T9","kind":"appl', b'{"at":"T9","ki\x00\x00'])
def test_torn_last_line_is_ignored_then_cut_by_the_next_append(
    ledger: FileLedger, state_path: Path, torn: bytes
) -> None:
    """A crash mid-write leaves a last line without its newline; it was never acknowledged."""
    write(ledger, pending())
    with state_path.open("ab") as f:
        f.write(torn)
    state = ledger.read()
    assert state.serial == 1
    assert state.records["welcome"].status is Status.PENDING
    write(ledger, Event(K.APPLIED, "welcome"))
    assert [line["kind"] for line in lines(state_path)[1:]] == ["pending", "applied"]
    assert ledger.read().records["welcome"].status is Status.APPLIED


@pytest.mark.parametrize(
    "damaged",
    [b'{"at":"T9","kind":"appl\n', b'{"at":"T9","ki\x00\x00\n', b'{"at":"T9"}\n'],
    ids=["cut-short", "zeroed", "not-an-event"],
)
def test_damaged_complete_last_line_is_an_error_not_dropped(
    ledger: FileLedger, state_path: Path, damaged: bytes
) -> None:
    """With its newline the line was written whole; dropping it would lose an event."""
    write(ledger, pending())
    with state_path.open("ab") as f:
        f.write(damaged)
    before = state_path.read_bytes()
    with pytest.raises(UserError, match="corrupt ledger line") as err:
        ledger.read()
    assert (err.value.path, err.value.line) == (str(state_path), 3)
    assert f"{state_path}:3:" in str(err.value)
    with pytest.raises(UserError, match="corrupt ledger line"):
        write(ledger, Event(K.APPLIED, "welcome"))
    assert state_path.read_bytes() == before  # nothing was cut off


def test_corrupt_middle_line_names_its_line(ledger: FileLedger, state_path: Path) -> None:
    write(ledger, pending(), pending("b"), pending("c"))
    text = state_path.read_text().splitlines()
    text[2] = text[2][:-5]
    state_path.write_text("\n".join(text) + "\n")
    with pytest.raises(UserError, match="corrupt ledger line") as err:
        ledger.read()
    assert (err.value.path, err.value.line) == (str(state_path), 3)
    assert f"{state_path}:3:" in str(err.value)
    with pytest.raises(UserError):  # nor can it be locked and appended to
        write(ledger, pending("d"))


def test_merge_conflict_markers_get_a_hint(ledger: FileLedger, state_path: Path) -> None:
    write(ledger, pending())
    with state_path.open("a") as f:
        f.write("<<<<<<< HEAD\n" + json.dumps(pending("b").to_dict()) + "\n")
    with pytest.raises(UserError, match="merge conflict") as err:
        ledger.read()
    assert err.value.line == 3


def test_ledger_of_another_environment_is_refused(state_path: Path) -> None:
    write(FileLedger(state_path, "production"), pending())
    with pytest.raises(UserError, match="'production', not 'staging'") as err:
        FileLedger(state_path, "staging").read()
    assert err.value.line == 1


@pytest.mark.parametrize(
    ("first", "match"),
    [
        ('{"kind":"pending","name":"x","at":"T"}', "not an xpdeploy ledger header"),
        ("not json at all", "not an xpdeploy ledger header"),
        ('{"environment":"staging","format_version":2,"lineage":"l"}', "format_version 2"),
    ],
)
def test_bad_header_is_refused(
    ledger: FileLedger, state_path: Path, first: str, match: str
) -> None:
    state_path.parent.mkdir()
    state_path.write_text(first + "\n")
    with pytest.raises(UserError, match=match) as err:
        ledger.read()
    assert err.value.line == 1


def test_append_without_the_lock_is_a_bug(ledger: FileLedger, state_path: Path) -> None:
    with pytest.raises(RuntimeError, match="must be locked"):
        ledger.append([pending()])
    assert not state_path.exists()


def test_failed_write_is_cut_back_and_stops_further_writes(
    ledger: FileLedger, state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(ledger, pending())
    before = state_path.read_bytes()

    def half_then_fail(fd: int, data: bytes) -> None:
        os.write(fd, data[:10])
        raise OSError(5, "Input/output error")

    with ledger.lock(INFO):
        monkeypatch.setattr("xpdeploy.ledger.file._write_all", half_then_fail)
        with pytest.raises(UserError, match="Input/output error"):
            ledger.append([Event(K.APPLIED, "welcome")])
        monkeypatch.undo()
        with pytest.raises(UserError, match="could not write"):
            ledger.append([Event(K.APPLIED, "welcome")])
    assert state_path.read_bytes() == before


def test_parallel_appends_from_many_threads(ledger: FileLedger, state_path: Path) -> None:
    threads, per_thread = 16, 40
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()  # all race for the first append, which creates the file
        for i in range(per_thread):
            name = f"c-{t}-{i}"
            ledger.append([pending(name)])
            ledger.append([Event(K.APPLIED, name), Event(K.FORGOTTEN, "nothing")])

    with ledger.lock(INFO):
        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    parsed = lines(state_path)  # every line is whole JSON
    assert sum(1 for line in parsed if "lineage" in line) == 1
    state = ledger.read()
    assert state.serial == threads * per_thread * 3 == len(parsed) - 1
    assert len(state.records) == threads * per_thread
    assert {r.status for r in state.records.values()} == {Status.APPLIED}


# --- compaction -----------------------------------------------------------------------


def test_compaction_keeps_lineage_state_and_serial(ledger: FileLedger, state_path: Path) -> None:
    write(
        ledger,
        pending(at="T1"),
        Event(K.APPLIED, "welcome", response={"id": 1}, at="T2"),
        pending("b", at="T3"),
        Event(K.UNKNOWN, "b", message="timeout", at="T4"),
        Event(K.RESOLVED_SENT, "b", at="T5"),
        pending("c", at="T6"),
        Event(K.FAILED, "c", message="400", at="T7"),
        pending("gone", at="T8"),
        Event(K.FORGOTTEN, "gone", at="T9"),
        pending("d", at="T10"),
    )
    before = ledger.read()
    with ledger.lock(INFO):
        ledger.compact()
        after = ledger.read()
        assert len(lines(state_path)) == 1 + len(before.records) == 5
        ledger.append([Event(K.APPLIED, "d", at="T11")])  # appends go to the new file
    assert (after.lineage, after.serial, after.records) == (
        before.lineage,
        before.serial,
        before.records,
    )
    final = ledger.read()
    assert final.serial == before.serial + 1
    assert final.records["d"].status is Status.APPLIED
    assert final.records["b"].sent_at == "T5"


# --- the backend ----------------------------------------------------------------------


def test_open_ledger_gives_the_file_backend(state_path: Path) -> None:
    ledger = open_ledger("state/staging.jsonl", ENV, state_path.parent.parent)
    assert isinstance(ledger, FileLedger)
    assert ledger.location == str(state_path)


@pytest.mark.parametrize(
    ("state", "backend"),
    [
        ("postgresql://ci@db.internal/xp", "PostgresLedger"),
        ("postgres://ci@db.internal/xp", "PostgresLedger"),
        ("git:xpdeploy-state:staging.jsonl", "GitBranchLedger"),
    ],
)
def test_open_ledger_picks_the_backend_from_the_state_value(
    state: str, backend: str, tmp_path: Path
) -> None:
    assert type(open_ledger(state, ENV, tmp_path)).__name__ == backend


@pytest.mark.parametrize(
    "state", ["git::x.jsonl", "git:b:", "git:b:/abs.jsonl", "git:b:../x", "git:a..b:x"]
)
def test_a_bad_git_state_is_refused(state: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="git:BRANCH:PATH"):
        open_ledger(state, ENV, tmp_path)


def test_a_postgres_location_never_shows_the_password() -> None:
    from xpdeploy.ledger.postgres import safe_location

    shown = safe_location("postgresql://ci:pw-xyz@db.internal:6543/xp?sslmode=require&password=q")
    assert shown == "postgresql://ci@db.internal:6543/xp"
