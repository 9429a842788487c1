"""The file backend: an append-only JSON-lines journal whose fold is the state.

Exactly-once on one machine rests on two things this module checks, not assumes: that
the lock and the journal are still the files it opened (a `git clean`, `checkout`,
`stash` or `pull` while an apply runs replaces or deletes them), and that every event
it was told to write is on disk before the next request leaves.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from xpdeploy.errors import UserError
from xpdeploy.ledger import journal
from xpdeploy.ledger.base import (
    Event,
    History,
    LeaseLost,
    LedgerState,
    LockHeld,
    LockInfo,
    utc_now,
)
from xpdeploy.ledger.lock import FileLock, fsync_dir, make_dirs

FORMAT_VERSION = journal.FORMAT_VERSION


class FileLedger:
    """The journal at ``path`` for one environment, with its lock at ``<path>.lock``.

    While locked, the journal itself is flock'ed too: if the lock file is deleted under
    a running apply, a second apply takes a new lock file but still cannot have the
    journal, and the first apply notices the missing lock file and stops sending.
    """

    def __init__(self, path: Path, environment: str) -> None:
        self.path = path
        self.environment = environment
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock = FileLock(self.lock_path)
        # Parallel apply threads share this object; one mutex orders their writes.
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._header: dict[str, object] | None = None
        self._size = 0
        self._torn = False
        self._unterminated = False
        self._broken: str | None = None
        self._lost: str | None = None  # why this holder stopped sending
        self._lock_gone = self._journal_gone = False
        self._content = b""  # the journal as this holder knows it (for a rescue)

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

    def history(self) -> History:
        scan = self._scan()
        return History(self.environment, scan.state.lineage, scan.serial_offset, scan.events)

    @contextlib.contextmanager
    def lock(self, info: LockInfo) -> Iterator[FileLedger]:
        """Hold the exclusive lock for the ``with`` block, or raise `LockHeld` at once."""
        with self._mutex:
            self._check_regular()  # before the lock file is made beside it
            self._lock.acquire(info)
            try:
                scan = self._scan()
                if scan.header is not None:
                    self._fd = self._open_journal()
                    self._content = self.path.read_bytes()[: scan.valid_size]
            except BaseException:
                self._close()
                self._lock.release()
                raise
            self._header, self._size = scan.header, scan.valid_size
            self._torn = scan.size > scan.valid_size
            self._unterminated = scan.unterminated
            self._broken = self._lost = None
            self._lock_gone = self._journal_gone = False
        try:
            yield self
        finally:
            with self._mutex:
                self._close()
                self._header = None
                self._lock.release()

    def check(self) -> None:
        """Stop sending unless the lock file and the journal are the ones this apply holds."""
        with self._mutex:
            self._check_held()

    def append(self, events: Sequence[Event]) -> None:
        """Write ``events`` with one write and fsync before returning. Needs the lock.

        When the journal was replaced under this apply, the events are put back with the
        rest of this apply's journal, or into a rescue file beside it: never written to a
        file that is no longer the ledger, and never lost.
        """
        if not events:
            return
        data = b"".join(journal.encode_line(event.to_dict()) for event in events)
        with self._mutex:
            self._check_writable()
            self._check_identity()
            if self._journal_gone:
                self._rescue(data)  # durable, in the ledger or beside it; `check` stops sends
                return
            if self._header is None:
                header = journal.new_header(self.environment)
                self._write_whole(journal.encode_line(header) + data)
                self._header = header
                return
            assert self._fd is not None
            if self._torn:
                # A crash left half a line; appending after it would make it a corrupt middle.
                os.ftruncate(self._fd, self._size)
                self._content = self._content[: self._size]
                self._torn = False
            if self._unterminated:
                data = b"\n" + data  # an edit dropped the last newline; the event is whole
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise self._disk_error(exc) from exc
            self._unterminated = False
            self._size += len(data)
            self._content += data

    def compact(self) -> None:
        """Rewrite the journal as one event per record, keeping lineage and serial."""
        with self._mutex:
            self._check_writable()
            self._check_held()
            scan = self._scan()
            records = scan.state.records
            if scan.header is None or not records:
                return  # a journal with only its header would read as lost contents
            header = dict(scan.header)
            # Serial keeps counting across compaction, so a plan made before it still
            # matches exactly when the state is unchanged, and never matches otherwise.
            header["serial_offset"] = scan.state.serial - len(records)
            header["compacted_at"] = utc_now()
            events = [Event.from_record(record) for record in records.values()]
            self._write_whole(journal.encode(header, events))
            self._header, self._torn, self._unterminated = header, False, False

    def adopt(self, history: History) -> None:
        """Write ``history`` as this journal, which must not exist yet."""
        with self._mutex:
            self._check_writable()
            if self._header is not None:
                raise UserError(
                    "the target ledger already has events: migrate only into an empty one",
                    path=str(self.path),
                )
            if not history.events:
                raise UserError("the ledger to migrate has no events: nothing to copy")
            header = journal.new_header(self.environment, history.lineage, history.serial_offset)
            self._write_whole(journal.encode(header, history.events))
            self._header = header

    def unlock(self) -> str:
        """Remove a stale lock file; refuse (`LockHeld`) while a live process holds it."""
        return self._lock.unlock()

    # -- holding the files ---------------------------------------------------------

    def _open_journal(self) -> int:
        """The journal's fd, flock'ed: a second apply whose lock file is new still fails."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(
                str(self.lock_path),
                None,
                hint="another apply holds the ledger file itself (its lock file was removed"
                " while it ran): wait for it to finish",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def _check_held(self) -> None:
        self._check_identity()
        if self._lost is not None:
            raise LeaseLost(self._lost, path=str(self.path))

    def _check_identity(self) -> None:
        """Note a lock file or journal that is no longer the one held (once lost, lost)."""
        if not self._lock_gone and not _same_file(self.lock_path, self._lock.fd):
            self._lock_gone = True
            self._lost = (
                f"the lock file {self.lock_path} was removed or replaced while this apply"
                " ran (git clean? rm?): it stopped sending"
            )
        if not self._journal_gone and self._fd is not None and not _same_file(self.path, self._fd):
            self._journal_gone = True
            self._lost = (
                "the ledger file was replaced or removed while this apply ran (git checkout,"
                " stash or pull?): it stopped sending"
            )

    def _rescue(self, data: bytes) -> None:
        """Put what this apply knows back, or beside the ledger when that is not safe.

        A checkout usually restores an older copy of the same journal, a prefix of what
        this apply holds: then the whole journal is written back. Anything else is left
        as it is and this apply's journal goes to ``<ledger>.rescued``, which every later
        apply refuses to ignore.
        """
        self._content += data
        try:
            current = self.path.read_bytes()
        except FileNotFoundError:
            current = b""
        rescue = self.path.with_name(self.path.name + ".rescued")
        ours = _same_file(self.lock_path, self._lock.fd)
        if ours and self._content.startswith(current) and not rescue.exists():
            self._write_whole(self._content)
            note = "the ledger file was put back with every event this apply wrote"
        else:
            _atomic_write(rescue, self._content)
            note = (
                f"the ledger now holds other content, so this apply's journal was saved to"
                f" {rescue}: merge its events into the ledger, then delete it"
            )
        if note not in (self._lost or ""):
            self._lost = f"{self._lost}; {note}"
        if ours and self._content.startswith(current):
            self._journal_gone = False  # the file at the path is this journal again

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

    def _write_whole(self, data: bytes) -> None:
        """Atomically make ``data`` the whole journal, and hold the new file."""
        try:
            _atomic_write(self.path, data)
            new_fd = self._open_journal()
        except OSError as exc:
            raise self._disk_error(exc) from exc
        # The old descriptor points at the replaced inode; appends must go to the new one.
        self._close()
        self._fd, self._size, self._content = new_fd, len(data), data

    def _check_regular(self) -> None:
        """A journal is a regular file: a first write would replace a symlink, a device
        or a pipe (reading /dev/zero never ends, a pipe blocks)."""
        if os.path.islink(self.path) or (os.path.exists(self.path) and not self.path.is_file()):
            raise UserError(
                "the ledger is not a regular file (a symlink, folder, device or pipe):"
                " point `state:` at a file of its own",
                path=str(self.path),
            )

    def _scan(self) -> journal.Journal:
        """Parse and fold the whole journal, noting where its last good line ends."""
        self._check_regular()
        rescued = self.path.with_name(self.path.name + ".rescued")
        if rescued.exists():
            raise UserError(
                f"{rescued} holds events an interrupted apply could not write to the ledger:"
                " merge its event lines into the ledger (they are JSON lines like its own),"
                " delete it, then run again; until then nothing is planned or sent",
                path=str(self.path),
            )
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            from xpdeploy.git import tracked_in_head

            if tracked_in_head(self.path):
                raise UserError(
                    "the ledger is committed in git (HEAD) but missing from the work tree:"
                    f" it is not a new ledger; restore it (git checkout -- {self.path})"
                    " before anything is sent",
                    path=str(self.path),
                ) from None
            return journal.empty(self.environment)
        return journal.parse(data, self.environment, str(self.path))


def _same_file(path: Path, fd: int | None) -> bool:
    if fd is None:
        return False
    try:
        now, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _atomic_write(path: Path, data: bytes) -> None:
    """Make ``data`` the whole of ``path``: temp file, fsync, rename, fsync the folder."""
    parent = path.parent
    make_dirs(parent)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 is wrong for a file meant for git
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(parent)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (one call unless the kernel splits it) and fsync."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
