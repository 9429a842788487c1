"""The PostgreSQL backend: one truth for many runners, repositories and pipelines.

Tables live in their own schema, created on first write. The events are the journal
(each stored as the file ledger's JSON line, so nothing is normalised away); the
records are their fold. Exclusivity is a lease row per environment with a fencing
token: every write checks, in its own transaction, that this holder's token is still
the live one. Nothing is session-scoped (no advisory locks held across transactions,
no prepared statements kept), so a transaction-pooling PgBouncer in between is fine.

Credentials come from libpq (the URL without a password, ``PGPASSWORD``, ``~/.pgpass``,
a service file) and never reach a message: errors are reworded around `location`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from xpdeploy.canonical import strict_loads
from xpdeploy.errors import UserError
from xpdeploy.ledger.base import (
    Event,
    EventKind,
    History,
    LeaseLost,
    LedgerState,
    LockHeld,
    LockInfo,
    Record,
    fold_event,
)
from xpdeploy.ledger.journal import encode_line

SCHEMA_VERSION = 1
DEFAULT_LEASE_SECONDS = 60.0
_OUTCOME_ATTEMPTS = 4  # an outcome is evidence of a send: try hard to get it written
T = TypeVar("T")

_DDL = """
CREATE SCHEMA IF NOT EXISTS xpdeploy;
CREATE TABLE IF NOT EXISTS xpdeploy.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS xpdeploy.ledgers (
    environment text PRIMARY KEY,
    lineage text NOT NULL,
    serial_offset bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS xpdeploy.events (
    environment text NOT NULL REFERENCES xpdeploy.ledgers (environment),
    seq bigint NOT NULL,
    line text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, seq)
);
CREATE TABLE IF NOT EXISTS xpdeploy.leases (
    environment text PRIMARY KEY,
    token bigint NOT NULL,
    holder jsonb NOT NULL,
    expires_at timestamptz NOT NULL,
    released boolean NOT NULL DEFAULT false
);
"""


def lease_seconds() -> float:
    """The lease time: ``XPDEPLOY_LEASE_SECONDS``, else 60 s."""
    try:
        value = float(os.environ.get("XPDEPLOY_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    except ValueError:
        raise UserError("XPDEPLOY_LEASE_SECONDS must be a number of seconds") from None
    if not 1 <= value <= 3600:
        raise UserError("XPDEPLOY_LEASE_SECONDS must be between 1 and 3600 seconds")
    return value


def safe_location(url: str) -> str:
    """The URL without its password (and without query settings, which may hold keys)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PostgresLedger:
    """One environment's ledger in a PostgreSQL database."""

    def __init__(self, url: str, environment: str) -> None:
        self._url = url
        self.environment = environment
        self._password = urlsplit(url).password
        self._mutex = threading.Lock()
        self._conn: Any = None
        self._token: int | None = None
        self._lost: str | None = None
        self._valid_until = 0.0
        self._ttl = DEFAULT_LEASE_SECONDS
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def location(self) -> str:
        return safe_location(self._url)

    def behind(self) -> str | None:
        return None  # the database is the shared truth: nothing is fetched

    # -- reading -------------------------------------------------------------------

    def read(self) -> LedgerState:
        return self._load()[0]

    def history(self) -> History:
        state, offset, events = self._load()
        return History(self.environment, state.lineage, offset, events)

    def _load(self) -> tuple[LedgerState, int, list[Event]]:
        """Needs SELECT only: a read-only role can plan. No tables yet means empty."""

        def load(conn: Any) -> tuple[LedgerState, int, list[Event]]:
            if conn.execute("SELECT to_regclass('xpdeploy.events')").fetchone()[0] is None:
                return LedgerState(self.environment, None, 0, {}), 0, []
            row = conn.execute(
                "SELECT lineage, serial_offset FROM xpdeploy.ledgers WHERE environment = %s",
                (self.environment,),
            ).fetchone()
            if row is None:
                return LedgerState(self.environment, None, 0, {}), 0, []
            lines = conn.execute(
                "SELECT seq, line FROM xpdeploy.events WHERE environment = %s ORDER BY seq",
                (self.environment,),
            ).fetchall()
            return self._fold(row[0], int(row[1]), lines)

        return self._with_connection(load)

    def _fold(
        self, lineage: str, offset: int, lines: list[tuple[int, str]]
    ) -> tuple[LedgerState, int, list[Event]]:
        records: dict[str, Record] = {}
        events = []
        for seq, line in lines:
            try:
                event = Event.from_dict(strict_loads(line))
                fold_event(records, event)
            except (ValueError, KeyError, RecursionError) as exc:
                raise UserError(
                    f"event {seq} of environment {self.environment!r} is not a ledger event"
                    f" ({exc}): it was changed outside xpdeploy",
                    path=self.location,
                ) from exc
            events.append(event)
        state = LedgerState(self.environment, lineage, offset + len(events), records)
        return state, offset, events

    # -- the lease -----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, info: LockInfo) -> Iterator[PostgresLedger]:
        """Take the environment's lease, renew it in the background, end it after."""
        self._ttl = lease_seconds()
        with self._mutex:
            self._conn = self._connect()
            try:
                self._migrate()
                self._token = self._take(info)
            except BaseException:
                self._close()
                raise
            self._lost, self._valid_until = None, time.monotonic() + self._ttl
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew, daemon=True, name="lease")
            self._renewer.start()
        try:
            yield self
        finally:
            self._stop.set()
            if self._renewer is not None:
                self._renewer.join()
            with self._mutex:
                with contextlib.suppress(Exception):  # a lapsed lease ends on its own
                    self._release()
                self._close()
                self._token = None

    def _take(self, info: LockInfo) -> int:
        holder = json.dumps(info.as_dict())
        with self._conn.transaction():
            row = self._conn.execute(
                "INSERT INTO xpdeploy.leases AS l (environment, token, holder, expires_at)"
                " VALUES (%s, 1, %s, now() + make_interval(secs => %s))"
                " ON CONFLICT (environment) DO UPDATE SET token = l.token + 1,"
                " holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, released = false"
                " WHERE l.released OR l.expires_at <= now() RETURNING token",
                (self.environment, holder, self._ttl),
            ).fetchone()
            if row is not None:
                return int(row[0])
            held = self._conn.execute(
                "SELECT holder FROM xpdeploy.leases WHERE environment = %s", (self.environment,)
            ).fetchone()
        who = _holder(held[0] if held else None)
        raise LockHeld(self.location, who, what="lease in")

    def _renew(self) -> None:
        """Push the expiry out every third of the lease; a refused renewal is a lost lease."""
        conn = None
        while not self._stop.wait(self._ttl / 3):
            try:
                conn = conn or self._connect()
                with conn.transaction():
                    renewed = conn.execute(
                        "UPDATE xpdeploy.leases SET expires_at = now() + make_interval(secs => %s)"
                        " WHERE environment = %s AND token = %s AND NOT released"
                        " AND expires_at > now()",
                        (self._ttl, self.environment, self._token),
                    ).rowcount
            except Exception:  # the database is away: try again; expiry decides
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
                continue
            if renewed != 1:
                self._lost = "the ledger's lease was taken over or ended (`state unlock`?)"
                break
            self._valid_until = time.monotonic() + self._ttl
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _release(self) -> None:
        with self._conn.transaction():
            self._conn.execute(
                "UPDATE xpdeploy.leases SET released = true WHERE environment = %s AND token = %s",
                (self.environment, self._token),
            )

    def check(self) -> None:
        # Renewals keep `_valid_until` ahead; past it the lease may already be another's.
        if self._lost is None and time.monotonic() > self._valid_until - self._ttl / 6:
            self._lost = "the ledger's lease could not be renewed in time (database unreachable?)"
        if self._lost is not None:
            raise LeaseLost(f"{self._lost}: this apply stopped sending", path=self.location)

    def unlock(self) -> str:
        def end(conn: Any) -> str:
            if conn.execute("SELECT to_regclass('xpdeploy.leases')").fetchone()[0] is None:
                return "no lease was held"
            with conn.transaction():
                row = conn.execute(
                    "UPDATE xpdeploy.leases SET released = true WHERE environment = %s"
                    " AND NOT released AND expires_at > now() RETURNING holder",
                    (self.environment,),
                ).fetchone()
            if row is None:
                return "no lease was held (it had ended or lapsed)"
            who = _holder(row[0])
            return f"ended the lease of {who.describe() if who else 'an unnamed holder'}"

        return self._with_connection(end)

    # -- writing -------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> None:
        """One fenced transaction for the batch. Outcomes are retried on a new
        connection; pendings are not: a lost connection stops sending first."""
        if not events:
            return
        lines = [encode_line(e.to_dict()).decode("utf-8").rstrip("\n") for e in events]
        retry = all(e.kind is not EventKind.PENDING for e in events)
        with self._mutex:
            self._write(lambda: self._insert(lines), retry)

    def compact(self) -> None:
        """A database keeps its journal whole; there is nothing to compact."""

    def adopt(self, history: History) -> None:
        if not history.events:
            raise UserError("the ledger to migrate has no events: nothing to copy")
        lines = [encode_line(e.to_dict()).decode("utf-8").rstrip("\n") for e in history.events]
        with self._mutex:
            self._write(lambda: self._insert(lines, history), retry=False)

    def _insert(self, lines: list[str], history: History | None = None) -> None:
        conn = self._conn
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '15s'")
            fenced = conn.execute(
                "SELECT 1 FROM xpdeploy.leases WHERE environment = %s AND token = %s"
                " AND NOT released AND expires_at > now() FOR UPDATE",
                (self.environment, self._token),
            ).fetchone()
            if fenced is None:
                self._lost = "the ledger's lease lapsed or was taken by another apply"
                raise LeaseLost(f"{self._lost}: this apply stopped sending", path=self.location)
            row = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM xpdeploy.events WHERE environment = %s",
                (self.environment,),
            ).fetchone()
            last = int(row[0])
            exists = conn.execute(
                "SELECT 1 FROM xpdeploy.ledgers WHERE environment = %s", (self.environment,)
            ).fetchone()
            if history is not None and exists:
                raise UserError(
                    f"the target already has a ledger for environment {self.environment!r}:"
                    " migrate only into an empty one",
                    path=self.location,
                )
            if not exists:
                lineage = history.lineage if history and history.lineage else str(uuid.uuid4())
                offset = history.serial_offset if history else 0
                conn.execute(
                    "INSERT INTO xpdeploy.ledgers (environment, lineage, serial_offset)"
                    " VALUES (%s, %s, %s)",
                    (self.environment, lineage, offset),
                )
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO xpdeploy.events (environment, seq, line) VALUES (%s, %s, %s)",
                    [(self.environment, last + i + 1, line) for i, line in enumerate(lines)],
                )

    def _write(self, insert: Callable[[], None], retry: bool) -> None:
        import psycopg

        if self._token is None:
            raise RuntimeError("the PostgreSQL ledger must be locked before it is written")
        for attempt in range(1, (_OUTCOME_ATTEMPTS if retry else 1) + 1):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                insert()
                if attempt > 1:  # recorded, on a new connection: still, send no more
                    self._lost = "the connection to the ledger database was lost mid-apply"
                return
            except psycopg.OperationalError as exc:
                self._close()
                if attempt >= (_OUTCOME_ATTEMPTS if retry else 1):
                    self._lost = f"the ledger database was lost ({self._reword(exc)})"
                    raise LeaseLost(f"{self._lost}: this apply stopped sending") from None
                time.sleep(0.2 * attempt)
            except psycopg.Error as exc:
                raise UserError(
                    f"the ledger database refused a write: {self._reword(exc)}"
                ) from None

    # -- connections -----------------------------------------------------------------

    def _migrate(self) -> None:
        """Create the tables on first use; a transaction-scoped lock orders racing first
        uses (released at commit, so a pooler cannot strand it)."""
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('xpdeploy.schema'))")
            self._conn.execute(_DDL)
            version = self._conn.execute("SELECT max(version) FROM xpdeploy.schema_version")
            current = version.fetchone()[0]
            if current is None:
                self._conn.execute(
                    "INSERT INTO xpdeploy.schema_version (version) VALUES (%s)", (SCHEMA_VERSION,)
                )
            elif current > SCHEMA_VERSION:
                raise UserError(
                    f"the ledger database has schema version {current}, newer than this"
                    f" xpdeploy's {SCHEMA_VERSION}: upgrade xpdeploy",
                    path=self.location,
                )

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise UserError(
                "a postgresql:// state needs the PostgreSQL extra: pip install 'xpdeploy[postgres]'"
            ) from None
        try:
            return psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=5,
                application_name="xpdeploy",
                prepare_threshold=None,
            )
        except psycopg.Error as exc:
            raise UserError(
                f"cannot reach the ledger database: {self._reword(exc)}", path=self.location
            ) from None

    def _with_connection(self, work: Callable[[Any], T]) -> T:
        import psycopg

        conn = self._connect()
        try:
            return work(conn)
        except psycopg.Error as exc:
            raise UserError(
                f"the ledger database failed: {self._reword(exc)}", path=self.location
            ) from None
        finally:
            conn.close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _reword(self, exc: Exception) -> str:
        """libpq's message, one line, with the password (if any) masked."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text.replace(self._url, self.location)[:300]


def _holder(data: Any) -> LockInfo | None:
    try:
        return LockInfo.from_dict(data if isinstance(data, dict) else json.loads(data))
    except (TypeError, ValueError, KeyError):
        return None
