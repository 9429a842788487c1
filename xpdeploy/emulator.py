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
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from xpdeploy.canonical import MASK, mask_secrets
from xpdeploy.emulator_http import EXECUTE_PATH, INFO_PATH, Server
from xpdeploy.emulator_rules import Fault, Reply, check_apptoken, execute_errors
from xpdeploy.errors import UserError

__all__ = ["EXECUTE_PATH", "INFO_PATH", "Emulator", "Fault", "serve"]

_log = logging.getLogger(__name__)


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
        self._server: Server | None = None
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
            self._server = Server((self.host, self.port), self)
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
