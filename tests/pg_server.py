"""A real, throw-away PostgreSQL server for the state-backend tests.

Started once per test session from the machine's server binaries (initdb refuses to
run as root, so as the ``postgres`` or ``nobody`` user then), on a free loopback port
with password authentication, and stopped at the end. Without server binaries the
tests that need it skip, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pg-secret-31f7"
USER = "xpdeploy"


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    bin: Path
    socket_dir: Path

    def url(self, database: str) -> str:
        """A URL without the password: libpq finds it in PGPASSWORD."""
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={
                **os.environ,
                "PGPASSWORD": PASSWORD,
                "PGHOST": self.host,
                "PGPORT": str(self.port),
                "PGUSER": USER,
                "PGDATABASE": database,
            },
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name}")
        return name


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_user() -> tuple[list[str], str | None]:
    """A command prefix that drops root (initdb and postgres refuse it)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return [
            "setpriv",
            f"--reuid={name}",
            f"--regid={pwd.getpwnam(name).pw_gid}",
            "--clear-groups",
            "--",
        ], name
    raise RuntimeError("running as root with no unprivileged user to run PostgreSQL as")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    binaries = _binaries()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no PostgreSQL server binaries (initdb) were found")
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    with running_server(binaries) as server:
        yield server


@contextlib.contextmanager
def running_server(binaries: Path) -> Iterator[PgServer]:
    """A throw-away cluster (also used by bench/backends.py)."""
    prefix, user = _as_user()
    base = Path(tempfile.mkdtemp(prefix="xpdeploy-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if user:
        info = pwd.getpwnam(user)
        for path in (base, sockets, pwfile):
            os.chown(path, info.pw_uid, info.pw_gid)
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(
        [
            *prefix,
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        env=env,
        check=True,
        capture_output=True,
        cwd=base,
    )
    port = _free_port()
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    subprocess.run(
        [
            *prefix,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "-l",
            str(base / "log"),
            "start",
        ],
        env=env,
        check=True,
        capture_output=True,
        cwd=base,
    )
    server = PgServer("127.0.0.1", port, binaries, sockets)
    try:
        yield server
    finally:
        subprocess.run(
            [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            env=env,
            check=False,
            capture_output=True,
            cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database's URL; the password is in PGPASSWORD, as a CI secret would be."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    return pg_server.url(pg_server.new_database())
