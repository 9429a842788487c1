"""xpdeploy.apply.send_all: pending is durable before each request, outcomes follow."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xpdeploy.apply import ApplyResult, check_fresh, send_all
from xpdeploy.canonical import body_sha256
from xpdeploy.client import ExecuteClient, Outcome
from xpdeploy.emulator import Emulator, Fault
from xpdeploy.ledger import FileLedger, LedgerState, LockInfo, Status
from xpdeploy.plan import Action, Plan, PlannedAction

TOKEN = "tok-unit-77"
INFO = LockInfo("host", 1, "2030-01-01T00:00:00Z", None, "test")


def action(name: str, kind: Action = Action.SEND, revision: int = 1) -> PlannedAction:
    body = {"id": 42, "target": [f"user-{name}"], "params": {"external_message_id": name}}
    return PlannedAction(
        name, kind, revision, "why", body, body_sha256(body), campaign_id=42, audience=1
    )


def plan_of(*actions: PlannedAction) -> Plan:
    return Plan("staging", None, 0, list(actions))


def ok(body: dict[str, Any]) -> Outcome:
    return Outcome("applied", 200, {"success": True}, "HTTP 200: OK", 1)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "staging.jsonl"


@pytest.fixture
def ledger(path: Path) -> Iterator[FileLedger]:
    ledger = FileLedger(path, "staging")
    with ledger.lock(INFO):
        yield ledger


def name_of(body: dict[str, Any]) -> str:
    name: str = body["params"]["external_message_id"]
    return name


def test_pending_is_on_disk_before_the_request_leaves(ledger: FileLedger, path: Path) -> None:
    seen: dict[str, Status] = {}

    def sender(body: dict[str, Any]) -> Outcome:
        # A separate reader, as after a crash: the pending event must already be there.
        records = FileLedger(path, "staging").read().records
        seen[name_of(body)] = records[name_of(body)].status
        return ok(body)

    result = send_all(ledger, plan_of(action("a"), action("b")), sender, parallelism=1)
    assert seen == {"a": Status.PENDING, "b": Status.PENDING}
    assert result.ok
    records = ledger.read().records
    assert {n: r.status for n, r in records.items()} == {"a": Status.APPLIED, "b": Status.APPLIED}
    assert records["a"].body_sha256 == action("a").body_sha256
    assert records["a"].response == {"success": True}
    assert records["a"].sent_at


def test_pending_is_fsynced_before_the_request_leaves(
    ledger: FileLedger, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read back through the page cache proves nothing after a power cut: fsync must come first."""
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # The journal itself, or the temp file that atomically becomes it on the first write.
        if Path(os.path.realpath(f"/proc/self/fd/{fd}")).parent == path.parent.resolve():
            events.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    def sender(body: dict[str, Any]) -> Outcome:
        events.append(f"post:{name_of(body)}")
        return ok(body)

    assert send_all(ledger, plan_of(action("a"), action("b")), sender, parallelism=1).ok
    # a's pending is synced before a's request; a's outcome and b's pending before b's.
    first_post, second_post = events.index("post:a"), events.index("post:b")
    assert "fsync" in events[:first_post]
    assert events[first_post:second_post].count("fsync") == 2


def test_outcomes_are_recorded_per_execution(ledger: FileLedger) -> None:

    answers = {
        "a": Outcome("applied", 200, {"success": True}, "ok", 1),
        "b": Outcome("failed", 400, {"success": False}, "HTTP 400: no", 1),
        "c": Outcome("unknown", 500, None, "HTTP 500: outcome unknown", 1),
    }
    calls: list[str] = []

    def sender(body: dict[str, Any]) -> Outcome:
        calls.append(name_of(body))
        return answers[name_of(body)]

    reported: list[tuple[str, str]] = []
    result = send_all(
        ledger,
        plan_of(action("a"), action("b"), action("c")),
        sender,
        parallelism=2,
        on_outcome=lambda a, o: reported.append((a.name, o.status)),
    )
    assert sorted(calls) == ["a", "b", "c"]
    assert sorted(reported) == [("a", "applied"), ("b", "failed"), ("c", "unknown")]
    assert (result.count("applied"), result.count("failed"), result.count("unknown")) == (1, 1, 1)
    assert not result.ok
    records = ledger.read().records
    assert records["b"].status is Status.FAILED
    assert records["b"].message == "HTTP 400: no"
    assert records["b"].sent_at is None
    assert records["c"].status is Status.UNKNOWN


def test_only_sends_are_sent(ledger: FileLedger) -> None:
    calls: list[str] = []

    def sender(body: dict[str, Any]) -> Outcome:
        calls.append(name_of(body))
        return ok(body)

    others = [action(k.value, k) for k in Action if k is not Action.SEND]
    result = send_all(ledger, plan_of(*others, action("send")), sender)
    assert calls == ["send"]
    assert list(ledger.read().records) == ["send"]
    assert not result.ok  # the plan had blocked and unresolved actions


def test_no_more_than_parallelism_pending_at_once(ledger: FileLedger, path: Path) -> None:
    lock = threading.Lock()
    active = 0
    most_active = 0
    most_pending = 0

    def sender(body: dict[str, Any]) -> Outcome:
        nonlocal active, most_active, most_pending
        with lock:
            active += 1
            most_active = max(most_active, active)
            pending = sum(
                r.status is Status.PENDING
                for r in FileLedger(path, "staging").read().records.values()
            )
            most_pending = max(most_pending, pending)
        time.sleep(0.005)  # let the others overlap; no assertion depends on the duration
        with lock:
            active -= 1
        return ok(body)

    actions = [action(f"e{i:02d}") for i in range(20)]
    result = send_all(ledger, plan_of(*actions), sender, parallelism=3)
    assert result.ok
    assert len(result.outcomes) == 20
    assert most_active <= 3
    assert most_pending <= 3
    assert {r.status for r in ledger.read().records.values()} == {Status.APPLIED}


def test_a_crash_inside_the_sender_is_unknown(ledger: FileLedger) -> None:
    def sender(body: dict[str, Any]) -> Outcome:
        if name_of(body) == "boom":
            raise RuntimeError("socket exploded")
        return ok(body)

    result = send_all(ledger, plan_of(action("boom"), action("fine")), sender, parallelism=1)
    records = ledger.read().records
    assert records["boom"].status is Status.UNKNOWN
    assert records["boom"].message == "internal error while sending: RuntimeError"
    assert records["fine"].status is Status.APPLIED
    assert not result.ok


def test_stop_before_start_sends_nothing(ledger: FileLedger) -> None:
    stop = threading.Event()
    stop.set()
    result = send_all(ledger, plan_of(action("a"), action("b")), ok, stop=stop)
    assert result.outcomes == []
    assert [a.name for a in result.not_started] == ["a", "b"]
    assert ledger.read().serial == 0
    assert not result.ok


def test_stop_while_sending_finishes_in_flight_and_starts_no_more(ledger: FileLedger) -> None:
    stop = threading.Event()

    def sender(body: dict[str, Any]) -> Outcome:
        stop.set()  # a signal arrives while this request is in flight
        return ok(body)

    result = send_all(
        ledger, plan_of(action("a"), action("b"), action("c")), sender, parallelism=1, stop=stop
    )
    assert [a.name for a, _ in result.outcomes] == ["a"]
    assert [a.name for a in result.not_started] == ["b", "c"]
    records = ledger.read().records
    assert list(records) == ["a"]
    assert records["a"].status is Status.APPLIED


def test_apply_result_ok() -> None:
    empty = ApplyResult(plan_of(action("u", Action.UNCHANGED)))
    assert empty.ok
    assert not ApplyResult(plan_of(action("b", Action.BLOCKED))).ok
    assert not ApplyResult(plan_of(action("q", Action.UNRESOLVED))).ok
    assert ApplyResult(plan_of(action("d", Action.DRIFTED), action("r", Action.RETIRED))).ok


def test_check_fresh() -> None:
    plan = Plan("staging", "L1", 4, [])
    assert check_fresh(LedgerState("staging", "L1", 4, {}), plan) is None
    moved = check_fresh(LedgerState("staging", "L1", 6, {}), plan)
    assert moved is not None
    assert "serial 4 to 6" in moved
    other = check_fresh(LedgerState("staging", "L2", 4, {}), plan)
    assert other is not None
    assert "lineage is L2" in other
    assert check_fresh(LedgerState("staging", None, 0, {}), Plan("staging", None, 0, [])) is None
    emptied = check_fresh(LedgerState("staging", None, 0, {}), plan)
    assert emptied is not None
    assert "empty" in emptied


# --- with the real client, a fake sleep and a real socket ------------------------------------


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(apptoken=TOKEN, campaigns=["42"]) as emu:
        yield emu


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(emulator: Emulator, sleeps: list[float]) -> Iterator[ExecuteClient]:
    with ExecuteClient(emulator.url, TOKEN, timeout=10, sleep=sleeps.append) as c:
        yield c


def test_retry_after_is_honoured_and_one_request_is_accepted(
    ledger: FileLedger, emulator: Emulator, client: ExecuteClient, sleeps: list[float]
) -> None:
    emulator.inject(Fault(status=503, retry_after=7), Fault(status=429, retry_after=3))
    result = send_all(ledger, plan_of(action("a")), client.execute)
    assert result.ok
    assert sleeps == [7, 3]
    ((_, outcome),) = result.outcomes
    assert outcome.attempts == 3
    assert len(emulator.accepted) == 1
    assert ledger.read().records["a"].status is Status.APPLIED


def test_backoff_without_retry_after_is_bounded_and_grows(
    ledger: FileLedger, emulator: Emulator, client: ExecuteClient, sleeps: list[float]
) -> None:
    emulator.inject(Fault(status=503, times=4))
    result = send_all(ledger, plan_of(action("a")), client.execute)
    assert result.ok
    assert len(sleeps) == 4
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(20.0, 0.5 * 2 ** (attempt - 1))
    assert len(emulator.accepted) == 1


def test_retries_give_up_as_failed_and_safe_to_resend(
    ledger: FileLedger, emulator: Emulator, client: ExecuteClient, sleeps: list[float]
) -> None:
    emulator.inject(Fault(status=503, retry_after=0, times=5))
    result = send_all(ledger, plan_of(action("a")), client.execute)
    ((_, outcome),) = result.outcomes
    assert outcome.status == "failed"
    assert "safe to send again" in outcome.message
    assert len(sleeps) == 4
    assert emulator.accepted == []
    assert ledger.read().records["a"].status is Status.FAILED


def test_retry_after_beyond_the_budget_is_not_waited_for(
    ledger: FileLedger, emulator: Emulator, client: ExecuteClient, sleeps: list[float]
) -> None:
    emulator.inject(Fault(status=429, retry_after=3600))
    result = send_all(ledger, plan_of(action("a")), client.execute)
    ((_, outcome),) = result.outcomes
    assert outcome.status == "failed"
    assert sleeps == []
    assert emulator.accepted == []


@pytest.mark.parametrize(
    "fault",
    [Fault(status=500, accept=True), Fault(drop="after"), Fault(status=504, accept=True)],
    ids=["500", "drop-after", "504"],
)
def test_ambiguous_answers_are_unknown_and_not_retried(
    ledger: FileLedger,
    emulator: Emulator,
    client: ExecuteClient,
    sleeps: list[float],
    fault: Fault,
) -> None:
    emulator.inject(fault)
    result = send_all(ledger, plan_of(action("a"), action("b")), client.execute, parallelism=1)
    assert [o.status for _, o in result.outcomes] == ["unknown", "applied"]
    assert sleeps == []
    assert len(emulator.accepted) == 2  # a was processed once, never twice
    assert ledger.read().records["a"].status is Status.UNKNOWN


def test_connection_refused_is_retried_then_failed(ledger: FileLedger, sleeps: list[float]) -> None:
    emulator = Emulator().start()
    url = emulator.url
    emulator.stop()  # nothing listens there any more: the request never left
    with ExecuteClient(url, TOKEN, max_attempts=3, sleep=sleeps.append) as client:
        result = send_all(ledger, plan_of(action("a")), client.execute)
    ((_, outcome),) = result.outcomes
    assert outcome.status == "failed"
    assert outcome.attempts == 3
    assert len(sleeps) == 2


def test_no_answer_within_the_timeout_is_unknown(ledger: FileLedger, emulator: Emulator) -> None:
    emulator.inject(Fault(delay=30))  # accepted, then silence; stop() ends the wait
    with ExecuteClient(emulator.url, TOKEN, timeout=0.2) as client:
        result = send_all(ledger, plan_of(action("a")), client.execute)
    ((_, outcome),) = result.outcomes
    assert outcome.status == "unknown"
    assert "ReadTimeout" in outcome.message
    assert len(emulator.accepted) == 1
    assert ledger.read().records["a"].status is Status.UNKNOWN


def test_a_failing_progress_printer_never_leaves_sends_pending(
    ledger: FileLedger, path: Path
) -> None:
    def printer(action: PlannedAction, outcome: Outcome) -> None:
        raise BrokenPipeError("stdout is closed")

    plan = plan_of(action("a"), action("b"), action("c"))
    result = send_all(ledger, plan, ok, parallelism=1, on_outcome=printer)
    statuses = {name: r.status for name, r in ledger.read().records.items()}
    assert statuses == {"a": Status.APPLIED, "b": Status.APPLIED, "c": Status.APPLIED}
    assert result.ok
