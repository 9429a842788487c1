"""A local Xtremepush external API on loopback: documented validation, faults on demand.

Serves POST /api/external/execute/campaign and /api/external/info/campaign with the
API's envelope. Tests steer a running emulator through POST /_emulator/faults (a JSON
list of Fault objects), GET /_emulator/accepted and POST /_emulator/reset. Accepted
execute bodies are kept (and, with a log path, appended as JSON lines) with the
apptoken masked. Standard library only: the client is what speaks httpx.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from xpdeploy import __version__
from xpdeploy.canonical import MASK, mask_secrets
from xpdeploy.emulator_rules import Reply, campaign_error, check_apptoken, execute_errors, is_int
from xpdeploy.errors import UserError

EXECUTE_PATH = "/api/external/execute/campaign"
INFO_PATH = "/api/external/info/campaign"
FAULTS_PATH = "/_emulator/faults"
ACCEPTED_PATH = "/_emulator/accepted"
RESET_PATH = "/_emulator/reset"
MAX_BODY_BYTES = 64 * 1024 * 1024

_ROUTES = {
    EXECUTE_PATH: "POST",
    INFO_PATH: "POST",
    FAULTS_PATH: "POST",
    ACCEPTED_PATH: "GET",
    RESET_PATH: "POST",
}

_log = logging.getLogger(__name__)


@dataclass
class Fault:
    """One misbehaviour for the next execute request(s); see SPEC §8."""

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    drop: Literal["before", "after"] | None = None
    body: str | None = None
    accept: bool = False
    times: int = 1

    def __post_init__(self) -> None:
        # Faults also arrive as JSON through /_emulator/faults, so check what they say.
        def seconds(value: Any) -> bool:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return number and math.isfinite(value) and value >= 0

        checks = {
            "status must be an HTTP status code (100-599)": self.status is None
            or (is_int(self.status) and 100 <= self.status <= 599),
            "retry_after must be seconds >= 0": self.retry_after is None
            or seconds(self.retry_after),
            "delay must be seconds >= 0": seconds(self.delay),
            "drop must be 'before', 'after' or null": self.drop in (None, "before", "after"),
            "body must be a string": self.body is None or isinstance(self.body, str),
            "accept must be a boolean": isinstance(self.accept, bool),
            "times must be a positive integer": is_int(self.times) and self.times >= 1,
        }
        for problem, ok in checks.items():
            if not ok:
                raise ValueError(problem)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections under a parallel apply, after
    # the client wrote its request: an ambiguous failure the emulator must not invent.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are normal here (faults, timeouts); stay quiet.
        _log.debug("emulator: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    timeout = 300  # an idle keep-alive connection must not hold a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's access log on stderr."""

    def version_string(self) -> str:
        return f"xpdeploy-emulator/{__version__}"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK adds 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track(self.connection, open_=False)

    def _dispatch(self) -> None:
        raw = self._read_body()
        if raw is None:
            return
        path = self.path.split("?", 1)[0]
        wanted = _ROUTES.get(path)
        if wanted is None and path.startswith("/api/external/") and self.command != "POST":
            self._reply((405, f"Method {self.command} not allowed: use POST", None))
        elif wanted is None:
            self._reply((404, f"No such method: {path}", None))
        elif self.command != wanted:
            self._reply((405, f"Method {self.command} not allowed: use {wanted}", None))
        elif path == EXECUTE_PATH:
            self._execute(raw)
        elif path == INFO_PATH:
            self._info(raw)
        elif path == FAULTS_PATH:
            self._faults(raw)
        elif path == ACCEPTED_PATH:
            self._reply((200, None, None), data=self.server.emulator.accepted_requests())
        else:
            self.server.emulator.reset()
            self._reply((200, "Emulator reset", None))

    # Every method goes through one router, which answers 405 where POST is wanted.
    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a request whose body can't be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the unread body would be taken for the next request
            self._reply((411, "Send the request body with a Content-Length", None))
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            self._reply((400, "Invalid Content-Length", None))
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply((413, f"Request body over {MAX_BODY_BYTES} bytes", None))
            return None
        raw = self.rfile.read(length)
        if len(raw) < length:  # the client went away mid-body
            self.close_connection = True
            return None
        return raw

    def _parse(self, raw: bytes) -> dict[str, Any] | Reply:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, "Request body is not valid JSON", ["body: not valid JSON"]
        if not isinstance(body, dict):
            return 400, "Request body must be a JSON object", ["body: not a JSON object"]
        return body

    def _execute(self, raw: bytes) -> None:
        emulator = self.server.emulator
        fault = emulator._take_fault() or Fault()
        reply: Reply = (200, None, None)
        accepted = False
        if fault.drop != "before":
            if fault.accept or (fault.status is None and fault.body is None):
                reply = emulator._process_execute(self._parse(raw))
                accepted = reply[0] == 200
            emulator._wait(fault.delay)
        verdict = "accepted" if accepted else "not accepted"
        if fault.drop is not None:
            self.close_connection = True  # nothing written: the client sees a dropped connection
            emulator._notify(f"execute: {verdict}, connection dropped (injected fault)")
            return
        if fault.body is not None:
            reply = (fault.status or 200, "raw body (injected fault)", None)
        elif fault.status is not None:
            reply = (fault.status, _phrase(fault.status), None)
        # Report before answering, so a caller who has its answer also sees the line.
        emulator._notify(f"execute: {verdict}, {reply[0]}" + (f" {reply[1]}" if reply[1] else ""))
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        if fault.body is not None:
            kind = "application/json" if fault.body.lstrip()[:1] in ("{", "[") else "text/html"
            self._send(reply[0], fault.body.encode(), kind, headers)
        else:
            self._reply(reply, headers=headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unknown method) as envelopes too."""
        self.close_connection = True
        self._reply((code, message or _phrase(code), None))

    def _info(self, raw: bytes) -> None:
        emulator = self.server.emulator
        body = self._parse(raw)
        if not isinstance(body, dict):
            self._reply(body)
            return
        denied = check_apptoken(body, emulator._apptoken)
        problem = campaign_error(body.get("id"), emulator._campaigns)
        if denied:
            self._reply(denied)
        elif problem:
            self._reply((400, problem, [problem]))
        else:
            self._reply((200, None, None), model={"id": body["id"], "active": 1, "messages": {}})

    def _faults(self, raw: bytes) -> None:
        try:
            items = json.loads(raw.decode("utf-8") or "null")
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise TypeError("send a JSON list of fault objects")
            faults = [Fault(**item) for item in items]
        except (TypeError, ValueError) as exc:  # bad JSON, unknown keys, bad values
            self._reply((400, f"Invalid fault: {exc}", None))
            return
        self.server.emulator.inject(*faults)
        count = sum(f.times for f in faults)
        self._reply((200, f"Faults queued for the next {count} execute request(s)", None))

    def _reply(self, reply: Reply, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        """Answer with the documented envelope; the HTTP status always equals ``code``."""
        code, message, errors = reply
        envelope: dict[str, Any] = {"code": code, "success": 200 <= code < 300}
        if message:
            envelope["message"] = message
        if errors:
            envelope["errors"] = errors
        envelope.update(extra)
        self._send(code, json.dumps(envelope).encode(), "application/json", headers or {})

    def _send(self, code: int, payload: bytes, kind: str, headers: dict[str, str]) -> None:
        self.send_response(code, _phrase(code))
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Injected fault"


class Emulator:
    """The execute-campaign endpoint on a local socket, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        apptoken: str | None = None,
        campaigns: Iterable[str | int] | None = None,
        log_path: Path | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self._apptoken = apptoken
        # No campaigns configured (or an empty list) means any id is known.
        self._campaigns = frozenset(str(c).strip() for c in campaigns or ()) or None
        self._echo = echo
        self._lock = threading.Lock()
        self._accepted: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._server else "not started"
        return f"<Emulator {where}, {len(self._accepted)} accepted>"

    @property
    def url(self) -> str:
        """Base URL to give the client, e.g. ``http://127.0.0.1:8787``."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Same as accepted_requests()."""
        return self.accepted_requests()

    def accepted_requests(self) -> list[dict[str, Any]]:
        """Copies of the accepted execute bodies, in arrival order, apptoken masked."""
        with self._lock:
            return copy.deepcopy(self._accepted)

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each execute request takes the next one."""
        with self._lock:
            for fault in faults:
                self._faults.extend([fault] * fault.times)

    def reset(self) -> None:
        """Forget accepted requests and queued faults (the log file is kept)."""
        with self._lock:
            self._accepted.clear()
            self._faults.clear()

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; port 0 picks a free port."""
        if self._server is not None:
            return self
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log_path.open("a", encoding="utf-8").close()
            except OSError as exc:
                raise UserError(f"cannot write the emulator log {self.log_path}: {exc}") from None
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as exc:
            raise UserError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                " (is another emulator running? pick another --port)"
            ) from None
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # the most stop() waits for the accept loop
            name="xpdeploy-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections, waking any delayed responses."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _take_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _wait(self, seconds: float) -> None:
        # An Event, not time.sleep, so that stop() cuts a long injected delay short.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _notify(self, line: str) -> None:
        if self._echo is not None:
            self._echo(line)

    def _process_execute(self, body: dict[str, Any] | Reply) -> Reply:
        """Validate a parsed execute body and record it when the API would accept it."""
        if not isinstance(body, dict):
            return body
        denied = check_apptoken(body, self._apptoken)
        if denied:
            return denied
        errors = execute_errors(body, self._campaigns)
        if errors:
            return 400, errors[0], errors
        given = body.get("apptoken")
        masked = mask_secrets(body, [self._apptoken or "", given if isinstance(given, str) else ""])
        if "apptoken" in masked:
            masked["apptoken"] = MASK
        with self._lock:
            self._accepted.append(masked)
            if self.log_path is not None:
                # One JSON line per request, appended and flushed while holding the lock.
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(masked, ensure_ascii=False) + "\n")
        return 200, None, None


def _wait_forever() -> None:
    while True:
        time.sleep(3600)  # time.sleep, unlike a lock wait, is interruptible on every OS


def serve(
    host: str,
    port: int,
    *,
    apptoken: str | None,
    campaigns: list[str] | None,
    log_path: Path | None,
    echo: Callable[[str], None],
) -> None:
    """Run the emulator in the foreground until Ctrl+C (the `xpdeploy emulator` command)."""
    emulator = Emulator(
        host, port, apptoken=apptoken, campaigns=campaigns, log_path=log_path, echo=echo
    ).start()
    try:
        echo(f"Xtremepush emulator listening on {emulator.url}")
        echo(f"  POST {emulator.url}{EXECUTE_PATH}")
        echo("  apptoken: " + ("checked (the value given)" if apptoken else "not checked"))
        echo("  campaigns: " + (", ".join(campaigns) if campaigns else "any id"))
        if log_path is not None:
            echo(f"  log: {log_path}")
        echo("Press Ctrl+C to stop.")
        _wait_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    echo("Emulator stopped.")
