"""Plans as text (like Terraform's), as a pull-request comment, and as JSON."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import IO, Any

import click

from xpdeploy.canonical import masked, pretty_json
from xpdeploy.plan import Action, Plan, PlannedAction
from xpdeploy.redact import redact
from xpdeploy.report import Registry, json_document, use_color
from xpdeploy.report.markdown import Budget, cell, details, fenced

FORMAT_VERSION = 1
_COLORS = {
    Action.SEND: "green",
    Action.BLOCKED: "red",
    Action.UNRESOLVED: "magenta",
    Action.DRIFTED: "yellow",
    Action.RETIRED: "bright_black",
    Action.UNCHANGED: None,
}


def shown(action: PlannedAction, paths: Sequence[str]) -> dict[str, Any] | None:
    """The body as reviewers see it: apptoken masked, review.redact applied."""
    return None if action.body is None else masked(redact(action.body, paths))


def plan_line(plan: Plan) -> str:
    s = plan.summary()
    return (
        f"Plan: {s['send']} to send, {s['unchanged']} unchanged, {s['drifted']} drifted,"
        f" {s['blocked']} blocked."
    )


def ledger_line(plan: Plan) -> str:
    """Which ledger the plan was made against; a missing one is said out loud.

    A ledger that does not exist makes every execution new: after a renamed environment
    or a changed ``state:`` path, that would mean sending everything again.
    """
    where = f"ledger {plan.ledger}" if plan.ledger else "ledger"
    if plan.lineage is None:
        return f"{where} does not exist yet: every execution is new to it"
    return f"{where}, serial {plan.serial}"


def also_line(plan: Plan) -> str | None:
    s = plan.summary()
    if not (s["unresolved"] or s["retired"]):
        return None
    return (
        f"Also: {s['unresolved']} unresolved (see `xpdeploy state list`), {s['retired']} retired."
    )


def audience_text(action: PlannedAction) -> str:
    if action.audience is None:
        return "segment"
    return f"{action.audience} recipient{'s' if action.audience != 1 else ''}"


class PlanReporter(ABC):
    def __init__(
        self, out: IO[str], redact_paths: Sequence[str] = (), artifact: str | None = None
    ) -> None:
        self.out = out
        self.redact_paths = redact_paths
        self.artifact = artifact

    @abstractmethod
    def emit(self, plan: Plan) -> None:
        """Write the plan."""

    def facts(self, action: PlannedAction) -> tuple[Any, str]:
        """Campaign id and schedule, masked like the body when review.redact says so."""
        when = action.schedule or ("now" if action.body is not None else "-")
        shown = redact({"id": action.campaign_id, "time": when}, self.redact_paths)

        return shown["id"], str(shown["time"])


REPORTERS: Registry[PlanReporter] = Registry()


@REPORTERS.register("text")
class TextPlan(PlanReporter):
    def emit(self, plan: Plan) -> None:
        color = use_color(self.out)
        write = self.out.write
        write(f"xpdeploy plan for environment {plan.environment!r} ({ledger_line(plan)})\n\n")
        if plan.behind:
            warning = f"Warning: {plan.behind}; apply refuses until then."
            write((click.style(warning, fg="red") if color else warning) + "\n\n")
        if not plan.actions:
            write("  No executions in this environment.\n")
        width = max((len(a.name) for a in plan.actions), default=0)
        for a in plan.actions:
            sign = f"{a.action.sign} {a.name.ljust(width)}  {a.action.value}"
            if color and _COLORS[a.action]:
                sign = click.style(sign, fg=_COLORS[a.action])
            facts = f"revision {a.revision}"
            if a.action is not Action.RETIRED:
                campaign, schedule = self.facts(a)
                facts += f", campaign {campaign}, {audience_text(a)}, {schedule}"
            write(f"  {sign}  ({facts})\n      {a.reason}\n")
        for a in plan.of(Action.SEND):
            body = pretty_json(shown(a, self.redact_paths) or {})
            write(f"\n{a.action.sign} {a.name} (revision {a.revision}) will send:\n")
            write("".join(f"    {line}\n" for line in body.splitlines()))
        write("\n" + plan_line(plan) + "\n")
        also = also_line(plan)
        if also:
            write(also + "\n")


@REPORTERS.register("markdown")
class MarkdownPlan(PlanReporter):
    """One pull-request comment: marker, summary table, a <details> per execution."""

    def emit(self, plan: Plan) -> None:
        self.out.write(self.render(plan))

    def render(self, plan: Plan) -> str:
        budget = Budget()
        env = plan.environment
        budget.add(f"<!-- xpdeploy plan: {env} -->\n### xpdeploy plan: `{env}`\n\n", required=True)
        budget.add(f"**{plan_line(plan)}** {also_line(plan) or ''}\n\n", required=True)
        where = ledger_line(plan)
        budget.add(f"{where[:1].upper()}{where[1:]}.\n\n", required=True)
        if plan.behind:
            warning = f"> **Warning:** {cell(plan.behind)}; apply refuses until then.\n\n"
            budget.add(warning, required=True)

        if not plan.actions:
            budget.add("No executions in this environment.\n", required=True)
            return budget.text()
        budget.add("| | execution | action | campaign | audience | schedule |\n", required=True)
        budget.add("|---|---|---|---|---|---|\n", required=True)
        for a in plan.actions:
            budget.add(
                f"| {a.action.sign} | `{a.name}` | {a.action.value} | {cell(self.facts(a)[0])} |"
                f" {audience_text(a)} | {cell(self.facts(a)[1])} |\n"
            )
        rows_dropped = budget.dropped
        budget.dropped = 0
        budget.add("\n", required=True)
        # Actions come in order of attention, so what the limit cuts is the unchanged.
        for a in plan.actions:
            body = shown(a, self.redact_paths)
            text = f"{cell(a.reason)}\n\n" + (fenced(pretty_json(body), "json") if body else "")
            budget.add(details(f"{a.action.sign} <code>{a.name}</code>: {a.action.value}", text))
        return budget.text(self._trailer(rows_dropped, budget.dropped))

    def _trailer(self, rows: int, blocks: int) -> str:
        if not rows and not blocks:
            return ""
        where = f" in the `{self.artifact}` artifact" if self.artifact else " (run `xpdeploy plan`)"
        left = []
        if rows:
            left.append(f"{rows} table row(s)")
        if blocks:
            left.append(f"{blocks} execution detail(s)")
        return (
            f"\n> {' and '.join(left)} left out to fit GitHub's comment limit; the full plan is"
            f"{where}.\n"
        )


@REPORTERS.register("json")
class JsonPlan(PlanReporter):
    def emit(self, plan: Plan) -> None:
        actions = []
        for a in plan.actions:
            item = a.as_dict()
            item["body"] = shown(a, self.redact_paths)
            actions.append(item)
        document = {
            "format_version": FORMAT_VERSION,
            "environment": plan.environment,
            "lineage": plan.lineage,
            "serial": plan.serial,
            "ledger_behind": plan.behind,
            "actions": actions,
            "summary": plan.summary(),
        }
        self.out.write(json_document(document, "actions"))
