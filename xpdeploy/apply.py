"""The exactly-once send loop (SPEC §7).

For each send: ``pending`` is on disk (fsync'd) before the request leaves, and the
outcome is recorded as soon as it is known. Sends run ``parallelism`` at a time;
each batch of pendings and each batch of outcomes costs one fsync, and no more
than ``parallelism`` executions are ever pending at once, so a kill at any point
leaves at most those few for ``state resolve``. Nothing is retried here: the
client retries only what provably never reached the API.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from xpdeploy.errors import UserError
from xpdeploy.ledger import Event, EventKind, Ledger, LedgerState, utc_now
from xpdeploy.ledger.base import storable
from xpdeploy.outcome import Outcome
from xpdeploy.plan import Action, Plan, PlannedAction

Sender = Callable[[dict[str, Any]], Outcome]

_KIND = {"applied": EventKind.APPLIED, "failed": EventKind.FAILED, "unknown": EventKind.UNKNOWN}


@dataclass
class ApplyResult:
    """What an apply did: outcomes per send, and what it left alone and why."""

    plan: Plan
    outcomes: list[tuple[PlannedAction, Outcome]] = field(default_factory=list)
    not_started: list[PlannedAction] = field(default_factory=list)
    # Why sending stopped early (the lease or the ledger was lost), and the outcomes that
    # could not be written to the ledger: the caller must show these to a person.
    lost: str | None = None
    unrecorded: list[tuple[PlannedAction, Outcome]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for _, outcome in self.outcomes if outcome.status == status)

    @property
    def ok(self) -> bool:
        """Everything planned was sent, and nothing needs a person."""
        troubled = self.plan.of(Action.BLOCKED, Action.UNRESOLVED)
        return (
            not troubled
            and not self.not_started
            and self.lost is None
            and self.count("applied") == len(self.outcomes)
        )


def _pending(action: PlannedAction, endpoint: str | None) -> Event:
    return Event(
        EventKind.PENDING,
        action.name,
        revision=action.revision,
        body_sha256=action.body_sha256,
        campaign_id=action.campaign_id,
        audience=action.audience,
        endpoint=endpoint,
    )


def _outcome_event(action: PlannedAction, outcome: Outcome) -> Event:
    now = utc_now()
    return Event(
        _KIND[outcome.status],
        action.name,
        response=storable(outcome.response),
        message=outcome.message,
        sent_at=now if outcome.status == "applied" else None,
        at=now,
    )


def send_all(
    ledger: Ledger,
    plan: Plan,
    sender: Sender,
    *,
    parallelism: int = 4,
    on_outcome: Callable[[PlannedAction, Outcome], None] = lambda a, o: None,
    stop: threading.Event | None = None,
    endpoint: str | None = None,
) -> ApplyResult:
    """Send every ``send`` action of ``plan``; the caller holds the ledger's lock."""
    stop = stop or threading.Event()
    result = ApplyResult(plan)
    queue = deque(plan.of(Action.SEND))
    in_flight: dict[Future[Outcome], PlannedAction] = {}
    tell = _Printer(on_outcome)
    with ThreadPoolExecutor(max_workers=max(1, parallelism), thread_name_prefix="send") as pool:
        try:
            while queue or in_flight:
                free = parallelism - len(in_flight)
                if queue and free > 0 and not stop.is_set() and result.lost is None:
                    batch = [queue.popleft() for _ in range(min(free, len(queue)))]
                    try:
                        ledger.check()
                        ledger.append([_pending(a, endpoint) for a in batch])  # durable first
                    except UserError as exc:  # lost lease or store: this batch never left
                        queue.extendleft(reversed(batch))
                        result.lost = str(exc)
                    else:
                        for action in batch:
                            assert action.body is not None
                            in_flight[pool.submit(sender, action.body)] = action
                if not in_flight:
                    break  # stopped before anything else was started
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                finished = [(in_flight.pop(future), _result(future)) for future in done]
                _record(ledger, finished, result)
                for action, outcome in finished:
                    result.outcomes.append((action, outcome))
                    tell(action, outcome)
        finally:
            result.not_started.extend(queue)
    return result


def _record(
    ledger: Ledger, finished: list[tuple[PlannedAction, Outcome]], result: ApplyResult
) -> None:
    """Write outcomes; those the ledger refuses are kept for the person running apply."""
    if result.unrecorded:  # the store already failed: do not reorder what it may hold
        result.unrecorded.extend(finished)
        return
    try:
        ledger.append([_outcome_event(a, o) for a, o in finished])
    except UserError as exc:
        if result.lost is None:
            result.lost = str(exc)
        result.unrecorded.extend(finished)


class _Printer:
    """The progress callback, which must never stop outcomes being recorded: a closed
    or failing terminal silences it instead."""

    def __init__(self, callback: Callable[[PlannedAction, Outcome], None]) -> None:
        self._callback: Callable[[PlannedAction, Outcome], None] | None = callback

    def __call__(self, action: PlannedAction, outcome: Outcome) -> None:
        if self._callback is None:
            return
        try:
            self._callback(action, outcome)
        except Exception:  # stdout closed, a broken pipe: stop printing, keep recording
            self._callback = None


def _result(future: Future[Outcome]) -> Outcome:
    """A crash inside the sender is an unknown outcome: the request may have gone out."""
    try:
        return future.result()
    except Exception as exc:
        return Outcome(
            "unknown", None, None, f"internal error while sending: {type(exc).__name__}", 1
        )


def check_endpoint(state: LedgerState, endpoint: str) -> str | None:
    """Why this ledger must not record sends to ``endpoint``, or None.

    A ledger is the memory of one API: sends recorded there that went to the emulator
    or another host would count as done for the real one, and never be sent.
    """
    elsewhere = sorted({r.endpoint for r in state.records.values() if r.endpoint} - {endpoint})
    if not elsewhere:
        return None
    return (
        f"the ledger records sends to {', '.join(elsewhere)}, but this run sends to {endpoint}"
        " (is XPDEPLOY_API_URL set?): use the api_url this ledger belongs to, or give the"
        " other API its own environment and state file"
    )


def check_fresh(state: LedgerState, plan: Plan) -> str | None:
    """Why a saved plan no longer fits the ledger, or None when it does."""
    if state.lineage != plan.lineage:
        return (
            f"the ledger's lineage is {state.lineage or 'empty'} but the plan was made against"
            f" {plan.lineage or 'an empty ledger'}"
        )
    if state.serial != plan.serial:
        return (
            f"the ledger moved from serial {plan.serial} to {state.serial} since the plan was"
            " made (another apply ran, or this plan was applied already)"
        )
    return None
