"""Commands that read the ledger or send: plan, apply, emulator (registered on ``main``)."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from xpdeploy.cli import PLAN_FORMATS, common, main
from xpdeploy.errors import ExitCode, UserError

if TYPE_CHECKING:
    from xpdeploy.plan import Plan
    from xpdeploy.session import Session


def _ttl(value: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        amount, unit = float(value[:-1]), value[-1]
        if unit not in units or amount <= 0:
            raise ValueError
    except (ValueError, IndexError):
        raise click.BadParameter(f"{value!r}: use a number and a unit, e.g. 30m, 24h, 2d") from None
    return timedelta(seconds=amount * units[unit])


@main.command()
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Save the plan for `apply PLANFILE`.",
)
@click.option("--ttl", default="24h", show_default=True, help="How long a saved plan stays valid.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when something would be sent.")
@common
def plan(
    session: Session,
    names: tuple[str, ...],
    fmt: str,
    out: Path | None,
    ttl: str,
    detailed_exitcode: bool,
) -> None:
    """Compare the rendered executions with the ledger: what apply would send."""
    from xpdeploy.git import head_commit
    from xpdeploy.planfile import write_planfile
    from xpdeploy.report.plan import REPORTERS
    from xpdeploy.runner import build_plan, ledger_for, read_for

    lifetime = _ttl(ttl)
    ledger = ledger_for(session)
    state = read_for(session, ledger, session.env_name)
    the_plan = build_plan(session, state, names, behind=ledger.behind())
    artifact = f"plan-{the_plan.environment}"  # the artifact name campaigns-plan.yml uploads
    REPORTERS.get(fmt)(sys.stdout, session.project.config.review.redact, artifact).emit(the_plan)
    if out is not None:
        write_planfile(out, the_plan, session.now, lifetime, head_commit(session.project.root))
        click.echo(f"Saved the plan to {out}; apply it with: xpdeploy apply {out}", err=True)
    if detailed_exitcode and the_plan.has_sends:
        sys.exit(ExitCode.CHANGES)


@main.command()
@click.argument("args", nargs=-1, metavar="[PLANFILE] [NAMES]...")
@click.option("--auto-approve", is_flag=True, help="Send without asking (for CI).")
@click.option("--parallelism", type=click.IntRange(1, 64), default=4, show_default=True)
@common
def apply(session: Session, args: tuple[str, ...], auto_approve: bool, parallelism: int) -> None:
    """Send what the plan says to send, each execution exactly once."""
    from xpdeploy.report.apply import ApplyReporter
    from xpdeploy.runner import apply as run_apply
    from xpdeploy.runner import load_saved

    saved = None
    names = list(args)
    if names and Path(names[0]).is_file():  # spec names may contain dots: only a file is a plan
        saved = load_saved(Path(names.pop(0)), session)
    stop = threading.Event()
    _on_signals(stop)
    result = run_apply(
        session,
        saved=saved,
        names=names,
        parallelism=parallelism,
        show_plan=_show_plan(session),
        confirm=lambda p: auto_approve or _confirm(p),
        on_outcome=(reporter := ApplyReporter(sys.stdout)).outcome,
        stop=stop,
    )
    if result is None:
        click.echo("Apply cancelled: nothing was sent.", err=True)
        sys.exit(ExitCode.ERROR)
    if stop.is_set() and result.not_started:
        click.secho(
            f"Stopped by a signal: {len(result.not_started)} not started.", fg="yellow", err=True
        )
    reporter.summary(result)
    reporter.stopped(result, result.plan.environment, sys.stderr)
    sys.exit(ExitCode.OK if result.ok else ExitCode.ERROR)


def _host(value: str) -> str:
    if not value.strip():
        raise click.BadParameter("give an address to listen on, e.g. 127.0.0.1")
    return value


def _show_plan(session: Session) -> Any:
    from xpdeploy.report.plan import TextPlan

    def show(the_plan: Plan) -> None:
        TextPlan(sys.stdout, session.project.config.review.redact).emit(the_plan)
        sys.stdout.flush()

    return show


def _confirm(the_plan: Plan) -> bool:
    if not sys.stdin.isatty():
        raise UserError("apply needs --auto-approve when standard input is not a terminal")
    count = sum(1 for a in the_plan.actions if a.action.value == "send")
    answer = click.prompt(
        f"\nSend {count} execution(s) to environment {the_plan.environment!r}? Only 'yes' sends",
        default="",
        show_default=False,
    )
    return bool(answer.strip() == "yes")


def _on_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT stop new sends; those in flight finish and are recorded."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.secho(
            "Stopping after the sends in flight (signal again to abort).", fg="yellow", err=True
        )

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, callback=lambda c, p, v: _host(v))
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option(
    "--apptoken", envvar="XPDEPLOY_EMULATOR_APPTOKEN", help="Require this token (default: any)."
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    help="A campaign id it knows (repeatable; default: any).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append accepted requests as JSON lines.",
)
@common
def emulator(
    session: Session,
    host: str,
    port: int,
    apptoken: str | None,
    campaigns: tuple[str, ...],
    log_path: Path | None,
) -> None:
    """Run the local Xtremepush emulator (execute/campaign and info/campaign).

    Without --campaign, it knows the campaign ids of the project file's
    `emulator: {campaigns: [...]}` (the project of --project, or the one found from
    the current folder, if any); with neither, any id. -e, --var and --var-file are
    accepted, as on every command, and ignored.
    """
    from xpdeploy.emulator import serve
    from xpdeploy.project import find_project_file

    known = list(campaigns)
    if not known:
        try:  # the emulator also runs outside any project: only --project must exist
            find_project_file(explicit=session.project_path)
        except UserError:
            if session.project_path is not None:
                raise
        else:
            known = [str(c) for c in session.project.config.emulator.campaigns]
    serve(
        host, port, apptoken=apptoken, campaigns=known or None, log_path=log_path, echo=click.echo
    )


@main.command()
@click.option(
    "--base", required=True, metavar="GIT_REF", help="Compare with the project at this ref."
)
@click.option(
    "--all-envs", is_flag=True, help="Every environment (the default unless -e is given)."
)
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when any request body differs.")
@common
def diff(session: Session, base: str, all_envs: bool, fmt: str, detailed_exitcode: bool) -> None:
    """Show each execution whose request body differs from the one at GIT_REF."""
    from xpdeploy.diff import compare
    from xpdeploy.report.diff import REPORTERS

    if all_envs and session.environment:
        raise click.UsageError("give -e NAME or --all-envs, not both")
    envs = None if all_envs or not session.environment else [session.env_name]

    result = compare(session, base, envs)
    REPORTERS.get(fmt)(sys.stdout).emit(result)
    if detailed_exitcode and result.changes:
        sys.exit(ExitCode.CHANGES)
