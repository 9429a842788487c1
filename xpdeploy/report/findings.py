"""Lint findings as text, JSON, GitHub workflow commands and SARIF 2.1.0."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from typing import IO

import click

from xpdeploy import __version__
from xpdeploy.findings import RULES, Finding, Severity
from xpdeploy.report import Registry, use_color

FORMAT_VERSION = 1


class FindingsReporter(ABC):
    """Writes a list of findings to a stream."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    @abstractmethod
    def emit(self, findings: list[Finding], checked: int) -> None:
        """Write the findings of a run that checked ``checked`` executions."""


REPORTERS: Registry[FindingsReporter] = Registry()


@REPORTERS.register("text")
class TextReporter(FindingsReporter):
    def __init__(self, out: IO[str], summary: bool = True) -> None:
        super().__init__(out)
        self.summary = summary

    def emit(self, findings: list[Finding], checked: int) -> None:
        color = use_color(self.out)
        for f in findings:
            severity = f.severity.value
            if color:
                severity = click.style(
                    severity, fg="red" if f.severity is Severity.ERROR else "yellow"
                )
            self.out.write(f"{f.path}:{f.line}:{f.column}: {severity} {f.rule} {f.message}\n")
        if not self.summary:
            return
        counts = Counter(f.severity for f in findings)
        summary = (
            f"{checked} spec file(s) checked: {counts[Severity.ERROR]} error(s),"
            f" {counts[Severity.WARNING]} warning(s)"
        )
        self.out.write(summary + "\n")


@REPORTERS.register("json")
class JsonReporter(FindingsReporter):
    def emit(self, findings: list[Finding], checked: int) -> None:
        document = {"format_version": FORMAT_VERSION, "findings": [f.as_dict() for f in findings]}
        self.out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


@REPORTERS.register("github")
class GithubReporter(FindingsReporter):
    """Workflow commands that GitHub turns into annotations on the pull request."""

    def emit(self, findings: list[Finding], checked: int) -> None:
        for f in findings:
            level = "error" if f.severity is Severity.ERROR else "warning"
            props = ",".join(
                [
                    f"file={_escape_property(f.path)}",
                    f"line={f.line}",
                    f"col={f.column}",
                    f"title={_escape_property(f.rule)}",
                ]
            )
            self.out.write(f"::{level} {props}::{_escape_data(f.message)}\n")


@REPORTERS.register("sarif")
class SarifReporter(FindingsReporter):
    """SARIF 2.1.0 for code-scanning upload."""

    def emit(self, findings: list[Finding], checked: int) -> None:
        rules = [
            {
                "id": r.id,
                "shortDescription": {"text": r.summary},
                "defaultConfiguration": {"level": r.severity.value},
            }
            for r in RULES.values()
        ]
        index = {rule_id: i for i, rule_id in enumerate(RULES)}
        results = [
            {
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": f.severity.value,
                "message": {"text": f.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": f.path},
                            "region": {"startLine": f.line, "startColumn": f.column},
                        }
                    }
                ],
            }
            for f in findings
        ]
        log = {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "xpdeploy",
                            "version": __version__,
                            "informationUri": "https://github.com/xpdeploy/xpdeploy",
                            "rules": rules,
                        }
                    },
                    "results": results,
                }
            ],
        }
        self.out.write(json.dumps(log, indent=2, ensure_ascii=False) + "\n")
