"""The benchmark of issue "Performance": run it with `make bench` (or `python bench/run.py`).

Measures, on generated projects, side by side in one run:
- `xpdeploy lint` of N specs vs `check-jsonschema --schemafile schema/spec.schema.json`
  on the same files vs the bare C YAML parse of those files (the floor);
- `xpdeploy plan` of the same project (target: at most 1.2x lint);
- start-up: `xpdeploy --help` and a one-spec `lint` vs `python -c pass`, installed
  as users install it, and the floor the stack sets: importing click, ruamel.yaml
  and pydantic, then having pydantic build xpdeploy's models (what any lint must do
  before its own work); and the one-spec lint of this development install;
- memory: rendering one spec with 100,000 recipients vs the size of its body;
- apply throughput against the in-process emulator with --parallelism 8.

Prints a table of medians and ratios (markdown, for the README).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from generate import generate, wide_spec_text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The console script, as users run it (`python -m` would add runpy's own start-up).
XPDEPLOY = [shutil.which("xpdeploy", path=str(BIN)) or "xpdeploy"]

FLOOR = """
import sys
from pathlib import Path
from ruamel.yaml.cyaml import CParser
from ruamel.yaml.events import StreamEndEvent
for path in sorted(Path(sys.argv[1]).glob('*.yaml')):
    parser = CParser(path.read_text())
    while not isinstance(parser.get_event(), StreamEndEvent):
        pass
"""

MEMORY = """
import json, sys, tracemalloc
from pathlib import Path
from xpdeploy.lint import check
from xpdeploy.project import Overrides, load_project
from xpdeploy.when import utcnow
project = load_project(Path(sys.argv[1]))
tracemalloc.start()
result = check(project, ["local"], Overrides(), utcnow())
size, peak = tracemalloc.get_traced_memory()
body = result.executions["local"][0].body
print(json.dumps({"peak": peak, "body": len(json.dumps(body)), "errors": len(result.errors)}))
"""


# Start-up floors: what the chosen libraries cost before xpdeploy does anything.
LIBRARIES = "import click, ruamel.yaml.cyaml; from pydantic import BaseModel"
MODELS = (
    "import click, ruamel.yaml.cyaml\n"
    "from xpdeploy.model import ProjectFile, Spec, SpecHeader\n"
    "for model in (ProjectFile, SpecHeader, Spec): model.model_rebuild()"
)


def timed(command: list[str], cwd: Path, runs: int) -> float:
    """Median wall time of a command, in seconds; it must succeed."""
    return timed_together([command], cwd, runs)[0]


def timed_together(commands: list[list[str]], cwd: Path, runs: int) -> list[float]:
    """Median wall times of commands run in turn, so a machine that speeds up or slows
    down during the run affects them alike; each must succeed."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, series in zip(commands, times, strict=True):
            start = time.perf_counter()
            done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
            series.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(
                    f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                )
    return [statistics.median(series) for series in times]


def installed(work: Path) -> Path:
    """The python of a new venv where xpdeploy is installed as users have it: the package
    copied into site-packages and compiled, its dependencies taken from this environment
    (after it on sys.path). A development install (`pip install -e`) adds setuptools'
    import hook, which runs for every import xpdeploy makes; that is not the product."""
    venv = work / "installed"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    where = [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    purelib = Path(subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip())
    shutil.copytree(ROOT / "xpdeploy", purelib / "xpdeploy")
    compileall.compile_dir(purelib / "xpdeploy", quiet=1)
    (purelib / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def startup_rows(work: Path, recipients: int, runs: int) -> list[tuple[str, float, str]]:
    """Start-up over bare Python, as installed and as developed, with the stack's floor."""
    small = work / "small"
    generate(small, 1, recipients)
    python = str(installed(work))
    cli = [python, "-c", "import sys; from xpdeploy.cli import main; sys.exit(main())"]
    bare, libraries, models, helptime, lint, dev_bare, dev_lint = timed_together(
        [
            [python, "-c", "pass"],
            [python, "-c", LIBRARIES],
            [python, "-c", MODELS],
            [*cli, "--help"],
            [*cli, "lint"],
            [sys.executable, "-c", "pass"],
            [*XPDEPLOY, "lint"],
        ],
        small,
        runs,
    )

    def over(seconds: float, base: float = bare) -> str:
        return f"+{(seconds - base) * 1000:.0f} ms"

    return [
        ("python -c pass", bare, ""),
        ("floor: import click, ruamel.yaml, pydantic", libraries, over(libraries)),
        ("floor: the same + pydantic builds xpdeploy's models", models, over(models)),
        ("xpdeploy --help", helptime, f"{over(helptime)} (target < 150 ms)"),
        (
            "xpdeploy lint, one spec",
            lint,
            f"{over(lint)} (target < 150 ms; {(lint - models) * 1000:.0f} ms over the models floor)",
        ),
        (
            "xpdeploy lint, one spec, development install (pip install -e)",
            dev_lint,
            f"{over(dev_lint, dev_bare)} over its own python -c pass",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--recipients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big", type=int, default=100_000, help="recipients of the memory test")
    parser.add_argument("--apply", type=int, default=1000, help="executions of the apply test")
    args = parser.parse_args()
    check_jsonschema = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which(
        "check-jsonschema"
    )
    if not check_jsonschema:
        raise SystemExit("check-jsonschema is missing: pip install -e '.[bench]'")
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="xpdeploy-bench-") as tmp:
        work = Path(tmp)
        project = work / "big"
        specs = generate(project, args.specs, args.recipients)
        files = sorted(str(p) for p in specs.glob("*.yaml"))
        n = f"{args.specs} specs x {args.recipients} recipients"
        floor = timed([sys.executable, "-c", FLOOR, str(specs)], project, args.runs)
        lint = timed([*XPDEPLOY, "lint"], project, args.runs)
        plan = timed([*XPDEPLOY, "plan", "--format", "json"], project, args.runs)
        cj = timed(
            [check_jsonschema, "--schemafile", str(ROOT / "schema/spec.schema.json"), *files],
            project,
            max(1, args.runs // 2),
        )
        rows += [
            (f"bare C YAML parse ({n}), the floor", floor, f"{floor / cj:.2f}x check-jsonschema"),
            (f"check-jsonschema --schemafile ({n})", cj, "1.00x"),
            (f"xpdeploy lint ({n})", lint, f"{lint / cj:.2f}x check-jsonschema"),
            (f"xpdeploy plan ({n})", plan, f"{plan / lint:.2f}x lint (target <= 1.2x)"),
        ]
        rows += startup_rows(work, args.recipients, args.runs * 4)
        big = work / "wide"
        generate(big, 0, 0)
        (big / "campaigns" / "wide.yaml").write_text(wide_spec_text(args.big), encoding="utf-8")
        memory = json.loads(
            subprocess.run(
                [sys.executable, "-c", MEMORY, str(big)], capture_output=True, text=True, check=True
            ).stdout
        )
        ratio = memory["peak"] / memory["body"]
        rows.append(
            (
                f"render one spec of {args.big} recipients: peak traced memory",
                0.0,
                f"{memory['peak'] / 2**20:.1f} MiB = {ratio:.1f}x the {memory['body'] / 2**20:.1f} MiB body (target < 10x)",
            )
        )
        sends = work / "sends"
        generate(sends, args.apply, 2)
        env = {**os.environ, "XPDEPLOY_API_URL": "emulator"}
        start = time.perf_counter()
        done = subprocess.run(
            [*XPDEPLOY, "apply", "--auto-approve", "--parallelism", "8"],
            cwd=sends,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
        rows.append(
            (
                f"apply {args.apply} executions, --parallelism 8, emulator",
                elapsed,
                f"{args.apply / elapsed:.0f} executions/s (target >= 200)",
            )
        )
    print(
        f"| measurement (median of {args.runs}; start-up: of {args.runs * 4}) | seconds | ratio |"
    )
    print("|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.3f} | {note} |" if seconds else f"| {name} | | {note} |")


if __name__ == "__main__":
    main()
