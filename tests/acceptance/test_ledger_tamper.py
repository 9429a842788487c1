"""The file ledger cannot be fooled: files deleted, replaced or emptied under it, and
replies it cannot write as they are, never lead to a second send or a lost outcome."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from deploy_helpers import Deploy, output, python_cli
from test_crash import DEADLINE, wait_for

from xpdeploy.emulator import Fault


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEADLINE)


def start(deploy: Deploy, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        python_cli("apply", "--auto-approve", "--parallelism", "1"),
        cwd=deploy.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def no_double_sends(deploy: Deploy) -> None:
    names = deploy.accepted_names()
    assert len(names) == len(set(names)), names


def test_lock_file_deleted_mid_apply_stops_it_and_a_second_apply_is_refused(
    deploy: Deploy, procs: list[subprocess.Popen[str]]
) -> None:
    deploy.emulator.inject(Fault(delay=3))  # s01 is accepted, its answer takes a while
    first = start(deploy, procs)
    wait_for(lambda: deploy.accepted or first.poll() is not None, "the first request")
    deploy.lock_path.unlink()  # git clean -fdx, rm

    second = deploy.apply()
    assert second.exit_code == 1, output(second)
    assert "holds the ledger file itself" in second.stderr

    stdout, stderr = first.communicate(timeout=DEADLINE)
    assert first.returncode == 1, stdout + stderr
    assert "lock file" in stderr and "stopped sending" in stderr
    assert deploy.statuses() == {"s01": "applied"}  # recorded; s02, s03 never started
    no_double_sends(deploy)

    final = deploy.apply()
    assert final.exit_code == 0, output(final)
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03"]
    no_double_sends(deploy)


def test_ledger_replaced_mid_apply_is_put_back_and_sending_stops(
    deploy: Deploy, procs: list[subprocess.Popen[str]]
) -> None:
    assert deploy.apply("s01").exit_code == 0
    older = deploy.root / "older.jsonl"
    shutil.copy(deploy.ledger_path, older)  # what `git checkout` / `stash` would bring back
    deploy.emulator.inject(Fault(delay=3))
    first = start(deploy, procs)
    wait_for(lambda: len(deploy.accepted) >= 2 or first.poll() is not None, "s02's request")
    os.replace(older, deploy.ledger_path)

    stdout, stderr = first.communicate(timeout=DEADLINE)
    assert first.returncode == 1, stdout + stderr
    assert "replaced" in stderr and "put back" in stderr
    assert deploy.statuses() == {"s01": "applied", "s02": "applied"}

    final = deploy.apply()
    assert final.exit_code == 0, output(final)
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03"]
    no_double_sends(deploy)


def test_ledger_replaced_by_other_content_goes_to_a_rescue_file_that_blocks_apply(
    deploy: Deploy, procs: list[subprocess.Popen[str]]
) -> None:
    assert deploy.apply("s01").exit_code == 0
    header = deploy.ledger_path.read_bytes().split(b"\n")[0]
    other = deploy.root / "other.jsonl"
    other.write_bytes(header + b"\n" + deploy.ledger_path.read_bytes().split(b"\n")[1] + b" \n")
    deploy.emulator.inject(Fault(delay=3))
    first = start(deploy, procs)
    wait_for(lambda: len(deploy.accepted) >= 2 or first.poll() is not None, "s02's request")
    os.replace(other, deploy.ledger_path)

    stdout, stderr = first.communicate(timeout=DEADLINE)
    assert first.returncode == 1, stdout + stderr
    rescued = deploy.ledger_path.with_name(deploy.ledger_path.name + ".rescued")
    assert rescued.is_file()
    kinds = [json.loads(line)["kind"] for line in rescued.read_text().splitlines()[1:]]
    assert kinds[-2:] == ["pending", "applied"]  # s02's send is not lost

    blocked = deploy.apply()
    assert blocked.exit_code == 1
    assert ".rescued" in blocked.stderr and "merge" in blocked.stderr
    assert sorted(deploy.accepted_names()) == ["s01", "s02"]


@pytest.mark.parametrize(
    "content",
    [b"", b"  \n\n\t\n", "header-only"],
    ids=["empty", "whitespace", "header-only"],
)
def test_emptied_ledger_is_an_error_never_new(deploy: Deploy, content: object) -> None:
    assert deploy.apply().exit_code == 0
    if content == "header-only":
        content = deploy.ledger_path.read_bytes().split(b"\n")[0] + b"\n"
    assert isinstance(content, bytes)
    deploy.ledger_path.write_bytes(content)
    for command in (("plan",), ("apply", "--auto-approve")):
        result = deploy.run(*command)
        assert result.exit_code == 1, output(result)
        assert "restore it from git" in result.stderr
        assert "staging.jsonl" in result.stderr
    assert len(deploy.accepted) == 3


def test_missing_final_newline_after_an_edit_keeps_the_last_event(deploy: Deploy) -> None:
    assert deploy.apply().exit_code == 0
    deploy.ledger_path.write_bytes(deploy.ledger_path.read_bytes().rstrip(b"\n"))
    assert deploy.actions() == {"s01": "unchanged", "s02": "unchanged", "s03": "unchanged"}
    deploy.write_spec("s04")
    assert deploy.apply().exit_code == 0
    assert sorted(deploy.accepted_names()) == ["s01", "s02", "s03", "s04"]
    lines = deploy.ledger_path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the newline was put back, not glued


def test_ledger_committed_in_git_but_missing_is_an_error(deploy: Deploy) -> None:
    assert deploy.apply().exit_code == 0
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=deploy.root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=deploy.root, check=True)
    subprocess.run([*git, "commit", "-qm", "state"], cwd=deploy.root, check=True)
    deploy.ledger_path.unlink()
    result = deploy.apply()
    assert result.exit_code == 1, output(result)
    assert "committed in git" in result.stderr
    assert len(deploy.accepted) == 3


@pytest.mark.parametrize(
    ("body", "seen"),
    [
        ('{"success": true, "value": NaN}', "NaN"),
        ('{"success": true, "value": Infinity}', "Infinity"),
        ('{"success": true, "value": "\\ud800"}', "\\ud800"),
        ('{"success": true, "deep": ' + "[" * 1000 + "]" * 1000 + "}", None),
        ('{"success": true, "big": "' + "x" * 10_000_000 + '"}', "bytes of JSON"),
    ],
    ids=["nan", "infinity", "lone-surrogate", "deep", "10MB"],
)
def test_any_reply_is_recorded_and_reads_back(deploy: Deploy, body: str, seen: str | None) -> None:
    deploy.emulator.inject(Fault(status=200, body=body, accept=True, times=3))
    result = deploy.apply()
    statuses = deploy.statuses()
    assert set(statuses) == {"s01", "s02", "s03"}, output(result)
    assert "pending" not in statuses.values()
    shown = deploy.run("state", "show", "s01")
    assert shown.exit_code == 0, output(shown)
    if seen:
        assert seen in shown.stdout
    listed = deploy.run("state", "list", "--format", "json")
    assert listed.exit_code == 0, output(listed)
    again = deploy.apply()
    assert len(deploy.accepted) == 3, output(again)  # nothing re-sent


def test_lone_rescue_file_blocks_plan_too(deploy: Deploy) -> None:
    assert deploy.apply().exit_code == 0
    rescued = deploy.ledger_path.with_name(deploy.ledger_path.name + ".rescued")
    rescued.write_bytes(deploy.ledger_path.read_bytes())
    result = deploy.run("plan")
    assert result.exit_code == 1
    assert "rescued" in result.stderr
