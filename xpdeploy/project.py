"""The project file: discovery, environments and variable precedence (SPEC §2)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from xpdeploy.errors import FindingsError, UserError
from xpdeploy.findings import Finding, Severity
from xpdeploy.loader import MAX_DEPTH, Document, load_file, load_text
from xpdeploy.model import Environment, ProjectFile
from xpdeploy.validation import apptoken_findings, pydantic_findings, state_secret_findings

PROJECT_FILE = "xpdeploy.yaml"
EMULATOR = "emulator"


def _loopback(host: str) -> bool:
    import ipaddress  # only apply asks; keeps it out of every start-up

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def display_path(path: Path) -> str:
    """A path as findings show it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def find_project_file(start: Path | None = None, explicit: Path | None = None) -> Path:
    """The project file named, or the nearest ``xpdeploy.yaml`` at or above ``start``."""
    if explicit is not None:
        candidate = explicit / PROJECT_FILE if explicit.is_dir() else explicit
        if not candidate.is_file():
            raise UserError(f"project file {explicit} not found")
        return candidate
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder / PROJECT_FILE
    raise UserError(
        f"no {PROJECT_FILE} in {here} or its parents (create one with `xpdeploy init`,"
        " or pass --project PATH)"
    )


def _is_spec(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") and path.is_file()


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Overrides:
    """Variables given on the command line: ``--var-file`` then ``--var``."""

    var_files: tuple[Path, ...] = ()
    vars: tuple[str, ...] = ()

    def parsed_vars(self) -> dict[str, Any]:
        """``KEY=VALUE`` pairs; dotted keys set nested values; values are YAML, read as in
        a file: ``100`` is a number, ``'007'`` the string 007, ``[a, b]`` a list."""
        result: dict[str, Any] = {}
        for item in self.vars:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise UserError(f"--var {item!r}: expected KEY=VALUE")
            parts = key.strip().split(".")
            if len(parts) > MAX_DEPTH // 2:  # its value nests further, up to MAX_DEPTH
                raise UserError(f"--var {key.strip()[:40]}...: more than {MAX_DEPTH // 2} levels")
            value = _yaml_value(key.strip(), raw)
            for part in reversed(parts):
                value = {part: value}
            result = deep_merge(result, value)
        return result


def _yaml_value(key: str, raw: str) -> Any:
    if not raw.strip():
        return ""  # `--var note=` means an empty string, not null
    loaded = load_text(raw, f"--var {key}")
    if loaded.findings:
        first = loaded.findings[0]
        if first.rule == "lossy-number":  # a command line has no place for warnings
            text = raw.strip()
            raise UserError(
                f"--var {key}: {text} would be read as a number, losing its text;"
                f" for the text, quote it: --var '{key}=\"{text}\"'"
            )
        raise UserError(f"--var {key}: not a YAML value ({first.message}); quote it")
    return loaded.documents[0].value if loaded.documents else ""


@dataclass
class VarLayer:
    """Everything an environment contributes to variables, loaded once."""

    values: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Project:
    """A loaded, validated project file."""

    file: Path
    config: ProjectFile
    document: Document
    warnings: list[Finding] = field(default_factory=list)  # reported by lint

    @property
    def root(self) -> Path:
        return self.file.parent

    @property
    def display(self) -> str:
        return display_path(self.file)

    @property
    def campaigns_dir(self) -> Path:
        return self.root / self.config.campaigns

    def environment_name(self, name: str | None) -> str:
        """The environment asked for, or the default one; a clear error when unknown."""
        chosen = name or self.config.default_environment
        if chosen is None:
            if len(self.config.environments) == 1:
                return next(iter(self.config.environments))
            raise UserError(
                "no environment given and no default_environment in the project file: use -e NAME"
                f" ({', '.join(self.config.environments)})"
            )
        if chosen not in self.config.environments:
            raise UserError(
                f"unknown environment {chosen!r}; the project has {', '.join(self.config.environments)}",
                path=self.display,
            )
        return chosen

    def input_files(self) -> list[Path]:
        """Every file the project reads: its project file, specs and vars files."""
        vars_files = [
            self.root / f for env in self.config.environments.values() for f in env.vars_files
        ]
        return [self.file, *self.spec_files, *vars_files]

    def environment(self, name: str) -> Environment:
        return self.config.environments[name]

    def state_value(self, name: str) -> str:
        """What ``state:`` says (or the variable ``state_env`` names): a path in the
        project, a postgresql:// URL or git:BRANCH:PATH."""
        env = self.environment(name)
        if env.state_env:
            value = os.environ.get(env.state_env, "").strip()
            if not value:  # never echoed when set: it may hold a password
                raise UserError(
                    f"state_env of environment {name!r} names {env.state_env}, which is not set"
                )
            return value
        default = f".xpdeploy/{name}.jsonl" if env.api_url == EMULATOR else f"state/{name}.jsonl"
        return env.state or default

    def state_path(self, name: str) -> Path:
        """A file ledger's path: ``state:``, else state/<env>.jsonl (committed) for a real
        API and .xpdeploy/<env>.jsonl (ignored) for the built-in emulator."""
        return self.root / self.state_value(name)

    def api_url(self, name: str) -> str:
        return os.environ.get("XPDEPLOY_API_URL") or self.environment(name).api_url

    def uses_emulator(self, name: str) -> bool:
        return self.api_url(name) == EMULATOR

    def endpoint(self, name: str) -> str:
        """Where sends go, as the ledger records it: the API's origin, or "emulator"."""
        url = self.api_url(name)
        if url == EMULATOR:
            return EMULATOR
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises for a bad port, as hostname does for bad brackets)
        except ValueError:  # not echoed: a malformed URL may still hold a password
            raise UserError(f"api_url of environment {name!r} is not a valid URL") from None
        if parts.username is not None or parts.password is not None:
            raise UserError(
                f"api_url of environment {name!r} has a user or password in it: the URL names"
                " the API only (the token comes from the variable apptoken_env names)"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"api_url {url!r} of environment {name!r} is not an http(s) URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise UserError(
                f"api_url {url!r} of environment {name!r} is plain http: the apptoken would"
                " travel unencrypted; use https (http is only for a local emulator)"
            )
        # One API, one spelling: https://Host:443/ and https://host are the same endpoint.
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None and parts.port != _DEFAULT_PORTS[parts.scheme]:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}"

    @cached_property
    def spec_files(self) -> list[Path]:
        """Every spec file under the campaigns folder, in a stable order."""
        folder = self.campaigns_dir
        if not folder.is_dir():
            raise UserError(
                f"campaigns folder {display_path(folder)} does not exist", path=self.display
            )
        return sorted(p for p in folder.rglob("*") if _is_spec(p))

    def files_named(self, paths: Iterable[Path]) -> tuple[list[Path], set[str]]:
        """Files to load for lint PATHS, and the display paths to report on.

        Names must be unique project-wide, so the whole project is loaded and only
        the findings in the files named are reported.
        """
        named: dict[Path, None] = {}
        for path in paths:
            if path.is_dir():
                named.update(
                    dict.fromkeys(p.resolve() for p in sorted(path.rglob("*")) if _is_spec(p))
                )
            else:
                named[path.resolve()] = None
        rest = [p for p in self.spec_files if p.resolve() not in named]
        return [*named, *rest], {display_path(p) for p in named}

    def var_layer(self, name: str, overrides: Overrides) -> VarLayer:
        """Project vars < vars_files < environment vars < --var-file < --var."""
        env = self.environment(name)
        layer = VarLayer(dict(self.config.vars))
        files = [(self.root / f, f"vars_files of environment {name!r}") for f in env.vars_files]
        for path, origin in files:
            layer.values = deep_merge(layer.values, self._vars_file(path, origin, layer.findings))
        layer.values = deep_merge(layer.values, env.vars)
        for path in overrides.var_files:
            layer.values = deep_merge(
                layer.values, self._vars_file(path, "--var-file", layer.findings)
            )
        layer.values = deep_merge(layer.values, overrides.parsed_vars())
        return layer

    @staticmethod
    def _vars_file(path: Path, origin: str, findings: list[Finding]) -> dict[str, Any]:
        if not path.is_file():
            what = "is not a regular file" if os.path.lexists(path) else "does not exist"
            raise UserError(f"vars file {display_path(path)} (from {origin}) {what}")
        loaded = load_file(path, display_path(path))
        findings.extend(loaded.findings)
        merged: dict[str, Any] = {}
        for document in loaded.documents:
            findings.extend(apptoken_findings(document))
            if not isinstance(document.value, dict):
                findings.append(
                    document.at((), "schema", "a vars file must be a mapping of names to values")
                )
                continue
            merged = deep_merge(merged, document.value)
        return merged


_DEFAULT_PORTS = {"http": 80, "https": 443}


def load_project(explicit: Path | None = None, start: Path | None = None) -> Project:
    """Find, parse and validate the project file; problems raise a positioned UserError."""
    file = find_project_file(start, explicit)
    shown = display_path(file)
    loaded = load_file(file, shown)
    problems = [f for f in loaded.findings if f.severity is Severity.ERROR]
    warnings = [f for f in loaded.findings if f.severity is Severity.WARNING]
    if not problems and len(loaded.documents) != 1:
        raise UserError("the project file must hold exactly one YAML document", path=shown)
    document = loaded.documents[0] if loaded.documents else None
    if document is not None:
        problems += apptoken_findings(document) + state_secret_findings(document)
        if not isinstance(document.value, dict):
            raise UserError("the project file must be a mapping", path=shown, line=document.line)
    if problems:
        raise _as_error(problems)
    assert document is not None
    try:
        config = ProjectFile.model_validate(document.value)
    except ValidationError as exc:
        raise _as_error(pydantic_findings(exc, document, ProjectFile)) from None
    root = file.parent.resolve()
    if not (root / config.campaigns).resolve().is_relative_to(root):
        raise UserError(
            f"campaigns {config.campaigns!r} is outside the project's folder (links"
            " followed): specs live in the project (and `diff --base` reads only the project"
            " from git)",
            path=shown,
            line=document.mark(("campaigns",))[0],
        )
    default = config.default_environment
    if default is not None and default not in config.environments:
        raise UserError(
            f"default_environment {default!r} is not one of the environments",
            path=shown,
            line=document.mark(("default_environment",))[0],
        )
    return Project(file, config, document, warnings)


def _as_error(findings: Iterable[Finding]) -> FindingsError:
    ordered = sorted(findings)
    first = ordered[0]
    return FindingsError(
        ordered, f"the project file {first.path} is not valid: fix the above first"
    )
