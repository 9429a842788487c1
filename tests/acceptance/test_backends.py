"""Shared state backends through the CLI: PostgreSQL on a real server, git on a real
bare repository. Several checkouts (runners) share one ledger; kills, lost
connections and rejected pushes never lead to a second send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_helpers import ENV, TOKEN, Deploy, make_project, output, python_cli, run
from pg_server import PASSWORD, PgServer
from test_crash import DEADLINE, wait_for

from xpdeploy.emulator import Emulator, Fault
from xpdeploy.ledger import Ledger, open_ledger

STATE_VARIABLE = "XPDEPLOY_TEST_STATE"
GIT = [
    "git",
    "-c",
    "user.name=t",
    "-c",
    "user.email=t@example.invalid",
    "-c",
    "init.defaultBranch=main",
]


@dataclass
class Backend:
    """A shared ledger and a way to make checkouts (project folders) that use it."""

    kind: str
    state: str
    base: Path
    emulator: Emulator
    remote: Path | None = None

    def checkout(self, name: str, n: int = 3) -> Deploy:
        root = self.base / name
        if self.remote is not None:
            subprocess.run([*GIT, "clone", "-q", str(self.remote), str(root)], check=True)
        root.mkdir(exist_ok=True)
        make_project(root, [f"s{i:02d}" for i in range(1, n + 1)])
        text = (root / "xpdeploy.yaml").read_text()
        text = text.replace('"state": "state/staging.jsonl"', f'"state_env": "{STATE_VARIABLE}"')
        (root / "xpdeploy.yaml").write_text(text)
        return Deploy(root, self.emulator)

    def ledger(self, deploy: Deploy) -> Ledger:
        return open_ledger(self.state, ENV, deploy.root)

    def statuses(self, deploy: Deploy) -> dict[str, str]:
        return {n: r.status.value for n, r in self.ledger(deploy).read().records.items()}


@pytest.fixture(params=["postgresql", "git"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    deploy_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Backend:
    monkeypatch.setenv("XPDEPLOY_LEASE_SECONDS", "3")
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv(STATE_VARIABLE, url)
        return Backend("postgresql", url, tmp_path, deploy_env)
    remote = tmp_path / "remote.git"
    subprocess.run([*GIT, "init", "-q", "--bare", str(remote)], check=True)
    seed = tmp_path / "seed"
    subprocess.run([*GIT, "clone", "-q", str(remote), str(seed)], check=True)
    (seed / "README").write_text("campaigns\n")
    subprocess.run([*GIT, "add", "README"], cwd=seed, check=True)
    subprocess.run([*GIT, "commit", "-qm", "seed"], cwd=seed, check=True)
    subprocess.run([*GIT, "push", "-q", "origin", "HEAD:main"], cwd=seed, check=True)
    state = "git:xpdeploy-state:staging.jsonl"
    monkeypatch.setenv(STATE_VARIABLE, state)
    return Backend("git", state, tmp_path, deploy_env, remote)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEADLINE)


def start(
    deploy: Deploy, procs: list[subprocess.Popen[str]], parallelism: int = 1
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        python_cli("apply", "--auto-approve", "--parallelism", str(parallelism)),
        cwd=deploy.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def in_(deploy: Deploy, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_cli(*args), cwd=deploy.root, capture_output=True, text=True, timeout=60
    )


def no_double_sends(emulator: Emulator) -> list[str]:
    names = [
        b["params"]["external_message_id"].rsplit("-", 1)[0] for b in emulator.accepted_requests()
    ]
    assert len(names) == len(set(names)), sorted(names)
    return names


def test_two_checkouts_share_one_ledger(backend: Backend) -> None:
    first, second = backend.checkout("a"), backend.checkout("b")
    done = in_(first, "apply", "--auto-approve")
    assert done.returncode == 0, done.stdout + done.stderr
    assert backend.statuses(first) == {"s01": "applied", "s02": "applied", "s03": "applied"}
    again = in_(second, "apply", "--auto-approve")  # another runner: nothing to send
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Plan: 0 to send, 3 unchanged" in again.stdout
    assert sorted(no_double_sends(backend.emulator)) == ["s01", "s02", "s03"]
    listed = in_(second, "state", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["serial"] == 6
    for text in (done.stdout, done.stderr, again.stdout, listed.stdout):
        assert TOKEN not in text and PASSWORD not in text


def test_two_applies_at_once_one_runs_the_other_names_the_holder(
    backend: Backend, procs: list[subprocess.Popen[str]]
) -> None:
    first, second = backend.checkout("a"), backend.checkout("b")
    backend.emulator.inject(Fault(delay=2, times=3))
    one, two = start(first, procs), start(second, procs)
    began = time.monotonic()
    ended: dict[int, float] = {}
    while len(ended) < 2 and time.monotonic() - began < DEADLINE:
        for proc in (one, two):
            if proc.pid not in ended and proc.poll() is not None:
                ended[proc.pid] = time.monotonic() - began
        time.sleep(0.02)
    results = {}
    for name, proc in (("one", one), ("two", two)):
        out, err = proc.communicate(timeout=DEADLINE)
        results[name] = (proc.returncode, out, err, ended[proc.pid])
    codes = sorted(code for code, *_ in results.values())
    assert codes == [0, 1], results
    loser = next(r for r in results.values() if r[0] == 1)
    assert "locked by pid" in loser[2] and "xpdeploy apply" in loser[2], loser
    assert loser[3] < 5, loser  # refused at once, not after waiting for the holder
    assert sorted(no_double_sends(backend.emulator)) == ["s01", "s02", "s03"]


def test_kill_9_repeatedly_then_reapply_sends_each_once(
    backend: Backend, procs: list[subprocess.Popen[str]]
) -> None:
    deploy = backend.checkout("a", n=8)
    for _ in range(2):
        backend.emulator.inject(Fault(delay=30, times=2))  # both workers hang after acceptance
        before = len(backend.emulator.accepted_requests())
        proc = start(deploy, procs, parallelism=2)
        wait_for(lambda b=before: len(backend.emulator.accepted_requests()) >= b + 2, "2 requests")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        unresolved = [n for n, s in backend.statuses(deploy).items() if s == "pending"]
        assert len(unresolved) == 2  # at most --parallelism per kill
        for name in unresolved:  # a person checks what happened, then says so
            sent = name in no_double_sends(backend.emulator)
            verdict = "--sent" if sent else "--not-sent"
            wait_for(
                lambda n=name, v=verdict: in_(deploy, "state", "resolve", n, v).returncode == 0,
                "the killed apply's lease to lapse",
            )
    final = in_(deploy, "apply", "--auto-approve")
    assert final.returncode == 0, final.stdout + final.stderr
    assert sorted(no_double_sends(backend.emulator)) == [f"s0{i}" for i in range(1, 9)]
    assert set(backend.statuses(deploy).values()) == {"applied"}


def test_lost_store_mid_apply_stops_sending_and_loses_nothing(
    backend: Backend, procs: list[subprocess.Popen[str]], request: pytest.FixtureRequest
) -> None:
    deploy = backend.checkout("a", n=4)
    backend.emulator.inject(Fault(delay=2))
    proc = start(deploy, procs)
    wait_for(lambda: backend.emulator.accepted_requests() or proc.poll() is not None, "s01")
    if backend.kind == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        database = backend.state.rsplit("/", 1)[1]
        server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND application_name = 'xpdeploy'"
        )
    else:  # another writer pushes to the state branch: this apply's next push is refused
        other = backend.base / "other"
        subprocess.run(
            [*GIT, "clone", "-q", "-b", "xpdeploy-state", str(backend.remote), str(other)],
            check=True,
        )
        (other / "intruder").write_text("x\n")
        subprocess.run([*GIT, "add", "intruder"], cwd=other, check=True)
        subprocess.run([*GIT, "commit", "-qm", "intruder"], cwd=other, check=True)
        subprocess.run([*GIT, "push", "-q", "origin", "HEAD:xpdeploy-state"], cwd=other, check=True)
    out, err = proc.communicate(timeout=DEADLINE)
    sent = no_double_sends(backend.emulator)
    assert proc.returncode == 1, out + err
    assert "stopped sending" in err
    assert sent == ["s01"]
    if backend.kind == "postgresql":  # the outcome was written on a new connection
        assert backend.statuses(deploy)["s01"] == "applied"
    else:  # the rejected push: the outcome is shown, for a person to record
        assert "state resolve s01 --sent -e staging" in err
        wait_for(
            lambda: in_(deploy, "state", "resolve", "s01", "--sent").returncode == 0,
            "the stopped apply's lease to lapse",
        )
    wait_for(lambda: in_(deploy, "apply", "--auto-approve").returncode == 0, "a re-run to finish")
    assert sorted(no_double_sends(backend.emulator)) == ["s01", "s02", "s03", "s04"]


def test_migrate_file_to_postgresql_to_git_to_file_keeps_every_event(
    tmp_path: Path, deploy_env: Emulator, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(tmp_path, ["s01", "s02"])
    deploy = Deploy(tmp_path, deploy_env)
    assert deploy.apply().exit_code == 0
    assert deploy.run("state", "resolve", "s01", "--sent").exit_code == 1  # not pending: refused
    original = deploy.ledger().history()
    remote = tmp_path / "remote.git"
    subprocess.run([*GIT, "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run([*GIT, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "remote", "add", "origin", str(remote)], cwd=tmp_path, check=True)
    project = tmp_path / "xpdeploy.yaml"
    chain = [pg_url, "git:xpdeploy-state:staging.jsonl", "state/back.jsonl"]
    current = "state/staging.jsonl"
    for target in chain:
        moved = deploy.run("state", "migrate", "--to", target)
        assert moved.exit_code == 0, output(moved)
        assert PASSWORD not in output(moved)
        again = deploy.run("state", "migrate", "--to", target)
        assert again.exit_code == 1 and "empty" in output(again)
        project.write_text(
            project.read_text().replace(f'"state": "{current}"', f'"state": "{target}"')
        )
        current = target
        copied = open_ledger(target, ENV, tmp_path).history()
        assert copied.lineage == original.lineage
        assert [e.to_dict() for e in copied.events] == [e.to_dict() for e in original.events]
        assert deploy.actions() == {"s01": "unchanged", "s02": "unchanged"}
    exported = deploy.run("state", "export")
    assert exported.exit_code == 0
    assert (
        exported.stdout.splitlines()[1:]
        == (tmp_path / "state/staging.jsonl").read_text().splitlines()[1:]
    )


def test_a_read_only_role_can_plan(backend: Backend, request: pytest.FixtureRequest) -> None:
    if backend.kind != "postgresql":
        pytest.skip("a git remote has no roles; plan needs only a fetch")
    deploy = backend.checkout("a")
    assert in_(deploy, "apply", "--auto-approve").returncode == 0
    server: PgServer = request.getfixturevalue("pg_server")
    database = backend.state.rsplit("/", 1)[1]
    server.admin(
        "DO $$ BEGIN CREATE ROLE reader LOGIN PASSWORD 'r-pw-99'; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    server.admin(
        "GRANT USAGE ON SCHEMA xpdeploy TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA xpdeploy TO reader",
        database,
    )
    reader = f"postgresql://reader@{server.host}:{server.port}/{database}"
    planned = subprocess.run(
        python_cli("plan"), cwd=deploy.root, capture_output=True, text=True,
        env={**os.environ, STATE_VARIABLE: reader, "PGPASSWORD": "r-pw-99"},
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "0 to send, 3 unchanged" in planned.stdout
    refused = subprocess.run(
        python_cli("state", "forget", "s01"), cwd=deploy.root, capture_output=True, text=True,
        env={**os.environ, STATE_VARIABLE: reader, "PGPASSWORD": "r-pw-99"},
    )  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "r-pw-99" not in refused.stderr + refused.stdout


def test_a_password_in_the_project_file_is_a_lint_error(
    tmp_path: Path, deploy_env: Emulator
) -> None:
    make_project(tmp_path, ["s01"])
    project = tmp_path / "xpdeploy.yaml"
    secret = "postgresql://ci:hunter2-pw@db.internal/xp"
    project.write_text(project.read_text().replace('"state/staging.jsonl"', json.dumps(secret)))
    result = run("lint")
    assert result.exit_code == 1
    assert "secret-in-file" in output(result)
    assert "hunter2-pw" not in output(result)


def test_unreachable_database_is_a_clear_error(
    tmp_path: Path, deploy_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(tmp_path, ["s01"])
    project = tmp_path / "xpdeploy.yaml"
    project.write_text(
        project.read_text().replace(
            '"state": "state/staging.jsonl"', f'"state_env": "{STATE_VARIABLE}"'
        )
    )
    monkeypatch.setenv(STATE_VARIABLE, "postgresql://ci:pw-never-shown@127.0.0.1:1/xp")
    result = run("plan")
    assert result.exit_code == 1
    assert "cannot reach the ledger database" in result.stderr
    assert "pw-never-shown" not in output(result)
    assert isinstance(result.exception, SystemExit)
