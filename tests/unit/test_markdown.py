"""The markdown plan: a pull-request comment that always fits and is never empty."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from xpdeploy.execution import Execution
from xpdeploy.ledger import LedgerState, Record, Status
from xpdeploy.model import Environment
from xpdeploy.plan import Plan, make_plan
from xpdeploy.report.markdown import Budget, cell, details, fenced
from xpdeploy.report.plan import MarkdownPlan

GITHUB_COMMENT_LIMIT = 65_536  # characters in one GitHub comment: the real limit, not ours

NOW = datetime(2030, 6, 1, tzinfo=timezone.utc)
EMPTY = LedgerState("staging", None, 0, {})
ROW = re.compile(r"^\| [+=!x?-] \| `[^`]+` \| ", re.MULTILINE)
LEFT_OUT = re.compile(r"(\d+) table row\(s\)|(\d+) execution detail\(s\)")


def execution(i: int, recipients: int = 40, **extra: Any) -> Execution:
    body: dict[str, Any] = {
        "id": 1000 + i,
        "target_by": "user_id",
        "target_with_params": {
            f"crm-user-{i:04d}-{r:03d}": {"first_name": f"Name{r}", "balance": f"{r * 10} EUR"}
            for r in range(recipients)
        },
        "params": {"external_message_id": f"exec-{i:04d}"},
        "time": "2031-01-01 12:00 UTC",
        **extra,
    }
    return Execution(f"exec-{i:04d}", 1, "staging", body, f"campaigns/exec-{i:04d}.yaml", 1)


def plan(executions: list[Execution], state: LedgerState = EMPTY) -> Plan:
    return make_plan("staging", Environment(), executions, state, NOW)


def render(the_plan: Plan, artifact: str | None = "xpdeploy-plan-staging", **kw: Any) -> str:
    out = io.StringIO()
    MarkdownPlan(out, artifact=artifact, **kw).emit(the_plan)
    return out.getvalue()


def left_out(text: str) -> tuple[int, int]:
    rows = blocks = 0
    for row_count, block_count in LEFT_OUT.findall(text):
        rows += int(row_count or 0)
        blocks += int(block_count or 0)
    return rows, blocks


# --- helpers ------------------------------------------------------------------------------


def test_cell_keeps_a_row_on_one_line() -> None:
    assert cell("a | b\nc") == "a \\| b c"
    assert cell(42) == "42"


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fenced("x", "json") == "```json\nx\n```"
    assert fenced("a ```` b").startswith("`````\n")
    assert fenced("a ```` b").endswith("\n`````")


def test_details_block() -> None:
    assert details("S", "B") == "<details><summary>S</summary>\n\nB\n\n</details>\n"


def test_budget_counts_what_does_not_fit_and_keeps_order() -> None:
    budget = Budget(limit=1_100)  # 100 characters once the trailer reserve is kept
    assert budget.add("a" * 60)
    assert not budget.add("b" * 50)
    assert not budget.add("c")  # nothing after a dropped part, so the order stays honest
    assert budget.add("REQUIRED", required=True)
    assert budget.dropped == 2
    assert budget.text("!") == "a" * 60 + "REQUIRED!"


def test_budget_never_exceeds_its_limit() -> None:
    budget = Budget(limit=1_100)
    budget.add("x" * 5_000, required=True)
    assert len(budget.text("trailer")) <= 1_100


# --- the plan comment ------------------------------------------------------------------------


def test_small_plan_has_marker_summary_table_and_details() -> None:
    done = execution(2, recipients=1)
    record = Record(
        done.name, 1, Status.APPLIED, done.sha256, done.campaign_id, 1, "t", None, None, "t"
    )
    state = LedgerState("staging", "L", 2, {done.name: record})
    text = render(plan([execution(1, recipients=2), done], state))
    assert text.startswith("<!-- xpdeploy plan: staging -->\n")
    assert "**Plan: 1 to send, 1 unchanged, 0 drifted, 0 blocked.**" in text
    assert "| | execution | action | campaign | audience | schedule |" in text
    assert "| + | `exec-0001` | send | 1001 | 2 recipients | 2031-01-01 12:00 UTC |" in text
    assert "| = | `exec-0002` | unchanged | 1002 | 1 recipient | 2031-01-01 12:00 UTC |" in text
    assert text.count("<details>") == 2  # one per execution, unchanged ones last
    assert '"apptoken": "***"' in text
    assert "left out" not in text


def test_empty_plan_still_says_something() -> None:
    text = render(plan([]))
    assert text.startswith("<!-- xpdeploy plan: staging -->\n")
    assert "No executions in this environment." in text


def test_thousand_executions_of_forty_recipients_fit_one_comment() -> None:
    executions = [execution(i) for i in range(1000)]
    text = render(plan(executions))
    assert 0 < len(text) <= GITHUB_COMMENT_LIMIT
    assert text.startswith("<!-- xpdeploy plan: staging -->\n")
    assert "**Plan: 1000 to send, 0 unchanged, 0 drifted, 0 blocked.**" in text
    assert "| | execution | action | campaign | audience | schedule |" in text
    assert "| + | `exec-0000` | send | 1000 | 40 recipients |" in text
    rows_shown = len(ROW.findall(text))
    blocks_shown = text.count("<details>")
    assert text.count("</details>") == blocks_shown  # no block is cut in half
    rows_left, blocks_left = left_out(text)
    assert rows_left > 0
    assert rows_shown + rows_left == 1000
    assert blocks_shown + blocks_left == 1000
    assert "left out to fit GitHub's comment limit" in text
    assert "`xpdeploy-plan-staging` artifact" in text
    assert text.rstrip().endswith("artifact.")


def test_one_execution_too_big_for_a_comment_keeps_its_row() -> None:
    text = render(plan([execution(1, recipients=3000)]), artifact=None)
    assert len(text) <= GITHUB_COMMENT_LIMIT
    assert "| + | `exec-0001` | send | 1001 | 3000 recipients |" in text
    assert "<details>" not in text
    assert left_out(text) == (0, 1)
    assert "run `xpdeploy plan`" in text


def test_details_that_fit_are_kept_in_plan_order() -> None:
    executions = [execution(i, recipients=1 if i < 5 else 2000) for i in range(8)]
    text = render(plan(executions))
    assert len(text) <= GITHUB_COMMENT_LIMIT
    assert len(ROW.findall(text)) == 8
    names = re.findall(r"<summary>\+ <code>([^<]+)</code>", text)
    assert names[:5] == [f"exec-{i:04d}" for i in range(5)]
    assert names == sorted(names)
    assert left_out(text) == (0, 8 - len(names))


def test_review_redact_applies_to_the_comment() -> None:
    text = render(plan([execution(1, recipients=2)]), redact_paths=["target_with_params.*"])
    assert "Name1" not in text
    assert "(redacted)" in text


def test_hostile_names_and_values_do_not_break_the_table() -> None:
    ex = execution(1, recipients=1, messages={"1": {"text": "```\n| not a row |"}})
    text = render(plan([ex]))
    assert "````json" in text  # a longer fence, so the body cannot close it
    assert "| not a row |" in text
    assert len(ROW.findall(text)) == 1


@pytest.mark.parametrize("environment", ["staging", "prod-eu"])
def test_marker_names_the_environment(environment: str) -> None:
    the_plan = make_plan(environment, Environment(), [], EMPTY, NOW)
    assert render(the_plan).startswith(f"<!-- xpdeploy plan: {environment} -->\n")


def test_redacted_campaign_and_time_are_masked_in_the_table_too() -> None:
    ex = Execution(
        "secret",
        1,
        "staging",
        {"id": 90210, "target": ["a"], "time": "2031-01-01 12:00 UTC"},
        "c.yaml",
        1,
    )
    text = render(plan([ex]), redact_paths=["id", "time"])
    assert "90210" not in text and "2031-01-01" not in text
    assert "| + | `secret` | send | (redacted) | 1 recipient | (redacted) |" in text


def test_a_ledger_behind_its_upstream_is_a_warning_that_survives_the_limit() -> None:
    behind = "origin/main has 2 commit(s) changing state/staging.jsonl that this checkout lacks"
    the_plan = replace(plan([execution(i, recipients=2000) for i in range(60)]), behind=behind)
    text = render(the_plan)
    assert len(text) <= 65_536 and left_out(text) != (0, 0)
    assert f"> **Warning:** {behind}; apply refuses until then." in text
    assert "Warning" not in render(plan([execution(1)]))
