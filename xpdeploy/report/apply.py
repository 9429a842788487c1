"""Apply's progress lines (one per finished send) and its closing summary."""

from __future__ import annotations

import json
from typing import IO

import click

from xpdeploy.apply import ApplyResult
from xpdeploy.outcome import Outcome
from xpdeploy.plan import Action, PlannedAction
from xpdeploy.report import use_color

_WORDS = {
    "applied": ("sent", "green"),
    "failed": ("failed", "red"),
    "unknown": ("UNKNOWN", "magenta"),
}


class ApplyReporter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.color = use_color(out)

    def outcome(self, action: PlannedAction, outcome: Outcome) -> None:
        word, colour = _WORDS[outcome.status]
        head = f"  {action.name}: {word}"
        if self.color:
            head = click.style(head, fg=colour)
        self.out.write(f"{head} ({outcome.message})\n")
        self.out.flush()

    def summary(self, result: ApplyResult) -> None:
        attempted = len(result.outcomes)
        self.out.write(
            f"\nApply: {result.count('applied')} sent, {result.count('failed')} failed,"
            f" {result.count('unknown')} unknown, {len(result.plan.of(Action.BLOCKED))} blocked,"
            f" {len(result.plan.of(Action.UNRESOLVED))} unresolved"
            + (f" ({attempted} attempted).\n" if attempted else ".\n")
        )

    def stopped(self, result: ApplyResult, environment: str, err: IO[str]) -> None:
        """Why sending stopped early, and any outcome the ledger could not take.

        Unrecorded outcomes go to stderr as one JSON document with the exact commands
        that record them, so nothing a person must know is left only in a log line.
        """
        if result.lost is None:
            return
        err.write(f"Error: {result.lost}; nothing more was sent.\n")
        if not result.unrecorded:
            return
        document = {
            "unrecorded_outcomes": [
                {
                    "name": action.name,
                    "status": outcome.status,
                    "http_status": outcome.http_status,
                    "message": outcome.message,
                    "record_with": _resolve_command(action.name, outcome.status, environment),
                }
                for action, outcome in result.unrecorded
            ]
        }
        err.write(
            "These outcomes could not be written to the ledger; record them by hand when"
            " it is reachable again:\n"
        )
        err.write(json.dumps(document, indent=2, ensure_ascii=True) + "\n")
        err.flush()


def _resolve_command(name: str, status: str, environment: str) -> str:
    verdict = "--sent" if status == "applied" else "--not-sent" if status == "failed" else None
    if verdict is None:  # unknown: a person must find out what happened first
        return f"xpdeploy state resolve {name} --sent|--not-sent -e {environment}"
    return f"xpdeploy state resolve {name} {verdict} -e {environment}"
