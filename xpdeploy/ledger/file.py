"""The file backend: an append-only JSON-lines journal whose fold is the state (SPEC §6)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpdeploy.canonical import strict_loads
from xpdeploy.errors import UserError
from xpdeploy.ledger.base import Event, LedgerState, LockInfo, Record, fold_event, utc_now
from xpdeploy.ledger.lock import FileLock, fsync_dir, make_dirs

FORMAT_VERSION = 1
_CONFLICT_MARKS = (b"<<<<<<<", b"=======", b">>>>>>>")


def _line(obj: dict[str, Any]) -> bytes:
    """One journal line: compact, key-sorted JSON, so a git diff reads well."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


@dataclass(frozen=True)
class _Scan:
    header: dict[str, Any] | None
    state: LedgerState
    valid_size: int  # bytes up to the end of the last good line
    file_size: int


class FileLedger:
    """The journal at ``path`` for one environment, with its lock at ``<path>.lock``."""

    def __init__(self, path: Path, environment: str) -> None:
        self.path = path
        self.environment = environment
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock = FileLock(self.lock_path)
        # Parallel apply threads share this object; one mutex orders their writes.
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._header: dict[str, Any] | None = None
        self._size = 0
        self._torn = False
        self._broken: str | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    def behind(self) -> str | None:
        """The journal is shared through git: commits of the upstream branch, as last
        fetched, that change it and are not checked out mean records missing here."""
        from xpdeploy.git import upstream_changes

        return upstream_changes(self.path)

    def read(self) -> LedgerState:
        """Read and fold the journal; a torn last line is ignored. No lock needed."""
        return self._scan().state

    @contextlib.contextmanager
    def lock(self, info: LockInfo) -> Iterator[FileLedger]:
        """Hold the exclusive lock for the ``with`` block, or raise `LockHeld` at once."""
        with self._mutex:
            self._check_regular()  # before the lock file is made beside it
            self._lock.acquire(info)
            try:
                scan = self._scan()
                if scan.header is not None:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except BaseException:
                self._lock.release()
                raise
            self._header, self._size = scan.header, scan.valid_size
            self._torn = scan.file_size > scan.valid_size
            self._broken = None
        try:
            yield self
        finally:
            with self._mutex:
                if self._fd is not None:
                    os.close(self._fd)
                self._fd, self._header = None, None
                self._lock.release()

    def append(self, events: Sequence[Event]) -> None:
        """Write ``events`` with one write and fsync before returning. Needs the lock."""
        if not events:
            return
        data = b"".join(_line(event.to_dict()) for event in events)
        with self._mutex:
            self._check_writable()
            if self._header is None:
                header = {
                    "created_at": utc_now(),
                    "environment": self.environment,
                    "format_version": FORMAT_VERSION,
                    "lineage": str(uuid.uuid4()),
                }
                try:
                    self._replace(_line(header) + data)
                except OSError as exc:
                    raise self._disk_error(exc) from exc
                self._header = header
                return
            assert self._fd is not None
            if self._torn:
                # A crash left half a line; appending after it would make it a corrupt middle.
                os.ftruncate(self._fd, self._size)
                self._torn = False
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise self._disk_error(exc) from exc
            self._size += len(data)

    def compact(self) -> None:
        """Rewrite the journal as one event per record, keeping lineage and serial."""
        with self._mutex:
            self._check_writable()
            scan = self._scan()
            if scan.header is None:
                return
            records = scan.state.records
            header = dict(scan.header)
            # Serial keeps counting across compaction, so a plan made before it still
            # matches exactly when the state is unchanged, and never matches otherwise.
            header["serial_offset"] = scan.state.serial - len(records)
            header["compacted_at"] = utc_now()
            lines = [_line(header)]
            lines += [_line(Event.from_record(record).to_dict()) for record in records.values()]
            try:
                self._replace(b"".join(lines))
            except OSError as exc:
                raise self._disk_error(exc) from exc
            self._header, self._torn = header, False

    def unlock(self) -> str:
        """Remove a stale lock file; refuse (`LockHeld`) while a live process holds it."""
        return self._lock.unlock()

    def _check_writable(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"ledger {self.path} must be locked before it is written")
        if self._broken:
            raise UserError(self._broken, path=str(self.path))

    def _disk_error(self, exc: OSError) -> UserError:
        # After a failed write or fsync the page cache cannot be trusted; stop writing here.
        self._broken = (
            f"could not write the ledger ({exc.strerror or exc}); the events being written "
            "were not recorded: fix the disk, then check `xpdeploy state list`"
        )
        return UserError(self._broken, path=str(self.path))

    def _replace(self, data: bytes) -> None:
        """Atomically make ``data`` the whole journal: temp file, fsync, rename, fsync dir."""
        parent = self.path.parent
        make_dirs(parent)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            try:
                os.fchmod(fd, 0o644)  # mkstemp's 0600 is wrong for a file meant for git
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(parent)
        # The old descriptor points at the replaced inode; appends must go to the new one.
        new_fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._size = new_fd, len(data)

    def _check_regular(self) -> None:
        """A journal is a regular file: a first write would replace a symlink, a device
        or a pipe (reading /dev/zero never ends, a pipe blocks)."""
        if os.path.islink(self.path) or (os.path.exists(self.path) and not self.path.is_file()):
            raise UserError(
                "the ledger is not a regular file (a symlink, folder, device or pipe):"
                " point `state:` at a file of its own",
                path=str(self.path),
            )

    def _scan(self) -> _Scan:
        """Parse and fold the whole journal, noting where its last good line ends."""
        self._check_regular()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        empty = LedgerState(self.environment, None, 0, {})
        if not data.strip():
            return _Scan(None, empty, 0, len(data))
        lines = data.split(b"\n")
        # lines[-1] holds what follows the last newline: empty, or a torn write. Only
        # it can be torn: a line with its newline was written whole, so one that does
        # not parse was changed afterwards, and dropping it would lose an event.
        if len(lines) == 1:
            raise self._corrupt(1, lines[0], "the header line is incomplete")
        header = self._parse_header(lines[0])
        records: dict[str, Record] = {}
        count, valid_size = 0, len(lines[0]) + 1
        for index in range(1, len(lines) - 1):
            raw = lines[index]
            if raw.strip():
                try:
                    fold_event(records, Event.from_dict(strict_loads(raw)))
                except (ValueError, KeyError, RecursionError) as exc:
                    raise self._corrupt(index + 1, raw, _reason(exc)) from exc
                count += 1
            valid_size += len(raw) + 1
        serial = header.get("serial_offset", 0) + count
        state = LedgerState(self.environment, header["lineage"], serial, records)
        return _Scan(header, state, valid_size, len(data))

    def _parse_header(self, raw: bytes) -> dict[str, Any]:
        try:
            header = strict_loads(raw)
        except (ValueError, RecursionError):
            header = None
        offset = header.get("serial_offset", 0) if isinstance(header, dict) else None
        if (
            not isinstance(header, dict)
            or not isinstance(header.get("lineage"), str)
            or type(offset) is not int
            or offset < 0
        ):
            raise self._corrupt(1, raw, "the first line is not an xpdeploy ledger header")
        version = header.get("format_version")
        if version != FORMAT_VERSION:
            raise UserError(
                f"ledger format_version {version!r} is not {FORMAT_VERSION}; "
                "it was written by another xpdeploy version: use that version, or upgrade",
                path=str(self.path),
                line=1,
            )
        if header.get("environment") != self.environment:
            raise UserError(
                f"this ledger belongs to environment {header.get('environment')!r}, "
                f"not {self.environment!r}: give each environment its own `state:` path "
                "in xpdeploy.yaml",
                path=str(self.path),
                line=1,
            )
        return header

    def _corrupt(self, line: int, raw: bytes, reason: str) -> UserError:
        if raw.startswith(_CONFLICT_MARKS):
            what = (
                "an unresolved git merge conflict: keep the event lines of both sides in "
                "the order of their `at` times, drop the markers, and run again"
            )
        else:
            what = (
                f"{reason}; the journal is append-only, so this line was changed by hand "
                f"or by a merge: restore it from git (git log -p -- {self.path}) or fix it"
            )
        return UserError(f"corrupt ledger line: {what}", path=str(self.path), line=line)


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"the event has no {exc} field"
    if isinstance(exc, RecursionError):
        return "not a ledger event (nested too deeply)"
    return f"not a ledger event ({exc})"


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (one call unless the kernel splits it) and fsync."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
