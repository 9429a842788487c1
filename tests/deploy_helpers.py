"""Fixtures for plan/apply/state tests: a project in tmp_path and a real loopback emulator.

The project's environment points at ``https://example.invalid`` and is redirected to
the test's own `Emulator` with ``XPDEPLOY_API_URL``, so the real HTTP client talks to
a real socket. The emulator checks the apptoken, so an accepted request proves the
token was sent.

At the end, the helpers of the ledger's own tests (test_ledger.py, test_ledger_lock.py):
events built with ``pending``; their fixtures are in tests/unit/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from xpdeploy.cli import main
from xpdeploy.emulator import Emulator
from xpdeploy.ledger import Event, EventKind, FileLedger, LedgerState, LockInfo, Record

ENV = "staging"
TOKEN = "tok-test-5c9d"
TOKEN_ENV = "XPDEPLOY_APPTOKEN_STAGING"
STATE = "state/staging.jsonl"
NOW = "2030-06-01T00:00:00Z"  # pinned clock; every default spec is scheduled after it
WHEN = "2031-01-01 12:00 UTC"
CAMPAIGNS = ("42", "43")  # the ids the test emulator knows; others are a 400


def spec_text(
    name: str,
    *,
    revision: int = 1,
    campaign: int = 42,
    recipients: Sequence[str] = ("crm-user-1", "crm-user-2"),
    time: str | None = WHEN,
    text: str = "Hello",
) -> str:
    """One spec document; its body depends on every argument."""
    lines = [
        f"name: {name}",
        f"revision: {revision}",
        "execute:",
        f"  id: {campaign}",
        "  target_by: user_id",
        f"  target: {json.dumps(list(recipients))}",
        "  params:",
        f'    external_message_id: "{name}-{{{{ env }}}}"',
        f"    text: {json.dumps(text)}",
    ]
    if time is not None:
        lines.append(f'  time: "{time}"')
    return "\n".join(lines) + "\n"


def project_yaml(
    guards: Mapping[str, Any] | None = None,
    extra_envs: Mapping[str, Any] | None = None,
    api_url: str = "https://example.invalid",
) -> str:
    """``xpdeploy.yaml`` with one real-looking environment (and any extra ones)."""
    staging: dict[str, Any] = {"api_url": api_url, "apptoken_env": TOKEN_ENV, "state": STATE}
    if guards:
        staging["guards"] = dict(guards)
    environments = {ENV: staging, **(extra_envs or {})}
    return (
        "version: 1\ncampaigns: campaigns\n"
        f"environments: {json.dumps(environments)}\n"
        f"default_environment: {ENV}\n"
    )


def _restore_signals() -> Callable[[], None]:
    """apply installs SIGINT/SIGTERM handlers; in-process runs must not leak them."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in saved.items():
            signal.signal(sig, handler)

    return restore


def run(
    *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
) -> Result:
    """``xpdeploy ARGS`` in-process with click's CliRunner; stderr kept apart."""
    restore = _restore_signals()
    try:
        return CliRunner().invoke(main, list(args), env=dict(env or {}), input=input)
    finally:
        restore()


def output(result: Result) -> str:
    """stdout and stderr together, for messages that may go to either."""
    return result.stdout + result.stderr


@dataclass
class Deploy:
    """A project under ``root`` whose environment sends to ``emulator``."""

    root: Path
    emulator: Emulator

    # -- files --------------------------------------------------------------
    def spec_path(self, name: str) -> Path:
        return self.root / "campaigns" / f"{name}.yaml"

    def write_spec(self, name: str, **kwargs: Any) -> Path:
        path = self.spec_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec_text(name, **kwargs), encoding="utf-8")
        return path

    def remove_spec(self, name: str) -> None:
        self.spec_path(name).unlink()

    def write_project(self, **kwargs: Any) -> None:
        (self.root / "xpdeploy.yaml").write_text(project_yaml(**kwargs), encoding="utf-8")

    # -- running ------------------------------------------------------------
    def run(
        self, *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
    ) -> Result:
        result = run(*args, env=env, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"xpdeploy {' '.join(args)} crashed") from result.exception
        return result

    def apply(self, *args: str, **kwargs: Any) -> Result:
        return self.run("apply", "--auto-approve", *args, **kwargs)

    def plan_json(self, *args: str, **kwargs: Any) -> dict[str, Any]:
        result = self.run("plan", "--format", "json", *args, **kwargs)
        assert result.exit_code == 0, output(result)
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def actions(self, *args: str) -> dict[str, str]:
        """``{name: action}`` of the current plan."""
        return {a["name"]: a["action"] for a in self.plan_json(*args)["actions"]}

    # -- looking ------------------------------------------------------------
    @property
    def accepted(self) -> list[dict[str, Any]]:
        return self.emulator.accepted_requests()

    def accepted_names(self) -> list[str]:
        """The spec names of the accepted requests, from their external_message_id."""
        return [body["params"]["external_message_id"].rsplit("-", 1)[0] for body in self.accepted]

    @property
    def ledger_path(self) -> Path:
        return self.root / STATE

    @property
    def lock_path(self) -> Path:
        return self.ledger_path.with_name(self.ledger_path.name + ".lock")

    def lock_path_exists(self) -> bool:
        return self.lock_path.exists()

    def ledger(self) -> FileLedger:
        return FileLedger(self.ledger_path, ENV)

    def state(self) -> LedgerState:
        return self.ledger().read()

    def records(self) -> dict[str, Record]:
        return self.state().records

    def statuses(self) -> dict[str, str]:
        return {name: record.status.value for name, record in self.records().items()}

    def journal(self) -> list[dict[str, Any]]:
        """Every journal line, each of which must be one JSON object ending in a newline."""
        text = self.ledger_path.read_text(encoding="utf-8")
        assert text.endswith("\n"), "the journal's last line is torn"
        lines = text.splitlines()
        parsed = [json.loads(line) for line in lines]
        assert all(isinstance(item, dict) for item in parsed)
        return parsed


def make_project(root: Path, names: Sequence[str], **project_kwargs: Any) -> None:
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    (root / "xpdeploy.yaml").write_text(project_yaml(**project_kwargs), encoding="utf-8")
    for name in names:
        (root / "campaigns" / f"{name}.yaml").write_text(spec_text(name), encoding="utf-8")


@pytest.fixture(name="emulator")
def emulator_fixture() -> Iterator[Emulator]:
    """A token-checking emulator on 127.0.0.1, a free port, for this test only."""
    with Emulator("127.0.0.1", 0, apptoken=TOKEN, campaigns=CAMPAIGNS) as emu:
        yield emu


@pytest.fixture(name="deploy_env")
def deploy_env_fixture(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Emulator:
    """Point xpdeploy at the emulator, with the token set and the clock pinned."""
    monkeypatch.setenv("XPDEPLOY_API_URL", emulator.url)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("XPDEPLOY_NOW", NOW)
    monkeypatch.setenv("NO_COLOR", "1")
    return emulator


@pytest.fixture(name="make_deploy")
def make_deploy_fixture(tmp_path: Path, deploy_env: Emulator) -> Callable[..., Deploy]:
    """``make_deploy(n=3, **project_kwargs)``: a project with specs s01..sNN."""

    def make(n: int = 3, **project_kwargs: Any) -> Deploy:
        make_project(tmp_path, [f"s{i:02d}" for i in range(1, n + 1)], **project_kwargs)
        return Deploy(tmp_path, deploy_env)

    return make


@pytest.fixture(name="deploy")
def deploy_fixture(make_deploy: Callable[..., Deploy]) -> Deploy:
    """Three specs, s01 s02 s03, nothing applied yet."""
    return make_deploy(3)


def python_cli(*args: str) -> list[str]:
    """argv that runs the xpdeploy CLI in a fresh interpreter (the real entry point code)."""
    return [sys.executable, "-c", "from xpdeploy.cli import main; main()", *args]


HOLD_LOCK = """
import sys
from pathlib import Path
from xpdeploy.ledger import FileLedger, LockInfo
ledger = FileLedger(Path(sys.argv[1]), sys.argv[2])
with ledger.lock(LockInfo.current("lock-holder-under-test")):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@contextlib.contextmanager
def lock_held_elsewhere(deploy: Deploy) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the environment's apply lock until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(deploy.ledger_path), ENV],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the ledger on its own (test_ledger.py, test_ledger_lock.py) ----------------

K = EventKind
SHA1, SHA2 = "a" * 64, "b" * 64
INFO = LockInfo("host-test", 4242, "2026-01-01T00:00:00Z", None, "xpdeploy apply")


def pending(name: str = "welcome", revision: int = 1, sha: str = SHA1, at: str = "T1") -> Event:
    return Event(
        K.PENDING, name, revision=revision, body_sha256=sha, campaign_id=7, audience=2, at=at
    )
