"""The state ledger: event fold, the JSON-lines journal, its lock, compaction."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import xpdeploy
from xpdeploy.errors import UserError
from xpdeploy.ledger import (
    Event,
    EventKind,
    FileLedger,
    LockHeld,
    LockInfo,
    Record,
    Status,
    fold,
    open_ledger,
)

K = EventKind
SHA1, SHA2 = "a" * 64, "b" * 64
ENV = "staging"
INFO = LockInfo("host-test", 4242, "2026-01-01T00:00:00Z", None, "xpdeploy apply")
REPO = Path(xpdeploy.__file__).resolve().parents[1]


def pending(name: str = "welcome", revision: int = 1, sha: str = SHA1, at: str = "T1") -> Event:
    return Event(
        K.PENDING, name, revision=revision, body_sha256=sha, campaign_id=7, audience=2, at=at
    )


def fold_one(*events: Event) -> Record:
    records = fold(events)
    assert list(records) == ["welcome"]
    return records["welcome"]


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / f"{ENV}.jsonl"


@pytest.fixture
def ledger(state_path: Path) -> FileLedger:
    return FileLedger(state_path, ENV)


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


# --- lock -----------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from xpdeploy.ledger import Event, EventKind, LockInfo, open_ledger
ledger = open_ledger(Path(sys.argv[1]), "staging")
with ledger.lock(LockInfo.current("xpdeploy apply")):
    ledger.append([Event(EventKind.PENDING, "in-flight", revision=1, body_sha256="c" * 64)])
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(state_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate process that holds the lock (in a fake CI run) until stdin closes."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/campaigns",
        "GITHUB_RUN_ID": "987",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_lock_held_by_another_process_fails_at_once(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeld) as err, ledger.lock(INFO):
        pytest.fail("took a lock another process holds")
    assert err.value.holder is not None
    assert (err.value.holder.pid, err.value.holder.host) == (holder.pid, socket.gethostname())
    message = str(err.value)
    assert f"pid {holder.pid} on {socket.gethostname()}" in message
    assert "CI run https://github.com/acme/campaigns/actions/runs/987" in message
    assert str(ledger.lock_path) in message
    assert isinstance(err.value, UserError)


def test_read_works_while_another_process_holds_the_lock(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    state = ledger.read()
    assert state.serial == 1
    assert state.records["in-flight"].status is Status.PENDING


def test_killed_holder_leaves_no_stuck_lock(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    stale = json.loads(ledger.lock_path.read_text())
    assert stale["pid"] == holder.pid  # its description is still there, and must not matter
    with ledger.lock(INFO):
        ledger.append([Event(K.UNKNOWN, "in-flight")])
    assert ledger.read().records["in-flight"].status is Status.UNKNOWN


def test_unlock_refuses_while_a_process_holds_the_lock(
    ledger: FileLedger, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeld, match=f"pid {holder.pid}.*ends with its process"):
        ledger.unlock()
    assert ledger.lock_path.exists()


def test_unlock_removes_a_stale_lock_file(ledger: FileLedger) -> None:
    ledger.lock_path.parent.mkdir(parents=True)
    ledger.lock_path.write_text(json.dumps(INFO.as_dict()))
    assert "no lock was held (file locks end with their process)" in ledger.unlock()
    assert not ledger.lock_path.exists()
    assert ledger.unlock() == "no lock was held (file locks end with their process)"


def test_lock_conflicts_within_one_process_and_frees_on_exit(state_path: Path) -> None:
    first, second = FileLedger(state_path, ENV), FileLedger(state_path, ENV)
    with first.lock(INFO):
        assert json.loads(first.lock_path.read_text())["pid"] == INFO.pid
        with pytest.raises(LockHeld, match="pid 4242 on host-test"), second.lock(INFO):
            pytest.fail("took a held lock")
    assert not first.lock_path.exists()
    with second.lock(INFO):
        second.append([pending()])
    assert second.read().serial == 1


def test_open_ledger_gives_the_file_backend(state_path: Path) -> None:
    ledger = open_ledger(state_path, ENV)
    assert isinstance(ledger, FileLedger)
    assert ledger.location == str(state_path)


# --- lock holder description ----------------------------------------------------------


def test_lock_info_names_the_ci_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/campaigns")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    info = LockInfo.current("xpdeploy apply")
    assert info.ci_run == "https://github.example.com/acme/campaigns/actions/runs/42"
    assert (info.pid, info.host) == (os.getpid(), socket.gethostname())
    assert info.describe().endswith(f"(CI run {info.ci_run})")
    assert LockInfo.from_dict(info.as_dict()) == info


def test_lock_info_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    info = LockInfo.current("xpdeploy apply")
    assert info.ci_run is None
    assert info.describe().startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
    assert "CI run" not in info.describe()
