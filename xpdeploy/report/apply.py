"""Apply's progress lines (one per finished send) and its closing summary."""

from __future__ import annotations

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
