"""Builders shared by the tests: file trees from dicts, small projects, the CLI; and, at
the end, the GitHub workflows as parsed YAML and the git repositories of the diff tests.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from ruamel.yaml import YAML

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


TARGETED = "name: x\nexecute:\n  id: 1\n  target_by: user_id\n  target: [u1]\n  push_text: {}\n"


def templated(expression: str) -> str:
    """A spec whose push_text (line 6, column 14) is ``expression``."""
    return TARGETED.format(json.dumps(expression))


def lint_one(tmp_path: Path, content: str | bytes) -> dict[str, Any]:
    """Lint a project whose only spec is ``content``; exactly one finding, exit 1."""
    project(tmp_path, files={"campaigns/x.yaml": content})
    result = cli(["lint", "--format", "json"])
    assert "internal error" not in result.stderr
    assert result.exit_code == 1, result.output
    [found] = json.loads(result.stdout)["findings"]
    assert found["path"] == "campaigns/x.yaml"
    return dict(found)


# --- the GitHub workflows (test_workflows.py, test_workflows_safety.py) -----------------

WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))


def load_workflow(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def workflow_jobs(workflow: Any) -> dict[str, Any]:
    jobs: dict[str, Any] = workflow["jobs"]
    return jobs


def workflow_steps(workflow: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in workflow_jobs(workflow).items():
        for step in job.get("steps", []):
            yield job_id, step


# --- diff: a project in a git repository (test_diff.py, test_diff_base.py) ---------------

ENVS: dict[str, Any] = {"local": {"api_url": "emulator"}, "staging": {"api_url": "emulator"}}
GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
GIT += ["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def git(root: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


def commit(root: Path, message: str = "base") -> None:
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)


def spec(name: str, text: str = "Hello", environments: list[str] | None = None) -> str:
    lines = [f"name: {name}"]
    if environments is not None:
        lines.append(f"environments: {json.dumps(environments)}")
    lines += [
        "execute:",
        "  id: 42",
        "  target_by: user_id",
        "  target: [crm-user-1]",
        "  params:",
        f'    external_message_id: "{name}-{{{{ env }}}}"',
        f"    text: {json.dumps(text)}",
        '  time: "2031-01-01 12:00 UTC"',
    ]
    return "\n".join(lines) + "\n"


def write_spec(root: Path, name: str, **kwargs: Any) -> None:
    make_tree(root, {f"campaigns/{name}.yaml": spec(name, **kwargs)})


def diff_json(*args: str, base: str = "HEAD") -> dict[str, Any]:
    result = cli(["diff", "--base", base, "--format", "json", *args])
    assert result.exit_code == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def changed(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c["environment"], c["name"], c["change"]) for c in document["changes"]}
