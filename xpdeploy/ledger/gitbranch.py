"""The git-branch backend: the file journal, kept on a branch of the remote.

For CI without a database. The journal is never in the work tree: xpdeploy fetches
the branch into a private ref, builds each new commit with git's plumbing (a private
index file, `commit-tree`), and pushes it before the batch's requests leave. A push
that is not a fast-forward means someone else wrote: this apply stops. The lease is
a small JSON file beside the journal on the same branch, renewed by a push; it lapses
when its holder stops renewing it (holders' clocks are trusted to within seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
from xpdeploy.ledger.postgres import lease_seconds

_BRANCH = re.compile(r"^(?!/)(?!.*(?:\.\.|//|@\{|\.lock$|/$))[A-Za-z0-9._/-]+$")
_COMMITTER = {
    "GIT_AUTHOR_NAME": "xpdeploy",
    "GIT_AUTHOR_EMAIL": "xpdeploy@localhost",
    "GIT_COMMITTER_NAME": "xpdeploy",
    "GIT_COMMITTER_EMAIL": "xpdeploy@localhost",
}


class GitBranchLedger:
    """One environment's journal at ``path`` on ``branch`` of ``remote``."""

    def __init__(self, root: Path, remote: str, branch: str, path: str, environment: str) -> None:
        self.root = root
        self.remote = remote
        self.branch = branch
        self.path = path
        self.environment = environment
        self._ref = f"refs/xpdeploy/state/{branch}"
        self._mutex = threading.Lock()
        self._tip: str | None = None
        self._content = b""
        self._header: dict[str, Any] | None = None
        self._token = 0
        self._holder: dict[str, Any] = {}
        self._lost: str | None = None
        self._valid_until = 0.0
        self._ttl = 60.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @classmethod
    def from_state(cls, state: str, environment: str, root: Path, remote: str) -> GitBranchLedger:
        """``git:BRANCH:PATH``, checked: a branch git accepts, a relative path."""
        _, _, rest = state.partition(":")
        branch, _, path = rest.partition(":")
        parts = Path(path).parts
        if not _BRANCH.match(branch) or not path or Path(path).is_absolute() or ".." in parts:
            raise UserError(
                f"state {state!r} of environment {environment!r} is not git:BRANCH:PATH with a"
                " branch name and a relative path (e.g. git:xpdeploy-state:production.jsonl)"
            )
        return cls(root, remote, branch, Path(path).as_posix(), environment)

    @property
    def location(self) -> str:
        return f"git:{self.branch}:{self.path} on {self.remote}"

    def behind(self) -> str | None:
        return None  # every read fetches the branch first

    # -- reading -------------------------------------------------------------------

    def read(self) -> LedgerState:
        return self._parse(self._fetch_content()[1]).state

    def history(self) -> History:
        scan = self._parse(self._fetch_content()[1])
        return History(self.environment, scan.state.lineage, scan.serial_offset, scan.events)

    def _parse(self, data: bytes | None) -> journal.Journal:
        if data is None:
            return journal.empty(self.environment)
        return journal.parse(data, self.environment, self.location)

    def _fetch_content(self) -> tuple[str | None, bytes | None]:
        """Fetch the branch; its tip and the journal there (None: no branch or no file)."""
        fetched = self._git(
            "fetch", "--quiet", "--no-tags", self.remote,
            f"+refs/heads/{self.branch}:{self._ref}", check=False,
        )  # fmt: skip
        if fetched.returncode != 0:
            if "couldn't find remote ref" not in fetched.stderr:
                raise UserError(f"cannot fetch the state branch: {_last_line(fetched.stderr)}")
            self._git("update-ref", "-d", self._ref, check=False)
            return None, None
        tip = self._git("rev-parse", "--verify", self._ref).stdout.strip()
        return tip, self._blob(tip, self.path)

    def _blob(self, tip: str, path: str) -> bytes | None:
        shown = self._git("cat-file", "blob", f"{tip}:{path}", check=False, text=False)
        return shown.stdout if shown.returncode == 0 else None

    # -- the lease -----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, info: LockInfo) -> Iterator[GitBranchLedger]:
        self._ttl = lease_seconds()
        with self._mutex:
            tip, data = self._fetch_content()
            scan = self._parse(data)
            lease = self._lease_at(tip)
            if lease and not lease.get("released") and lease.get("expires_at", 0) > time.time():
                raise LockHeld(self.location, _holder(lease), what="lease on")
            self._tip, self._header = tip, scan.header
            self._content = data[: scan.valid_size] if data else b""
            if scan.unterminated:
                self._content += b"\n"
            self._token = int(lease.get("token", 0)) + 1 if lease else 1
            self._holder = info.as_dict()
            self._lost = None
            if not self._commit(self._lease(False), "xpdeploy: lease taken"):
                # Another apply pushed its lease first: name it, as the remote has it now.
                tip, _ = self._fetch_content()
                raise LockHeld(self.location, _holder(self._lease_at(tip) or {}), what="lease on")
            self._valid_until = time.monotonic() + self._ttl
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
                if self._lost is None:
                    with contextlib.suppress(UserError):
                        self._commit(self._lease(True), "xpdeploy: lease released")
                self._tip = None

    def _renew(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            with self._mutex:
                if self._lost is not None or self._stop.is_set():
                    return
                try:
                    pushed = self._commit(self._lease(False), "xpdeploy: lease renewed")
                except UserError:
                    continue  # the remote is away: try again; expiry decides
                if not pushed:
                    self._lost = "someone else wrote to the state branch (the lease was taken)"
                    return
                self._valid_until = time.monotonic() + self._ttl

    def _lease(self, released: bool) -> bytes:
        lease = {
            "environment": self.environment,
            "expires_at": time.time() + self._ttl,
            "holder": self._holder,
            "released": released,
            "token": self._token,
        }
        return json.dumps(lease, sort_keys=True, indent=1).encode() + b"\n"

    def _lease_at(self, tip: str | None) -> dict[str, Any] | None:
        data = self._blob(tip, self.path + ".lease") if tip else None
        try:
            lease = json.loads(data) if data else None
        except ValueError:
            return None
        return lease if isinstance(lease, dict) else None

    def check(self) -> None:
        if self._lost is None and time.monotonic() > self._valid_until - self._ttl / 6:
            self._lost = "the lease on the state branch could not be renewed in time"
        if self._lost is not None:
            raise LeaseLost(f"{self._lost}: this apply stopped sending", path=self.location)

    def unlock(self) -> str:
        tip, _ = self._fetch_content()
        lease = self._lease_at(tip)
        if not lease or lease.get("released") or lease.get("expires_at", 0) <= time.time():
            return "no lease was held (it had ended or lapsed)"
        self._tip, self._token, self._holder = tip, int(lease.get("token", 0)), lease["holder"]
        if not self._commit(self._lease(True), "xpdeploy: lease ended by state unlock"):
            raise UserError("the state branch moved while ending the lease: run it again")
        who = _holder(lease)
        return f"ended the lease of {who.describe() if who else 'an unnamed holder'}"

    # -- writing -------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._mutex:
            self._need_lease()
            body = b"".join(journal.encode_line(e.to_dict()) for e in events)
            if self._header is None:
                self._header = journal.new_header(self.environment)
                content = journal.encode_line(self._header) + body
            else:
                content = self._content + body
            self._push_journal(content, f"xpdeploy: {len(events)} event(s) for {self.environment}")

    def compact(self) -> None:
        with self._mutex:
            self._need_lease()
            scan = self._parse(self._content or None)
            if scan.header is None or not scan.state.records:
                return
            header = dict(scan.header)
            header["serial_offset"] = scan.state.serial - len(scan.state.records)
            header["compacted_at"] = utc_now()
            events = [Event.from_record(r) for r in scan.state.records.values()]
            self._header = header
            self._push_journal(journal.encode(header, events), "xpdeploy: compacted")

    def adopt(self, history: History) -> None:
        with self._mutex:
            self._need_lease()
            if self._header is not None:
                raise UserError(
                    "the target ledger already has events: migrate only into an empty one",
                    path=self.location,
                )
            if not history.events:
                raise UserError("the ledger to migrate has no events: nothing to copy")
            header = journal.new_header(self.environment, history.lineage, history.serial_offset)
            self._header = header
            self._push_journal(journal.encode(header, history.events), "xpdeploy: migrated")

    def _need_lease(self) -> None:
        if not self._holder or self._tip is None:
            raise RuntimeError("the git ledger must be locked before it is written")
        if self._lost is not None:
            raise LeaseLost(f"{self._lost}: this apply stopped sending", path=self.location)

    def _push_journal(self, content: bytes, message: str) -> None:
        if not self._commit(self._lease(False), message, journal_bytes=content):
            self._lost = "someone else wrote to the state branch (a rejected push)"
            raise LeaseLost(f"{self._lost}: this apply stopped sending", path=self.location)
        self._content = content
        self._valid_until = time.monotonic() + self._ttl

    def _commit(self, lease: bytes, message: str, journal_bytes: bytes | None = None) -> bool:
        """Commit the lease (and journal) on top of the known tip and push it; False when
        the push is refused as not a fast-forward. Touches neither work tree nor index."""
        files = {self.path + ".lease": lease}
        if journal_bytes is not None:
            files[self.path] = journal_bytes
        with tempfile.TemporaryDirectory(prefix="xpdeploy-index-") as folder:
            index = {"GIT_INDEX_FILE": os.path.join(folder, "index")}
            if self._tip:
                self._git("read-tree", self._tip, env=index)
            for name, data in files.items():
                blob = self._git("hash-object", "-w", "--stdin", input=data).stdout.strip()
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}",
                          env=index)  # fmt: skip
            tree = self._git("write-tree", env=index).stdout.strip()
        parents = ["-p", self._tip] if self._tip else []
        commit = self._git("commit-tree", tree, *parents, "-m", message, env=_COMMITTER)
        sha = commit.stdout.strip()
        pushed = self._git(
            "push", "--quiet", "--porcelain", self.remote, f"{sha}:refs/heads/{self.branch}",
            check=False,
        )  # fmt: skip
        if pushed.returncode != 0:
            if "rejected" in pushed.stdout or "rejected" in pushed.stderr:
                return False
            raise UserError(f"cannot push the state branch: {_last_line(pushed.stderr)}")
        self._git("update-ref", self._ref, sha)
        self._tip = sha
        return True

    def _git(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        input: bytes | None = None,
        text: bool = True,
    ) -> subprocess.CompletedProcess[Any]:
        from xpdeploy.git import environment

        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.root,
                env={**environment(), "GIT_TERMINAL_PROMPT": "0", **(env or {})},
                input=input,
                capture_output=True,
                check=False,
            )
        except OSError as exc:
            raise UserError(f"a git:BRANCH:PATH state needs git ({exc.strerror})") from None
        if check and done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace")
            raise UserError(f"git {args[0]} failed for the state branch: {_last_line(err)}")
        if text:
            return subprocess.CompletedProcess(
                done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
                done.stderr.decode("utf-8", "replace"),
            )  # fmt: skip
        return done


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"


def _holder(lease: dict[str, Any]) -> LockInfo | None:
    try:
        return LockInfo.from_dict(lease["holder"])
    except (TypeError, ValueError, KeyError):
        return None
