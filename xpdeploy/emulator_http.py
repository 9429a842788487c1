"""The emulator's HTTP side: one handler per connection, routes, faults on the wire."""

from __future__ import annotations

import json
import logging
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from xpdeploy import __version__
from xpdeploy.emulator_rules import Fault, Reply, campaign_error, check_apptoken

if TYPE_CHECKING:
    from xpdeploy.emulator import Emulator

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


class Server(ThreadingHTTPServer):
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
    server: Server

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
        except (UnicodeDecodeError, ValueError, RecursionError):
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
        except (TypeError, ValueError, RecursionError) as exc:  # bad JSON, keys or values
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
