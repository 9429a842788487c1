"""The error boundary (usage errors, user errors, OS errors, bugs, a closed stdout) and the
options every command takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from helpers import CLEAN_SPEC, cli, project, project_text

import xpdeploy.emulator
import xpdeploy.lint
import xpdeploy.report.plan
import xpdeploy.runner


@pytest.mark.parametrize(
    "args",
    [
        ["-e", "x", "plan"],  # an option of the group that does not exist
        ["nope"],
        ["lint", "--format", "nope"],
        ["plan", "--detailed-exitcode", "--nope"],
        ["lint", "-e", "local", "--all-envs"],  # ambiguous: refused, not guessed
    ],
)
def test_usage_errors_exit_1_not_2(tmp_path: Path, args: list[str]) -> None:
    """2 means "something to send" under --detailed-exitcode; a typo must not look like it."""
    project(tmp_path, {"a.yaml": CLEAN_SPEC.format(name="a")})
    result = cli(args)
    assert result.exit_code == 1
    assert "Usage:" in result.stderr and "Traceback" not in result.output


def test_help_and_version_exit_0() -> None:
    assert cli(["--help"]).exit_code == 0
    version = cli(["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("xpdeploy, version ")


def _fresh_python(code: str, cwd: Path | None = None) -> str:
    """What ``code`` prints in a new interpreter, where no other test imported anything."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_the_lazy_command_table_names_every_command_of_its_modules() -> None:
    shown = json.loads(
        _fresh_python(
            "import importlib, json\n"
            "from xpdeploy.cli import LAZY_COMMANDS, main\n"
            "eager = set(main.commands)\n"
            "for module in set(LAZY_COMMANDS.values()): importlib.import_module(module)\n"
            "print(json.dumps({name: command.callback.__module__ for name, command in"
            " main.commands.items() if name not in eager}))"
        )
    )
    from xpdeploy.cli import LAZY_COMMANDS

    assert shown == LAZY_COMMANDS


def test_lint_does_not_import_the_deploy_commands(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": CLEAN_SPEC.format(name="a")})
    loaded = _fresh_python(
        "import sys\n"
        "from xpdeploy.cli import main\n"
        "try:\n    main(['lint'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('xpdeploy.cli_', 'httpx'))))",
        cwd=tmp_path,
    )
    assert loaded.splitlines()[-1] == "[]"
    assert cli(["--help"]).stdout.count("\n  state ") == 1  # --help still lists them all


def test_a_bug_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path, {"a.yaml": CLEAN_SPEC.format(name="a")})

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(xpdeploy.lint, "duplicate_external_ids", broken)
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "internal error (a bug in xpdeploy" in result.stderr and "kaboom" in result.stderr
    assert "Traceback" not in result.stderr
    debug = cli(["lint", "--debug"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


def big_project(root: Path, specs: int = 40, targets: int = 2000) -> Path:
    """A project whose rendered output is far larger than a pipe's buffer (64 KiB)."""
    ids = ", ".join(f"crm-user-{i}" for i in range(targets))
    spec = CLEAN_SPEC.replace("target: [crm-user-1]", f"target: [{ids}]")
    return project(root, {f"s{i}.yaml": spec.format(name=f"s{i}") for i in range(specs)})


def test_a_reader_that_stops_early_is_not_a_bug(tmp_path: Path) -> None:
    """`xpdeploy render | head -c 16`: exit 1 quietly, as other tools do on a closed pipe."""
    big_project(tmp_path)
    # Unbuffered, CPython drops the rest of a partial write to a closed pipe without an
    # error, and the run would end 0 before the boundary saw anything.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with (tmp_path / "stderr.txt").open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", "from xpdeploy.cli import main; main()", "render"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        assert process.stdout.read(16)
        process.stdout.close()
        code = process.wait(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 1, stderr
    for noise in ("internal error", "Traceback", "Exception ignored", "BrokenPipeError"):
        assert noise not in stderr
    assert len(stderr.splitlines()) <= 1


def test_a_broken_pipe_in_process_exits_1_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any command, wherever the write fails (here: the plan reporter)."""
    project(tmp_path, {"a.yaml": CLEAN_SPEC.format(name="a")})

    def closed(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(xpdeploy.report.plan.TextPlan, "emit", closed)
    result = cli(["plan"])
    assert result.exit_code == 1
    assert result.stderr == ""


def project_with_state(root: Path, state: str) -> Path:
    environments = {"local": {"api_url": "emulator", "state": state}}
    return project(root, {"a.yaml": CLEAN_SPEC.format(name="a")}, environments=environments)


@pytest.mark.parametrize("command", [["plan"], ["state", "list"]])
@pytest.mark.parametrize(
    ("state", "reason"),
    [("xpdeploy.yaml/local.jsonl", "Not a directory")],  # a file where a folder should be
)
def test_an_os_error_is_the_users_problem_not_a_bug(
    tmp_path: Path, command: list[str], state: str, reason: str
) -> None:
    project_with_state(tmp_path, state)
    result = cli(command)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and lines[0].endswith(f": {reason}")
    assert state.split("/")[0] in lines[0]
    assert "internal error" not in result.stderr and "Errno" not in result.stderr
    debug = cli([*command, "--debug"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == lines[0]


@pytest.mark.parametrize("command", [["plan"], ["state", "list"], ["apply", "--auto-approve"]])
@pytest.mark.parametrize("kind", ["folder", "pipe", "symlink", "device"])
@pytest.mark.usefixtures("deadline")  # reading a pipe used to block for ever
def test_a_ledger_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, command: list[str], kind: str
) -> None:
    """A first write would replace it (/dev/null once was); /dev/zero and a pipe never end."""
    state = {"folder": "campaigns", "device": "/dev/null"}.get(kind, "shared.jsonl")
    if kind == "pipe":
        os.mkfifo(tmp_path / state)
    elif kind == "symlink":
        (tmp_path / "elsewhere.jsonl").touch()
        (tmp_path / state).symlink_to(tmp_path / "elsewhere.jsonl")
    project_with_state(tmp_path, state)
    result = cli(command)
    assert result.exit_code == 1 and "the ledger is not a regular file" in result.stderr
    assert not list(tmp_path.glob("*.lock"))  # not even the lock file was made beside it
    if kind == "symlink":
        assert (tmp_path / state).is_symlink() and (
            tmp_path / "elsewhere.jsonl"
        ).stat().st_size == 0


@pytest.mark.parametrize("command", [["plan"], ["state", "list"]])
def test_an_os_error_names_the_file_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    project(tmp_path, {"a.yaml": CLEAN_SPEC.format(name="a")})

    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "/proc/nope/x.jsonl")

    monkeypatch.setattr(xpdeploy.runner, "ledger_for", missing)
    result = cli(command)
    assert result.exit_code == 1
    assert result.stderr == "Error: /proc/nope/x.jsonl: No such file or directory\n"


COMMON_OPTIONS = ["--project", "p", "-e", "nowhere", "--var", "a=1", "--var-file", "v.yaml"]


def test_schema_takes_the_common_options_and_ignores_them() -> None:
    plain = cli(["schema"])
    result = cli(["schema", *COMMON_OPTIONS])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(plain.stdout)
    assert "ignored" in cli(["schema", "--help"]).stdout


def test_init_takes_the_common_options_and_ignores_them(tmp_path: Path) -> None:
    result = cli(["init", "new", *COMMON_OPTIONS])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "xpdeploy.yaml").is_file()
    assert not (tmp_path / "p").exists()
    assert "ignored" in cli(["init", "--help"]).stdout


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments `xpdeploy emulator` serves with, instead of serving forever."""
    calls: list[dict[str, Any]] = []

    def serve(host: str, port: int, **kwargs: Any) -> None:
        calls.append({"host": host, "port": port, **kwargs})

    monkeypatch.setattr(xpdeploy.emulator, "serve", serve)
    return calls


def emulator_project(root: Path) -> Path:
    project(root, {"a.yaml": CLEAN_SPEC.format(name="a")})
    text = project_text() + "emulator: {campaigns: [42, promo]}\n"
    (root / "xpdeploy.yaml").write_text(text, encoding="utf-8")
    return root


def test_emulator_takes_the_common_options_and_knows_the_projects_campaigns(
    tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    emulator_project(tmp_path / "p")
    result = cli(["emulator", "--port", "9999", *COMMON_OPTIONS])
    assert result.exit_code == 0, result.output
    assert served == [
        {
            "host": "127.0.0.1",
            "port": 9999,
            "apptoken": None,
            "campaigns": ["42", "promo"],
            "log_path": None,
            "echo": click.echo,
        }
    ]


def test_emulator_finds_the_project_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    emulator_project(tmp_path)
    monkeypatch.chdir(tmp_path / "campaigns")
    assert cli(["emulator"]).exit_code == 0
    assert served[-1]["campaigns"] == ["42", "promo"]


def test_emulator_campaign_options_win_over_the_project(
    tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    emulator_project(tmp_path)
    assert cli(["emulator", "--campaign", "7", "--campaign", "8"]).exit_code == 0
    assert served[-1]["campaigns"] == ["7", "8"]


def test_emulator_outside_a_project_knows_any_campaign(served: list[dict[str, Any]]) -> None:
    assert cli(["emulator"]).exit_code == 0
    assert served[-1]["campaigns"] is None


def test_emulator_with_a_missing_project_is_an_error(served: list[dict[str, Any]]) -> None:
    result = cli(["emulator", "--project", "missing"])
    assert result.exit_code == 1
    assert "project file missing not found" in result.stderr
    assert served == []
