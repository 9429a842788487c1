"""An exclusive, non-blocking OS file lock that names its holder and dies with its process."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from xpdeploy.ledger.base import LockHeld, LockInfo

FREE_MESSAGE = "no lock was held (file locks end with their process)"


class FileLock:
    """``flock(LOCK_EX | LOCK_NB)`` on ``path``; the holder's `LockInfo` is written inside.

    The kernel drops an flock when its process dies, so a lock file left by a killed
    process is only a stale description: its contents never block anyone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int | None:
        """The descriptor holding the lock, to check the path still names its file."""
        return self._fd

    def acquire(self, info: LockInfo) -> None:
        """Take the lock at once, or raise `LockHeld` naming the holder."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this object")
        fd = self._open_locked()
        if fd is None:
            raise LockHeld(str(self.path), self.holder())
        try:
            data = json.dumps(info.as_dict(), sort_keys=True).encode() + b"\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (removing first keeps no race open)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Only our own file: if it was deleted under us, the one there now is another's.
            if _is_file_of(self.path, fd):
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        finally:
            os.close(fd)

    def holder(self) -> LockInfo | None:
        """The description the holder wrote, or None if there is none readable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LockInfo.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def unlock(self) -> str:
        """Remove a stale lock file; refuse while a live process holds the lock."""
        if not self.path.exists():
            return FREE_MESSAGE
        fd = self._open_locked()
        if fd is None:
            raise LockHeld(
                str(self.path),
                self.holder(),
                hint="a file lock ends with its process, so stop that process "
                "(or let it finish) instead of unlocking",
            )
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        finally:
            os.close(fd)
        return f"removed {self.path}: {FREE_MESSAGE}"

    def _open_locked(self) -> int | None:
        """An fd holding the lock on the file now at ``path``, or None if another holds it."""
        make_dirs(self.path.parent)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            # The holder we waited on may have removed the file before letting go; then
            # we locked an orphaned inode while a newcomer locks the new file. Try again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)


def _is_file_of(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, syncing each new entry into its parent."""
    if directory.is_dir():
        return
    make_dirs(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
    fsync_dir(directory.parent)


def fsync_dir(directory: Path) -> None:
    """Make renames and new entries in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
