"""The error boundary: usage errors, user errors and bugs, and their exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CLEAN_SPEC, cli, project

import xpdeploy.lint


@pytest.mark.parametrize(
    "args",
    [
        ["-e", "x", "plan"],  # an option of the group that does not exist
        ["nope"],
        ["lint", "--format", "nope"],
        ["plan", "--detailed-exitcode", "--nope"],
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
