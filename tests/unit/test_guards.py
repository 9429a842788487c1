"""The suite's own guards (tests/conftest.py) really refuse what they should."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def test_writes_outside_the_temp_folder_are_refused() -> None:
    stray = REPO / "stray-test-file.txt"
    with pytest.raises(PermissionError, match="tests write under tmp_path only"):
        open(stray, "w")  # noqa: SIM115
    with pytest.raises(PermissionError):
        stray.write_text("x")
    with pytest.raises(PermissionError):
        os.open(stray, os.O_WRONLY | os.O_CREAT)
    assert not stray.exists()


def test_writes_in_tmp_path_and_reads_anywhere_are_allowed(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("fine")
    assert (tmp_path / "ok.txt").read_text() == "fine"
    assert (REPO / "pyproject.toml").read_text().startswith("[build-system]")


def test_only_loopback_is_reachable() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match="only loopback"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed
