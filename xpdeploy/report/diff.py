"""Diffs against a git ref as text, a pull-request comment, and JSON."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import IO

import click

from xpdeploy.diff import Change, DiffResult
from xpdeploy.report import Registry, use_color
from xpdeploy.report.markdown import Budget, details, fenced

FORMAT_VERSION = 1
MARKER = "<!-- xpdeploy diff -->"
_SIGN = {"added": "+", "removed": "-", "modified": "~"}
_REDACTED_ONLY = "only values under review.redact changed (not shown)"


class DiffReporter(ABC):
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    @abstractmethod
    def emit(self, result: DiffResult) -> None:
        """Write the diff."""


REPORTERS: Registry[DiffReporter] = Registry()


def _summary(result: DiffResult) -> str:
    counts = {kind: sum(1 for c in result.changes if c.change == kind) for kind in _SIGN}
    return (
        f"Diff against {result.base}: {counts['added']} added, {counts['modified']} modified,"
        f" {counts['removed']} removed."
    )


@REPORTERS.register("text")
class TextDiff(DiffReporter):
    def emit(self, result: DiffResult) -> None:
        color = use_color(self.out)
        for note in result.notes:
            self.out.write(f"note: {note}\n")
        for change in result.changes:
            self.out.write(
                f"{_SIGN[change.change]} {change.environment}/{change.name} {change.change}\n"
            )
            if change.redacted_only:
                self.out.write(f"    {_REDACTED_ONLY}\n")
            for line in change.diff.splitlines():
                if color and line[:1] in "+-" and not line.startswith(("+++", "---")):
                    line = click.style(line, fg="green" if line[0] == "+" else "red")
                self.out.write(f"    {line}\n")
        self.out.write(_summary(result) + "\n")


@REPORTERS.register("markdown")
class MarkdownDiff(DiffReporter):
    def emit(self, result: DiffResult) -> None:
        budget = Budget()
        budget.add(f"{MARKER}\n### xpdeploy diff against `{result.base}`\n\n", required=True)
        budget.add(f"**{_summary(result)}**\n\n", required=True)
        for note in result.notes:
            budget.add(f"> {note}\n\n", required=True)
        if not result.changes:
            budget.add("No request body changes.\n", required=True)
            self.out.write(budget.text())
            return
        budget.add("| | environment | execution | change |\n|---|---|---|---|\n", required=True)
        for c in result.changes:
            budget.add(f"| {_SIGN[c.change]} | {c.environment} | `{c.name}` | {c.change} |\n")
        rows = budget.dropped
        budget.dropped = 0
        budget.add("\n", required=True)
        for c in result.changes:
            body = _REDACTED_ONLY if c.redacted_only else fenced(c.diff.rstrip("\n"), "diff")
            budget.add(
                details(
                    f"{_SIGN[c.change]} {c.environment}/<code>{c.name}</code>: {c.change}", body
                )
            )
        trailer = ""
        if rows or budget.dropped:
            trailer = (
                f"\n> {rows} row(s) and {budget.dropped} diff(s) left out to fit GitHub's comment"
                " limit; run `xpdeploy diff --base` for all of it.\n"
            )
        self.out.write(budget.text(trailer))


@REPORTERS.register("json")
class JsonDiff(DiffReporter):
    def emit(self, result: DiffResult) -> None:
        document = {
            "format_version": FORMAT_VERSION,
            "base": result.base,
            "changes": [c.as_dict() for c in result.changes],
            "notes": result.notes,
        }
        self.out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


__all__ = ["REPORTERS", "Change", "DiffReporter"]
