"""Spec documents → rendered executions for one environment, with findings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xpdeploy.canonical import body_sha256
from xpdeploy.findings import Finding
from xpdeploy.loader import Document, load_file
from xpdeploy.model import ExecuteBody, SpecHeader
from xpdeploy.project import deep_merge, display_path
from xpdeploy.template import Renderer, TemplateProblem
from xpdeploy.validation import (
    apptoken_findings,
    dotted,
    has_apptoken_key,
    nodes,
    pydantic_findings,
)
from xpdeploy.when import TimeFormatError, normalise_time, parse_api_time

_BODY_VALIDATOR = ExecuteBody.model_validate


@dataclass(frozen=True)
class SpecSource:
    """A spec document whose header (everything but the body) is valid."""

    document: Document
    header: SpecHeader

    @property
    def name(self) -> str:
        return self.header.name

    def applies_to(self, environment: str) -> bool:
        return self.header.environments is None or environment in self.header.environments


@dataclass(frozen=True)
class Execution:
    """One rendered request body (less apptoken) for one environment."""

    name: str
    revision: int
    environment: str
    body: dict[str, Any]
    path: str
    line: int

    @cached_property
    def sha256(self) -> str:
        return body_sha256(self.body)

    @property
    def campaign_id(self) -> Any:
        return self.body.get("id")

    @property
    def audience(self) -> int | None:
        """Recipients named in the body; None when the campaign's segment decides."""
        if "target_with_params" in self.body or "target" in self.body:
            return len(self.body.get("target_with_params") or ()) + len(
                self.body.get("target") or ()
            )
        return None

    @property
    def schedule(self) -> str:
        return str(self.body.get("time") or "now")

    def scheduled_at(self) -> datetime | None:
        return parse_api_time(self.body.get("time"))


def load_specs(
    files: Iterable[Path], environments: Iterable[str]
) -> tuple[list[SpecSource], list[Finding]]:
    """Parse spec files; every document with a valid header becomes a SpecSource."""
    known = set(environments)
    sources: list[SpecSource] = []
    findings: list[Finding] = []
    seen: dict[str, SpecSource] = {}
    for file in files:
        loaded = load_file(file, display_path(file))
        findings.extend(loaded.findings)
        for document in loaded.documents:
            if not isinstance(document.value, dict):
                findings.append(
                    document.at(
                        (), "schema", "a spec document must be a mapping with name and execute"
                    )
                )
                continue
            findings.extend(apptoken_findings(document))
            try:
                header = SpecHeader.model_validate(document.value)
            except ValidationError as exc:
                findings.extend(pydantic_findings(exc, document, SpecHeader))
                continue
            source = SpecSource(document, header)
            for i, env in enumerate(header.environments or ()):
                if env not in known:
                    findings.append(
                        document.at(
                            ("environments", i),
                            "schema",
                            f"environments[{i}]: unknown environment {env!r}; the project has"
                            f" {', '.join(sorted(known))}",
                        )
                    )
            if header.name in seen:
                # Reported at every use, so `lint PATHS` flags whichever file it is given.
                first = seen[header.name].document
                for here, other in ((document, first), (first, document)):
                    findings.append(
                        here.at(
                            ("name",),
                            "duplicate-name",
                            f"name {header.name!r} is also used at {other.path}:{other.line};"
                            " names identify executions in the ledger, so each must be unique",
                        )
                    )
                continue
            seen[header.name] = source
            sources.append(source)
    return sources, findings


def render_execution(
    source: SpecSource, environment: str, layer: dict[str, Any]
) -> tuple[Execution | None, list[Finding]]:
    """Render one spec for one environment; None when it cannot render cleanly."""
    document = source.document
    header = source.header
    variables = deep_merge(header.vars or {}, layer)
    variables["env"] = environment
    variables["name"] = header.name
    raw = document.value["execute"]
    findings: list[Finding] = []

    def problem(path: tuple[str | int, ...], issue: TemplateProblem) -> None:
        findings.append(
            document.at(("execute", *path), issue.rule, _explain(issue, raw, environment))
        )

    rendered = Renderer(variables).walk(raw, problem)
    if findings:
        return None, findings
    try:
        _BODY_VALIDATOR(rendered)
    except ValidationError as exc:
        return None, pydantic_findings(exc, document, ExecuteBody, ("execute",), rendered)
    odd = any(_odd_number(node) for node in nodes(rendered))
    unrepresentable = _not_json(rendered) if odd else None
    if unrepresentable is not None:
        path, why = unrepresentable
        return None, [
            document.at(("execute", *path), "schema", f"{dotted(('execute', *path))}: {why}")
        ]
    body = dict(rendered)
    extra = body.pop("extra", None) or {}
    clashing = sorted(set(extra) & set(body))
    if clashing:
        findings.append(
            document.at(
                ("execute", "extra", clashing[0]),
                "schema",
                f"execute.extra.{clashing[0]} is a known field: set it directly under execute",
                key=True,
            )
        )
        return None, findings
    body.update(extra)
    if has_apptoken_key(body) and not has_apptoken_key(raw):  # made by a template
        findings.append(
            document.at(
                ("execute",),
                "apptoken-in-file",
                "the rendered body has an apptoken key: the token is added at send time from"
                " the environment variable that apptoken_env names, never from a spec",
                key=True,
            )
        )
        return None, findings
    if "time" in body:
        try:
            body["time"] = normalise_time(body["time"])
        except TimeFormatError as exc:
            findings.append(document.at(("execute", "time"), "time-format", str(exc)))
            return None, findings
    execution = Execution(
        header.name, header.revision, environment, body, document.path, document.line
    )
    return execution, findings


def _odd_number(value: Any) -> bool:
    """inf, nan, or an integer past 64 bits: numbers JSON or the API cannot carry."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63


def _not_json(
    value: Any, path: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """Where the first value JSON cannot carry faithfully is: inf, nan, an int past 64 bits."""
    if _odd_number(value):
        kind = "is not a JSON number" if isinstance(value, float) else "is larger than 64 bits"
        return path, f"{value if isinstance(value, float) else 'the integer'} {kind}"
    if isinstance(value, dict):
        items: Iterable[tuple[str | int, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _not_json(item, (*path, key))
        if found is not None:
            return found
    return None


def _explain(issue: TemplateProblem, raw: dict[str, Any], environment: str) -> str:
    if issue.rule != "undefined-variable" or not issue.name:
        return issue.message
    name = issue.name
    recipients, shared = raw.get("target_with_params"), raw.get("params")
    personal = [
        key
        for params in (recipients.values() if isinstance(recipients, dict) else ())
        if isinstance(params, dict)
        for key in params
    ]
    if (isinstance(shared, dict) and name in shared) or name in personal:
        return (
            f"{name!r} is not defined: to send Xtremepush's own {{{{{name}}}}} placeholder"
            " verbatim, tag the string !raw"
        )
    what = f"{name!r} is not defined" if issue.message.endswith("is undefined") else issue.message
    return (
        f"{what} for environment {environment!r} (define it in the project's vars, the"
        " environment's vars or vars_files, or the spec's vars)"
    )
