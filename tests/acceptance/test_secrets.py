"""The apptoken reaches the API and nothing else: no output, file, log or exception."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from deploy_helpers import ENV, NOW, TOKEN_ENV, make_project, output, python_cli, run

from xpdeploy.client import ExecuteClient

SECRET = "tok-SECRET-1f2e3d"
DEADLINE = 30.0


@dataclass
class EmulatorProcess:
    """`xpdeploy emulator` in its own process, checking SECRET, logging to ``log``."""

    proc: subprocess.Popen[str]
    url: str
    log: Path
    banner: str

    def control(self, method: str, path: str, payload: Any = None) -> Any:
        with httpx.Client(timeout=DEADLINE) as client:
            response = client.request(method, self.url + path, json=payload)
        response.raise_for_status()
        return response.json()

    def fault(self, **fault: Any) -> None:
        self.control("POST", "/_emulator/faults", [fault])

    def accepted(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.control("GET", "/_emulator/accepted")["data"]
        return data


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    log = tmp_path / "emulator" / "requests.jsonl"
    proc = subprocess.Popen(
        python_cli("emulator", "--port", "0", "--campaign", "42", "--log", str(log)),
        env={**os.environ, "XPDEPLOY_EMULATOR_APPTOKEN": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    banner = [proc.stdout.readline()]
    assert banner[0].startswith("Xtremepush emulator listening on "), banner
    while banner[-1] and not banner[-1].startswith("Press Ctrl+C"):
        banner.append(proc.stdout.readline())
    emulator = EmulatorProcess(proc, banner[0].split()[-1], log, "".join(banner))
    try:
        yield emulator
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def everything_under(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def exception_text(result: Result) -> str:
    if result.exception is None or isinstance(result.exception, SystemExit):
        return ""
    exc = result.exception
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc)


def test_the_token_appears_nowhere_but_in_the_request(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    emulator_process: EmulatorProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    monkeypatch.setenv("XPDEPLOY_API_URL", emulator_process.url)
    monkeypatch.setenv("XPDEPLOY_NOW", NOW)
    make_project(tmp_path, ["s01", "s02", "s03", "s04"])
    # s02 names a campaign the emulator does not know: a definite 400.
    spec = (tmp_path / "campaigns" / "s02.yaml").read_text(encoding="utf-8")
    (tmp_path / "campaigns" / "s02.yaml").write_text(spec.replace("id: 42", "id: 999"))

    results: list[Result] = []

    def xp(*args: str, code: int = 0) -> Result:
        result = run(*args)
        results.append(result)
        assert result.exit_code == code, output(result) + exception_text(result)
        return result

    xp("lint")
    xp("render")
    xp("render", "--format", "yaml", "--out", "rendered")
    xp("plan", "-o", "plan.json")
    xp("plan", "--format", "json")
    xp("plan", "--format", "markdown")

    # s01: processed, then a 500; s02: rejected; s03, s04: sent.
    emulator_process.fault(status=500, accept=True)
    xp("apply", "plan.json", "--auto-approve", "--parallelism", "1", "--debug", code=1)
    # An API that echoes the token in an error, as text and as JSON, for s02 and s04.
    (tmp_path / "campaigns" / "s02.yaml").write_text(spec.replace("revision: 1", "revision: 2"))
    emulator_process.fault(status=503, body=f"<html>upstream {SECRET} down</html>", times=1)
    emulator_process.fault(
        status=400, body=json.dumps({"success": False, "message": f"bad token {SECRET}"})
    )
    xp("apply", "s02", "--auto-approve", code=1)
    # The failures did happen, with their messages (redacted).
    s02 = json.loads(xp("state", "show", "s02", "--format", "json").stdout)["executions"][0]
    assert s02["status"] == "failed"
    assert "bad token ***" in s02["message"]
    xp("state", "list")
    xp("state", "list", "--format", "json")
    for name in ("s01", "s02", "s03"):
        xp("state", "show", name)
        xp("state", "show", name, "--format", "json")
    xp("state", "resolve", "s01", "--sent")
    xp("plan", "--detailed-exitcode", code=2)  # s02 is sent again
    xp("apply", "--auto-approve", "--debug")
    xp("state", "show", "nope", code=1)  # an error message
    xp("apply", "plan.json", "--auto-approve", code=1)  # stale plan error

    # The requests really carried the token: the emulator answers 401 to anything else.
    accepted = emulator_process.accepted()
    assert [b["params"]["external_message_id"] for b in accepted] == [
        f"{n}-{ENV}" for n in ("s01", "s03", "s04", "s02")
    ]
    assert all(b["apptoken"] == "***" for b in accepted)
    logged = [json.loads(line) for line in emulator_process.log.read_text().splitlines()]
    assert logged == accepted

    for result in results:
        assert SECRET not in result.stdout
        assert SECRET not in result.stderr
        assert SECRET not in exception_text(result)
    files = dict(everything_under(tmp_path))
    assert tmp_path / "plan.json" in files
    assert tmp_path / "state" / "staging.jsonl" in files
    assert emulator_process.log in files
    assert any(p.parent.name == "rendered" for p in files)
    for path, data in files.items():
        assert SECRET.encode() not in data, f"the token leaked into {path}"
    for record in caplog.records:
        assert SECRET not in record.getMessage()

    emulator_process.proc.send_signal(signal.SIGINT)
    out, err = emulator_process.proc.communicate(timeout=DEADLINE)
    assert SECRET not in emulator_process.banner + out + err
    assert "apptoken: checked" in emulator_process.banner


def test_client_repr_and_outcomes_hide_the_token(emulator_process: EmulatorProcess) -> None:
    with ExecuteClient(emulator_process.url, SECRET, timeout=5) as client:
        assert SECRET not in repr(client)
        assert SECRET not in str(vars(client).get("_http"))
        emulator_process.fault(status=401, body=json.dumps({"message": f"token {SECRET} bad"}))
        echoed = client.execute({"id": 42, "target": ["a"]})
        good = client.execute({"id": 42, "target": ["a"]})
    assert echoed.status == "failed"
    assert SECRET not in repr(echoed)
    assert "***" in echoed.message
    assert good.status == "applied"
    assert SECRET not in repr(good)
