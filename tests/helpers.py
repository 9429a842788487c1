"""Builders shared by the tests: file trees from dicts, small projects, the CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from xpdeploy.cli import main

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"

DEFAULT_ENVIRONMENTS: dict[str, Any] = {"local": {"api_url": "emulator"}}

# A spec that every rule accepts: targeted, typed, scheduled far in the future.
CLEAN_SPEC = """\
name: {name}
execute:
  id: 42
  target_by: user_id
  target: [crm-user-1]
  time: "2031-01-01 12:00 UTC"
"""


def make_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{relative path: text or bytes}`` under ``root``; text is dedented."""
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
    return root


def project_text(
    environments: Mapping[str, Any] | None = None,
    vars: Mapping[str, Any] | None = None,
    default_environment: str | None = "local",
    campaigns: str = "campaigns",
) -> str:
    """The text of an ``xpdeploy.yaml``; mappings are written as JSON (a YAML subset)."""
    lines = ["version: 1", f"campaigns: {campaigns}"]
    if vars is not None:
        lines.append(f"vars: {json.dumps(vars)}")
    lines.append(f"environments: {json.dumps(environments or DEFAULT_ENVIRONMENTS)}")
    if default_environment is not None:
        lines.append(f"default_environment: {default_environment}")
    return "\n".join(lines) + "\n"


def project(
    root: Path,
    specs: Mapping[str, str] | None = None,
    environments: Mapping[str, Any] | None = None,
    vars: Mapping[str, Any] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    default_environment: str | None = "local",
) -> Path:
    """A project under ``root``: ``specs`` go under campaigns/, ``files`` anywhere."""
    tree: dict[str, str | bytes] = {
        "xpdeploy.yaml": project_text(environments, vars, default_environment)
    }
    tree.update({f"campaigns/{name}": text for name, text in (specs or {}).items()})
    tree.update(files or {})
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    return make_tree(root, tree)


def cli(args: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
    """Run ``xpdeploy ARGS`` in-process; stderr is kept apart from stdout."""
    return CliRunner().invoke(main, list(args), env=dict(env or {}), catch_exceptions=False)


def lint_json(args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """``xpdeploy lint --format json ARGS``: the exit code and the parsed document."""
    result = cli(["lint", "--format", "json", *args], env)
    return result.exit_code, json.loads(result.stdout)
