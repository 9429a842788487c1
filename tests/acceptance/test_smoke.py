"""The installed entry point, end to end, in a folder outside the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from xpdeploy.schema import GENERATORS, render_all, shipped


def entry_point() -> str:
    found = shutil.which("xpdeploy", path=str(Path(sys.executable).parent))
    assert found, "the console script `xpdeploy` is not installed beside this Python"
    return found


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [entry_point(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_init_lint_apply_twice_with_the_installed_command(tmp_path: Path) -> None:
    assert run("init", "campaigns-repo", cwd=tmp_path).returncode == 0
    project = tmp_path / "campaigns-repo"
    assert run("lint", "--all-envs", cwd=project).returncode == 0
    first = run("apply", "--auto-approve", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "Apply: 1 sent, 0 failed, 0 unknown, 0 blocked, 0 unresolved" in first.stdout
    second = run("apply", "--auto-approve", cwd=project)
    assert second.returncode == 0, second.stderr
    assert "Apply: 0 sent" in second.stdout and "1 unchanged" in second.stdout


def test_the_package_ships_its_schemas() -> None:
    """`xpdeploy init` and editors need the schemas from the installed package, not the repo."""
    generated = render_all()
    for name in GENERATORS:
        assert shipped(name) == generated[name]
