"""The execute client against the emulator on a real loopback socket: exactly-once semantics."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from xpdeploy import __version__
from xpdeploy.client import ExecuteClient, Outcome, retry_after_seconds
from xpdeploy.emulator import Emulator, Fault

TOKEN = "tok-CLIENT-5ecret-Xy93"  # distinctive, so a leak is easy to grep for
BODY: dict[str, Any] = {"id": 123, "target_by": "user_id", "target": ["crm-1"]}

MakeClient = Callable[..., ExecuteClient]


@pytest.fixture(autouse=True)
def no_token_in_output(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[None]:
    """Every test also checks that nothing logged or printed carries the token."""
    caplog.set_level(logging.DEBUG)
    yield
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text
    assert TOKEN not in out + err


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(apptoken=TOKEN, campaigns=[123]) as e:
        yield e


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(emu: Emulator, sleeps: list[float]) -> Iterator[MakeClient]:
    clients: list[ExecuteClient] = []

    def make(base_url: str | None = None, **options: Any) -> ExecuteClient:
        options = {"timeout": 5.0, "sleep": sleeps.append, **options}
        client = ExecuteClient(base_url or emu.url, TOKEN, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def check_token_free(outcome: Outcome) -> Outcome:
    assert TOKEN not in repr(outcome)
    assert TOKEN not in str(outcome)
    assert TOKEN not in json.dumps(outcome.response)
    assert "\n" not in outcome.message
    return outcome


def test_success_is_applied_once(emu: Emulator, make_client: MakeClient) -> None:
    body = dict(BODY)
    outcome = check_token_free(make_client().execute(body))
    assert outcome == Outcome("applied", 200, {"code": 200, "success": True}, "HTTP 200: OK", 1)
    assert emu.accepted_requests() == [{**BODY, "apptoken": "***"}]
    assert body == BODY  # the caller's body is not touched


@pytest.mark.parametrize(
    ("body", "token", "status", "message"),
    [
        ({**BODY, "id": 999}, TOKEN, 400, "HTTP 400: Campaign not found"),
        ({**BODY, "target_by": "x", "time": "soon"}, TOKEN, 400, "HTTP 400: target_by: must be"),
        (BODY, "wrong-token", 401, "HTTP 401: Authentication failed"),
        (BODY, "", 400, "HTTP 400: Missing apptoken"),
    ],
)
def test_definite_rejection_is_failed_without_retry(
    emu: Emulator, sleeps: list[float], body: dict[str, Any], token: str, status: int, message: str
) -> None:
    with ExecuteClient(emu.url, token, sleep=sleeps.append) as client:
        outcome = check_token_free(client.execute(body))
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", status, 1)
    assert outcome.message.startswith(message)
    assert outcome.response["success"] is False
    assert (sleeps, emu.accepted_requests()) == ([], [])


def test_all_errors_are_in_the_message(make_client: MakeClient) -> None:
    outcome = make_client().execute({**BODY, "target_by": "x", "time": "soon"})
    assert "target_by" in outcome.message
    assert "time: use" in outcome.message


def test_wrong_path_is_failed(emu: Emulator, make_client: MakeClient) -> None:
    outcome = make_client(emu.url + "/nope/").execute(BODY)
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", 404, 1)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"code": 200, "success": false, "message": "Campaign inactive"}', "failed"),
        ('{"code": 200, "success": "false"}', "failed"),
        ('{"code": 200, "success": "true"}', "applied"),
        ('{"code": 200, "success": true, "async": true}', "applied"),
    ],
)
def test_success_flag_decides_a_2xx(
    emu: Emulator, make_client: MakeClient, body: str, status: str
) -> None:
    emu.inject(Fault(status=200, body=body, accept=status == "applied"))
    outcome = check_token_free(make_client().execute(BODY))
    assert (outcome.status, outcome.http_status, outcome.attempts) == (status, 200, 1)
    assert outcome.response == json.loads(body)
    if status == "failed" and "inactive" in body:
        assert outcome.message == "HTTP 200: Campaign inactive"


def test_503_then_success_sends_exactly_once(
    emu: Emulator, make_client: MakeClient, sleeps: list[float]
) -> None:
    emu.inject(Fault(status=503))
    outcome = check_token_free(make_client(backoff_base=0.5).execute(BODY))
    assert (outcome.status, outcome.attempts) == ("applied", 2)
    assert len(emu.accepted_requests()) == 1
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.5


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(
    emu: Emulator, make_client: MakeClient, sleeps: list[float], status: int
) -> None:
    emu.inject(Fault(status=status, retry_after=7), Fault(status=status, retry_after=1.5))
    outcome = make_client().execute(BODY)
    assert (outcome.status, outcome.attempts) == ("applied", 3)
    assert sleeps == [7.0, 1.5]
    assert len(emu.accepted_requests()) == 1


def test_retry_after_is_capped(emu: Emulator, make_client: MakeClient, sleeps: list[float]) -> None:
    emu.inject(Fault(status=429, retry_after=50))
    outcome = make_client(backoff_cap=20, max_retry_seconds=60).execute(BODY)
    assert (outcome.status, sleeps) == ("applied", [20.0])


def test_retry_after_beyond_the_budget_gives_up(
    emu: Emulator, make_client: MakeClient, sleeps: list[float]
) -> None:
    emu.inject(Fault(status=429, retry_after=120))
    outcome = check_token_free(make_client(max_retry_seconds=60).execute(BODY))
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", 429, 1)
    assert outcome.message.startswith("not sent (HTTP 429")
    assert "asked to wait 120s, beyond the 60s retry budget" in outcome.message
    assert (sleeps, emu.accepted_requests()) == ([], [])


def test_backoff_stops_when_the_budget_is_spent(
    emu: Emulator, make_client: MakeClient, sleeps: list[float]
) -> None:
    emu.inject(Fault(status=503, retry_after=4, times=10))
    outcome = make_client(max_attempts=10, max_retry_seconds=10).execute(BODY)
    assert (outcome.status, outcome.attempts, sleeps) == ("failed", 3, [4.0, 4.0])
    assert "gave up after 3 attempt(s), the server asked to wait 4s" in outcome.message


def test_503_forever_fails_after_max_attempts(
    emu: Emulator, make_client: MakeClient, sleeps: list[float]
) -> None:
    emu.inject(Fault(status=503, times=10))
    outcome = make_client(max_attempts=4, backoff_base=1, backoff_cap=3).execute(BODY)
    outcome = check_token_free(outcome)
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", 503, 4)
    assert outcome.message.startswith("not sent (HTTP 503")
    assert "gave up after 4 attempt(s), the attempt limit" in outcome.message
    assert len(sleeps) == 3
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(sleeps, [1, 2, 3], strict=True))
    assert emu.accepted_requests() == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=500, accept=True),
        Fault(status=500),
        Fault(status=502),
        Fault(status=504),
        Fault(status=599),
        Fault(status=302),
        Fault(drop="after"),
        Fault(drop="before"),
        Fault(body="<html>oops</html>", accept=True),
        Fault(body='{"code": 200}', accept=True),
        Fault(body="[true]", accept=True),
        Fault(status=502, body="<html>Bad gateway</html>"),
    ],
    ids=repr,
)
def test_ambiguous_answers_are_unknown_and_never_retried(
    emu: Emulator, make_client: MakeClient, sleeps: list[float], fault: Fault
) -> None:
    emu.inject(fault, Fault(status=500, accept=True))  # a retry would be recorded
    outcome = check_token_free(make_client().execute(BODY))
    assert (outcome.status, outcome.attempts, sleeps) == ("unknown", 1, [])
    assert "outcome unknown" in outcome.message
    expected = 0 if fault.drop == "before" or not (fault.accept or fault.drop) else 1
    assert len(emu.accepted_requests()) == expected


def test_drop_after_accept_says_what_happened(emu: Emulator, make_client: MakeClient) -> None:
    emu.inject(Fault(drop="after"))
    outcome = make_client().execute(BODY)
    assert outcome.http_status is None
    assert outcome.message.startswith("RemoteProtocolError: ")
    assert "after the request was sent" in outcome.message


def test_malformed_body_is_quoted(emu: Emulator, make_client: MakeClient) -> None:
    emu.inject(Fault(body="<html>\n  oops\n</html>", accept=True))
    outcome = make_client().execute(BODY)
    assert outcome.response is None
    assert outcome.message.startswith("HTTP 200: OK: '<html>\\n oops\\n</html>' (not JSON)")


def test_read_timeout_is_unknown_and_not_retried(
    emu: Emulator, make_client: MakeClient, sleeps: list[float]
) -> None:
    emu.inject(Fault(delay=10))  # stop() at teardown cuts the delay short
    outcome = check_token_free(make_client(timeout=0.2).execute(BODY))
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("unknown", None, 1)
    assert outcome.message.startswith("ReadTimeout: no progress within 0.2s")
    assert sleeps == []
    assert len(emu.accepted_requests()) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_failed(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", max_attempts=3, backoff_base=0.5)
    outcome = check_token_free(client.execute(BODY))
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", None, 3)
    assert outcome.message.startswith("not sent (ConnectError: ")
    assert "gave up after 3 attempt(s)" in outcome.message
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


@pytest.mark.parametrize("base_url", ["ftp://127.0.0.1:1", "http://[::1"])
def test_unusable_url_is_failed_at_once(
    make_client: MakeClient, sleeps: list[float], base_url: str
) -> None:
    outcome = check_token_free(make_client(base_url).execute(BODY))
    assert (outcome.status, outcome.attempts, sleeps) == ("failed", 1, [])
    assert outcome.message.startswith("not sent: ")


def test_body_that_is_not_json_is_failed_unsent(make_client: MakeClient) -> None:
    outcome = check_token_free(make_client().execute({**BODY, "when": datetime.now()}))
    assert (outcome.status, outcome.attempts) == ("failed", 0)


def test_token_echoed_by_the_server_is_masked(emu: Emulator, make_client: MakeClient) -> None:
    echo = {"code": 400, "success": False, "message": f"bad {TOKEN}", "errors": [{TOKEN: TOKEN}]}
    emu.inject(Fault(status=400, body=json.dumps(echo)), Fault(status=500, body=f"<p>{TOKEN}</p>"))
    client = make_client()
    rejected = check_token_free(client.execute(BODY))
    assert rejected.status == "failed"
    assert rejected.response == {**echo, "message": "bad ***", "errors": [{"***": "***"}]}
    assert rejected.message == 'HTTP 400: bad *** [{"***": "***"}]'
    unknown = check_token_free(client.execute(BODY))
    assert "<p>***</p>" in unknown.message


def test_repr_hides_the_token(make_client: MakeClient) -> None:
    client = make_client()
    assert TOKEN not in repr(client)
    assert TOKEN not in str(client)


def test_request_on_the_wire() -> None:
    """Method, path, headers and the token in the body, as a plain socket sees them."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += conn.recv(65536)
            received.append(head + b"\r\n\r\n" + body)
            reply = b'{"code": 200, "success": true}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))

    thread = threading.Thread(target=answer_once)
    thread.start()
    port = listener.getsockname()[1]
    with listener, ExecuteClient(f"http://127.0.0.1:{port}/", TOKEN) as client:
        outcome = client.execute(BODY)
        thread.join(timeout=5)
    assert outcome.status == "applied"
    head, _, body = received[0].partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "post /api/external/execute/campaign http/1.1"
    assert "content-type: application/json" in lines
    assert "accept: application/json" in lines
    assert f"user-agent: xpdeploy/{__version__}" in lines
    assert json.loads(body) == {**BODY, "apptoken": TOKEN}


def test_parallel_executes_share_one_client(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client()
    bodies = [{**BODY, "target": [f"crm-{i}"]} for i in range(48)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(client.execute, bodies))
    assert {o.status for o in outcomes} == {"applied"}
    assert sorted(r["target"][0] for r in emu.accepted_requests()) == sorted(
        b["target"][0] for b in bodies
    )


def test_close_and_context_manager(emu: Emulator) -> None:
    with ExecuteClient(emu.url, TOKEN) as client:
        assert client.execute(BODY).status == "applied"
    with pytest.raises(RuntimeError) as excinfo:
        client.execute(BODY)
    assert TOKEN not in str(excinfo.value)
    assert len(emu.accepted_requests()) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 01 Jan 2030 12:00:10 GMT", 10.0),
        ("Wed, 01 Jan 2030 11:00:00 GMT", 0.0),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert retry_after_seconds(value, now) == seconds


def test_retry_after_http_date_defaults_to_now() -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)
    seconds = retry_after_seconds(later)
    assert seconds is not None and 3000 < seconds <= 3600
