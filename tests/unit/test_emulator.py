"""The emulator on a real loopback socket: validation, envelopes, control endpoints, faults."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from xpdeploy import __version__
from xpdeploy import emulator as emulator_module
from xpdeploy.emulator import EXECUTE_PATH, INFO_PATH, Emulator, Fault, serve
from xpdeploy.emulator_http import MAX_BODY_BYTES
from xpdeploy.errors import UserError

TOKEN = "tok-EMU-5ecret-Zq81"  # distinctive, so a leak is easy to grep for
GOOD: dict[str, Any] = {"apptoken": TOKEN, "id": 123, "target_by": "user_id", "target": ["crm-1"]}


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(apptoken=TOKEN, campaigns=[123, "456"], log_path=tmp_path / "log.jsonl") as e:
        yield e


def request(
    emu: Emulator,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    """One request on a fresh connection; returns status, parsed JSON (or text) and response."""
    conn = http.client.HTTPConnection(emu.url.removeprefix("http://"), timeout=5)
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=payload, headers=headers or {})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    try:
        return response.status, json.loads(text), response
    except ValueError:
        return response.status, text, response


def execute(emu: Emulator, body: Any) -> tuple[int, Any]:
    status, data, _ = request(emu, EXECUTE_PATH, body)
    return status, data


def raw_exchange(emu: Emulator, body: dict[str, Any]) -> bytes:
    """Send one execute request on a plain socket; return every byte the server sent back."""
    payload = json.dumps(body).encode()
    host, port = emu.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (EXECUTE_PATH.encode(), len(payload), payload)
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"id": "456"},
        {"target": [123456, "crm-2"]},
        {"target": None, "target_with_params": {"crm-1": {"fname": "Alex"}}, "params": {"a": 1}},
        {"target": None, "broadcast": 1},
        {"target": None, "target_by": None, "conditions": {"operator": "AND"}},
        {"time": "2030-01-01 12:00 UTC"},
        {"time": 1893499200},
        {"messages": {"3": {"push_require_interaction": True}, "7": {}}},
        {"payload_add": [{"key": "deeplink", "value": "app://promo"}]},
        {"retry_for": 2, "retry_for_period": "weeks"},
        {"target_existing_only": 0},
        {"target_by": "email", "push_text": "any campaign-model field passes"},
    ],
)
def test_valid_bodies_are_accepted(emu: Emulator, extra: dict[str, Any]) -> None:
    body = {k: v for k, v in {**GOOD, **extra}.items() if v is not None}
    status, data = execute(emu, body)
    assert (status, data) == (200, {"code": 200, "success": True})
    assert emu.accepted_requests() == [{**body, "apptoken": "***"}]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"apptoken": None}, 400, "Missing apptoken"),
        ({"apptoken": ""}, 400, "Missing apptoken"),
        ({"apptoken": "wrong"}, 401, "Authentication failed"),
        ({"apptoken": 42}, 401, "Authentication failed"),
        ({"id": None}, 400, "id: a campaign id is required"),
        ({"id": True}, 400, "id: a campaign id is required"),
        ({"id": ""}, 400, "id: a campaign id is required"),
        ({"id": 999}, 400, "Campaign not found"),
        ({"target_with_params": {"a": {}}}, 400, "exactly one"),
        ({"target": None}, 400, "A target must be provided"),
        ({"target": []}, 400, "target: must be a non-empty list"),
        ({"target": "crm-1"}, 400, "target: must be a non-empty list"),
        ({"target": [{"id": 1}]}, 400, "target: must be a non-empty list"),
        ({"target": [""]}, 400, "target: must be a non-empty list"),
        ({"target": None, "target_with_params": {}}, 400, "target_with_params: must be"),
        ({"target": None, "target_with_params": {"a": 1}}, 400, "target_with_params: must"),
        ({"target_by": "phone"}, 400, "target_by: must be one of"),
        ({"time": "2030-01-01T12:00:00Z"}, 400, "time: use"),
        ({"time": "2030-13-01 12:00 UTC"}, 400, "time: use"),
        ({"time": "2030-01-01 12:00"}, 400, "time: use"),
        ({"time": "\u0662\u0660\u0663\u0660-01-01 12:00 UTC"}, 400, "time: use"),
        ({"time": True}, 400, "time: use"),
        ({"time": -5}, 400, "time: use"),
        ({"messages": {"4": {}}}, 400, "messages: must map message types (1, 2, 3, 6, 7, 8, 9)"),
        ({"messages": {"2": "hi"}}, 400, "messages: must map"),
        ({"messages": ["2"]}, 400, "messages: must map"),
        ({"payload_add": {"key": "a", "value": 1}}, 400, "payload_add"),
        ({"payload_add": [{"key": "a"}]}, 400, "payload_add"),
        ({"payload_add": [{"key": "", "value": 1}]}, 400, "payload_add"),
        ({"retry_for": 2}, 400, "must be given together"),
        ({"retry_for_period": "days"}, 400, "must be given together"),
        ({"retry_for": 0, "retry_for_period": "days"}, 400, "retry_for: must be a positive"),
        ({"retry_for": 1, "retry_for_period": "months"}, 400, "retry_for_period: must be"),
        ({"params": ["a"]}, 400, "params: must be an object"),
        ({"target_existing_only": 2}, 400, "target_existing_only: must be 0 or 1"),
        ({"target_existing_only": "0"}, 400, "target_existing_only: must be 0 or 1"),
    ],
)
def test_invalid_bodies_are_rejected(
    emu: Emulator, change: dict[str, Any], status: int, message: str
) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    code, data = execute(emu, body)
    assert code == status == data["code"]
    assert data["success"] is False
    assert message in data["message"]
    assert data["errors"]
    assert emu.accepted_requests() == []


def test_every_broken_rule_is_listed(emu: Emulator) -> None:
    status, data = execute(emu, {**GOOD, "target_by": "x", "time": "soon", "params": 1})
    assert status == 400
    assert len(data["errors"]) == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_unreadable_bodies_are_400(emu: Emulator, raw: bytes, message: str) -> None:
    status, data, _ = request(emu, EXECUTE_PATH, raw=raw)
    assert (status, data["code"], data["success"]) == (400, 400, False)
    assert message in data["message"]


def test_without_configured_token_or_campaigns_anything_plausible_passes() -> None:
    with Emulator() as emu:
        assert execute(emu, {"id": 77, "target": ["a"]})[0] == 200
        assert execute(emu, {**GOOD, "id": "whatever", "apptoken": "any"})[0] == 200
        assert [r.get("apptoken") for r in emu.accepted_requests()] == [None, "***"]


def test_paths_and_methods(emu: Emulator) -> None:
    status, data, _ = request(emu, "/api/external/list/campaign", {})
    assert (status, data["code"], data["success"]) == (404, 404, False)
    assert request(emu, "/elsewhere", {})[0] == 404
    status, data, _ = request(emu, EXECUTE_PATH, method="GET")
    assert (status, data["code"]) == (405, 405)
    assert request(emu, "/api/external/nothing/here", method="DELETE")[0] == 405
    status, data, _ = request(emu, EXECUTE_PATH, method="HEAD")
    assert (status, data) == (405, "")
    assert request(emu, EXECUTE_PATH + "?x=1", GOOD)[0] == 200
    status, data, _ = request(emu, EXECUTE_PATH, method="BREW")  # http.server's own error
    assert (status, data["code"], data["success"]) == (501, 501, False)


def test_info_campaign(emu: Emulator) -> None:
    status, data, _ = request(emu, INFO_PATH, {"apptoken": TOKEN, "id": 456})
    assert status == 200
    assert data == {"code": 200, "success": True, "model": {"id": 456, "active": 1, "messages": {}}}
    status, data, _ = request(emu, INFO_PATH, {"apptoken": TOKEN, "id": 1})
    assert (status, data["message"]) == (400, "Campaign not found")
    assert request(emu, INFO_PATH, {"id": 456})[0] == 400
    assert request(emu, INFO_PATH, {"apptoken": "bad", "id": 456})[0] == 401
    assert emu.accepted_requests() == []


def test_accepted_requests_and_log_mask_the_token(emu: Emulator) -> None:
    echoed = {**GOOD, "params": {"note": f"token {TOKEN} pasted by mistake"}}
    assert execute(emu, echoed)[0] == 200
    assert execute(emu, {**GOOD, "id": "456"})[0] == 200
    assert execute(emu, {**GOOD, "id": 1})[0] == 400  # rejected: not logged
    accepted = emu.accepted_requests()
    assert [r["id"] for r in accepted] == [123, "456"]
    assert accepted[0]["params"]["note"] == "token *** pasted by mistake"
    assert emu.log_path is not None
    text = emu.log_path.read_text()
    assert TOKEN not in text
    assert [json.loads(line) for line in text.splitlines()] == accepted
    assert TOKEN not in repr(emu)


def test_accepted_requests_are_copies(emu: Emulator) -> None:
    execute(emu, GOOD)
    emu.accepted_requests()[0]["id"] = "changed"
    assert emu.accepted[0]["id"] == 123


def test_control_endpoints(emu: Emulator) -> None:
    faults = [asdict(Fault(status=503, retry_after=2)), {"status": 429, "times": 2}]
    status, data, _ = request(emu, "/_emulator/faults", faults)
    assert (status, data["message"]) == (200, "Faults queued for the next 3 execute request(s)")
    status, data, response = request(emu, EXECUTE_PATH, GOOD)
    assert (status, data["code"], response.getheader("Retry-After")) == (503, 503, "2")
    assert [execute(emu, GOOD)[0] for _ in range(3)] == [429, 429, 200]
    status, data, _ = request(emu, "/_emulator/accepted", method="GET")
    assert status == 200
    assert data["data"] == [{**GOOD, "apptoken": "***"}]
    assert request(emu, "/_emulator/faults", [{"status": 500}])[0] == 200
    assert request(emu, "/_emulator/reset", {})[0] == 200
    assert emu.accepted_requests() == []
    assert execute(emu, GOOD)[0] == 200  # the queued fault was cleared too
    assert request(emu, "/_emulator/accepted", method="POST")[0] == 405


@pytest.mark.parametrize(
    "faults",
    [
        [{"status": 1000}],
        [{"drop": "sideways"}],
        [{"colour": "red"}],
        ["x"],
        {"times": 0},
        {"times": 10**12},  # a queue of a million million faults: refused, not a MemoryError
    ],
)
def test_control_rejects_bad_faults(emu: Emulator, faults: Any) -> None:
    status, data, _ = request(emu, "/_emulator/faults", faults)
    assert status == 400
    assert data["message"].startswith("Invalid fault")
    for raw in (b"{oops", b"[" * 100_000):  # deep nesting too: a 400, not a dropped connection
        assert request(emu, "/_emulator/faults", raw=raw)[0] == 400
        assert request(emu, EXECUTE_PATH, raw=raw)[0] == 400
    assert execute(emu, GOOD)[0] == 200


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="drop"):
        Fault(drop="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault(times=0)
    with pytest.raises(ValueError, match="delay"):
        Fault(delay=-1)
    with pytest.raises(ValueError, match="retry_after"):
        Fault(retry_after=float("inf"))


def test_status_fault_is_not_accepted_and_consumed_in_order(emu: Emulator) -> None:
    emu.inject(Fault(status=503), Fault(status=400, times=2))
    assert [execute(emu, GOOD)[0] for _ in range(4)] == [503, 400, 400, 200]
    assert len(emu.accepted_requests()) == 1


def test_status_fault_with_accept_records_the_request(emu: Emulator) -> None:
    emu.inject(Fault(status=500, accept=True))
    status, data = execute(emu, GOOD)
    assert (status, data["code"], data["success"]) == (500, 500, False)
    assert len(emu.accepted_requests()) == 1


def test_raw_body_fault(emu: Emulator) -> None:
    emu.inject(Fault(body="<html>oops"), Fault(body="<html>bad gateway", status=502, accept=True))
    status, text, response = request(emu, EXECUTE_PATH, GOOD)
    assert (status, text) == (200, "<html>oops")
    assert response.getheader("Content-Type", "").startswith("text/html")
    assert response.getheader("Server") == f"xpdeploy-emulator/{__version__}"
    assert emu.accepted_requests() == []
    assert execute(emu, GOOD) == (502, "<html>bad gateway")
    assert len(emu.accepted_requests()) == 1


def test_drop_after_records_then_closes_without_a_byte(emu: Emulator) -> None:
    emu.inject(Fault(drop="after"))
    assert raw_exchange(emu, GOOD) == b""
    assert len(emu.accepted_requests()) == 1
    assert raw_exchange(emu, GOOD).startswith(b"HTTP/1.1 200 ")


def test_drop_before_closes_without_recording(emu: Emulator) -> None:
    emu.inject(Fault(drop="before"))
    assert raw_exchange(emu, GOOD) == b""
    assert emu.accepted_requests() == []


def test_delay_fault_still_answers(emu: Emulator) -> None:
    emu.inject(Fault(delay=0.05))
    assert execute(emu, GOOD)[0] == 200
    assert len(emu.accepted_requests()) == 1


def test_keep_alive_serves_several_requests_on_one_connection(emu: Emulator) -> None:
    conn = http.client.HTTPConnection(emu.url.removeprefix("http://"), timeout=5)
    statuses, sockets = [], set()
    for body in (GOOD, {**GOOD, "id": 9}, GOOD):
        conn.request("POST", EXECUTE_PATH, body=json.dumps(body))
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        sockets.add(id(conn.sock))
    conn.close()
    assert statuses == [200, 400, 200]
    assert len(sockets) == 1


def test_oversized_body_is_refused_unread(emu: Emulator) -> None:
    conn = http.client.HTTPConnection(emu.url.removeprefix("http://"), timeout=5)
    conn.putrequest("POST", EXECUTE_PATH)
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    assert (response.status, data["code"]) == (413, 413)
    assert response.getheader("Connection") == "close"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Length": "-1"}, 400), ({"Content-Length": "ten"}, 400)],
)
def test_bad_content_length(emu: Emulator, headers: dict[str, str], status: int) -> None:
    conn = http.client.HTTPConnection(emu.url.removeprefix("http://"), timeout=5)
    conn.putrequest("POST", EXECUTE_PATH, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == status
    conn.close()


def test_chunked_body_is_refused(emu: Emulator) -> None:
    conn = http.client.HTTPConnection(emu.url.removeprefix("http://"), timeout=5)
    conn.putrequest("POST", EXECUTE_PATH)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()  # the server answers before any chunk is sent
    response = conn.getresponse()
    assert response.status == 411
    conn.close()
    assert emu.accepted_requests() == []


def test_nothing_is_printed(emu: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    execute(emu, GOOD)
    execute(emu, {"apptoken": TOKEN})
    emu.inject(Fault(drop="after"))
    raw_exchange(emu, GOOD)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_port_in_use_is_a_user_error(emu: Emulator) -> None:
    port = int(emu.url.rsplit(":", 1)[1])
    with pytest.raises(UserError, match="cannot listen"):
        Emulator(port=port).start()


def test_url_needs_a_running_emulator() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = Emulator().url


def test_serve_runs_until_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    seen: list[tuple[int, Any]] = []

    def interrupt_after_one_request() -> None:
        url = lines[0].rsplit(" ", 1)[1]
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
        conn.request("POST", EXECUTE_PATH, body=json.dumps({**GOOD, "id": "42"}))
        response = conn.getresponse()
        seen.append((response.status, json.loads(response.read())))
        conn.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(emulator_module, "_wait_forever", interrupt_after_one_request)
    log = tmp_path / "sub" / "emu.jsonl"
    serve("127.0.0.1", 0, apptoken=TOKEN, campaigns=["42"], log_path=log, echo=lines.append)
    assert seen == [(200, {"code": 200, "success": True})]
    assert lines[0].startswith("Xtremepush emulator listening on http://127.0.0.1:")
    assert "execute: accepted, 200" in lines
    assert lines[-1] == "Emulator stopped."
    assert TOKEN not in "\n".join(lines)
    assert json.loads(log.read_text())["apptoken"] == "***"
