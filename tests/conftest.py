"""Suite-wide guards: no network beyond loopback, every test in its own folder."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"test tried to reach {host}: only loopback is allowed")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _isolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run in tmp_path, with only loopback reachable and no token in the environment."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    monkeypatch.chdir(tmp_path)
    for name in ("XPDEPLOY_APPTOKEN", "XPDEPLOY_API_URL", "XPDEPLOY_NOW", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test left files in the repository (writes belong in tmp_path)."""
    import subprocess

    if not (REPO / ".git").exists():
        return
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    stray = [line for line in out.splitlines() if line.startswith("??")]
    if stray and session.config.getoption("--strict-repo", default=False):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\ntests left files in the repository:\n" + "\n".join(stray))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-repo", action="store_true", help="fail when tests write into the repo"
    )
