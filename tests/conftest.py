"""Suite-wide guards: no network beyond loopback, every test in its own folder."""

from __future__ import annotations

import builtins
import io
import ipaddress
import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# The deploy fixtures (emulator, deploy_env, make_deploy, deploy) for every test module.
pytest_plugins = ["deploy_helpers", "pg_server"]

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


_real_os_open = os.open
_real_open = builtins.open
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ALLOWED = (Path(tempfile.gettempdir()).resolve(), Path(os.devnull))


def _check_write(path: Any) -> None:
    if isinstance(path, int):
        return  # an already-open file descriptor
    target = Path(os.fsdecode(path)).resolve()
    inside = [root for root in _ALLOWED if target == root or root in target.parents]
    # The checkout itself may sit in the temp folder (CI clones there): never in it.
    golden = (
        os.environ.get("XPDEPLOY_UPDATE_GOLDEN") == "1"
        and REPO / "tests" / "golden" in target.parents
    )
    if golden:
        return  # the one sanctioned write into the checkout: refreshing golden files
    if not inside or REPO in target.parents:
        raise PermissionError(f"test tried to write {target}: tests write under tmp_path only")


def _guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
    if flags & _WRITE_FLAGS:
        _check_write(path)
    return _real_os_open(path, flags, *args, **kwargs)


def _guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    if any(flag in mode for flag in "wax+"):
        _check_write(file)
    return _real_open(file, mode, *args, **kwargs)


@pytest.fixture(autouse=True)
def _isolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run in tmp_path, with only loopback reachable, writes only under the temp folder
    (tmp_path is in it), and no token in the environment."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    monkeypatch.setattr(os, "open", _guarded_os_open)
    monkeypatch.setattr(builtins, "open", _guarded_open)
    monkeypatch.setattr(io, "open", _guarded_open)  # pathlib's write_text goes through io
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


@pytest.fixture(name="deadline")
def deadline_fixture() -> Iterator[None]:
    """A hang fails the test instead of stalling the suite (hostile input tests)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("hostile input took more than 20 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
