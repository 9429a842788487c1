"""What each state backend costs: `python bench/backends.py [--sends 500] [--noop 10000]`.

Measured through the CLI, against the built-in emulator, in one run:
- apply of N executions at --parallelism 8 on the file ledger, PostgreSQL on loopback
  (a throw-away cluster from the machine's server binaries) and a git branch on a
  local bare repository; the per-send overhead of each over the file ledger;
- a no-op re-apply (everything already applied) of M executions, PostgreSQL vs file.

Prints a markdown table. Goals: PostgreSQL adds <= 2 ms per send at --parallelism 8;
its no-op re-apply is <= 1.5x the file ledger's. git's cost is per batch (a commit and
a push each), reported, not a goal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from generate import generate
from pg_server import PASSWORD, _binaries, running_server

BIN = Path(sys.executable).parent
XPDEPLOY = [shutil.which("xpdeploy", path=str(BIN)) or "xpdeploy"]
GIT = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]


def project(folder: Path, count: int, state: str) -> Path:
    generate(folder, count, 2)
    config = folder / "xpdeploy.yaml"
    config.write_text(
        config.read_text().replace("state: .xpdeploy/local.jsonl", f"state: {state!r}")
    )
    return folder


def timed_apply(folder: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [*XPDEPLOY, "apply", "-e", "local", "--auto-approve", "--parallelism", "8"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--noop", type=int, default=10_000)
    args = parser.parse_args()
    binaries = _binaries()
    if binaries is None:
        raise SystemExit("no PostgreSQL server binaries (initdb) on this machine")
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    env.pop("XPDEPLOY_API_URL", None)
    rows: list[tuple[str, float, str]] = []
    with running_server(binaries) as server, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        file_time = timed_apply(project(work / "file", args.sends, ".xpdeploy/local.jsonl"), env)
        per_file = file_time / args.sends
        rows.append(
            (f"apply {args.sends}, file ledger", file_time, f"{per_file * 1000:.2f} ms/send")
        )

        url = server.url(server.new_database())
        pg_time = timed_apply(project(work / "pg", args.sends, url), env)
        extra = (pg_time - file_time) / args.sends * 1000
        rows.append(
            (
                f"apply {args.sends}, PostgreSQL",
                pg_time,
                f"+{extra:.2f} ms/send over file (goal <= 2)",
            )
        )

        remote = work / "remote.git"
        subprocess.run([*GIT, "init", "-q", "--bare", str(remote)], check=True)
        git_dir = project(work / "git", args.sends, "git:xpdeploy-state:local.jsonl")
        subprocess.run([*GIT, "init", "-q"], cwd=git_dir, check=True)
        subprocess.run([*GIT, "remote", "add", "origin", str(remote)], cwd=git_dir, check=True)
        git_time = timed_apply(git_dir, env)
        batches = 2 * -(-args.sends // 8)  # pendings then outcomes, 8 at a time (at least)
        rows.append(
            (f"apply {args.sends}, git branch (local bare repo)", git_time,
             f"+{(git_time - file_time) / args.sends * 1000:.1f} ms/send; <= {(git_time - file_time) / batches * 1000:.0f} ms per batch commit+push")
        )  # fmt: skip

        noop_file = project(work / "noop-file", args.noop, ".xpdeploy/local.jsonl")
        timed_apply(noop_file, env)
        file_noop = timed_apply(noop_file, env)
        noop_pg = project(work / "noop-pg", args.noop, server.url(server.new_database()))
        timed_apply(noop_pg, env)
        pg_noop = timed_apply(noop_pg, env)
        rows.append((f"no-op re-apply of {args.noop}, file", file_noop, ""))
        rows.append((f"no-op re-apply of {args.noop}, PostgreSQL", pg_noop,
                     f"{pg_noop / file_noop:.2f}x file (goal <= 1.5x)"))  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores)")
    print("| measurement | seconds | result |")
    print("|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    main()
