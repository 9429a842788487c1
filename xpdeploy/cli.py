"""Command line: parse options, call the core, pick a reporter. Nothing else.

Heavy modules (pydantic, jinja2, httpx) are imported inside the commands that use
them, so ``xpdeploy --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from xpdeploy import __version__
from xpdeploy.errors import ExitCode, UserError

if TYPE_CHECKING:
    from xpdeploy.session import Session

F = TypeVar("F", bound=Callable[..., Any])

LINT_FORMATS = ["text", "json", "github", "sarif"]  # kept equal to the reporter registry by a test
PLAN_FORMATS = ["text", "markdown", "json"]


def fail(message: str, code: int = ExitCode.ERROR) -> None:
    """A short red message on stderr and the exit code."""
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


# Commands defined in other modules, which register themselves on `main` when imported:
# a command line imports only its own command's module (`--help` imports them all).
LAZY_COMMANDS = {
    "plan": "xpdeploy.cli_deploy",
    "apply": "xpdeploy.cli_deploy",
    "diff": "xpdeploy.cli_deploy",
    "emulator": "xpdeploy.cli_deploy",
    "state": "xpdeploy.cli_state",
}


class Boundary(click.Group):
    """The one place where user errors (and OS errors: the user's files or machine) become
    messages, a closed stdout a quiet exit 1, and bugs one line."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            importlib.import_module(LAZY_COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(LAZY_COMMANDS.values())):
            importlib.import_module(module)
        return super().list_commands(ctx)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # A file name or --var that is not UTF-8 reaches Python as lone surrogates; shown
        # as \udcff escapes they cannot crash a report (and JSON output stays valid).
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(errors="backslashreplace")
        # click exits 2 on usage errors; 2 means "changes" under --detailed-exitcode.
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            exc.show()
            sys.exit(ExitCode.ERROR)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(ExitCode.ERROR)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                # A reader that closed early (`| head`) must fail here, not in the
                # interpreter's last flush after the boundary is gone.
                sys.stdout.flush()
        except UserError as exc:
            from xpdeploy.errors import FindingsError

            if isinstance(exc, FindingsError):
                from xpdeploy.report.findings import TextReporter

                TextReporter(sys.stderr, summary=False).emit(exc.findings, 0)
            fail(str(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            _stdout_closed()
        except OSError as exc:  # the user's files or machine, not a bug
            _traceback_on_debug(ctx)
            fail(_os_error_message(exc))
        except Exception as exc:
            _traceback_on_debug(ctx)
            fail(
                f"internal error (a bug in xpdeploy {__version__}): {type(exc).__name__}: {exc}"
                " — run again with --debug for the traceback"
            )


def _traceback_on_debug(ctx: click.Context) -> None:
    if ctx.meta.get("xpdeploy.debug"):
        import traceback

        traceback.print_exc()


def _os_error_message(exc: OSError) -> str:
    """``path: reason``, as the shell says it, without the ``[Errno N]`` noise."""
    if exc.filename is None or not exc.strerror:
        return exc.strerror or str(exc)
    where = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {exc.strerror}"


def _stdout_closed() -> None:
    """The reader of stdout went away (``| head``): exit 1 quietly (Python docs, SIGPIPE)."""
    # Later flushes, the interpreter's own at exit included, must not fail again.
    # (In-process tests give stdout no file descriptor: nothing to redirect then.)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(ExitCode.ERROR)


_COMMON_OPTIONS = (
    click.option(
        "--project", "project", type=click.Path(path_type=Path), help="Project file or its folder."
    ),
    click.option(
        "-e", "--env", "env", metavar="NAME", help="Environment (default: default_environment)."
    ),
    click.option(
        "--var", "var", multiple=True, metavar="KEY=VALUE", help="Set a variable (repeatable)."
    ),
    click.option(
        "--var-file",
        "var_file",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="Read variables from a YAML file (repeatable).",
    ),
    click.option("--debug", is_flag=True, help="Show tracebacks of internal errors."),
)


def common(func: F) -> F:
    """--project, -e/--env, --var, --var-file, --debug on every command; passes a Session."""
    return _with_common_options(func, pass_session=True)


def common_ignored(func: F) -> F:
    """The same options on a command that has no use for them: accepted (SPEC §4) and
    ignored; only --debug acts. Say so in the command's help."""
    return _with_common_options(func, pass_session=False)


def _with_common_options(func: F, *, pass_session: bool) -> F:
    @functools.wraps(func)
    def wrapper(
        project: Path | None,
        env: str | None,
        var: tuple[str, ...],
        var_file: tuple[Path, ...],
        debug: bool,
        **kwargs: Any,
    ) -> Any:
        click.get_current_context().meta["xpdeploy.debug"] = debug
        if not pass_session:
            return func(**kwargs)
        from xpdeploy.project import Overrides
        from xpdeploy.session import Session

        return func(Session(project, env, Overrides(var_file, var)), **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_COMMON_OPTIONS):
        decorated = option(decorated)
    return decorated  # type: ignore[return-value]


@click.group(cls=Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xpdeploy")
def main() -> None:
    """Campaign-as-code for the Xtremepush external API.

    Keep each execute-campaign request as a YAML spec in git; lint and plan it in
    pull requests; apply it from CI exactly once.
    """


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option("--all-envs", is_flag=True, help="Check every environment, not just one.")
@click.option("--format", "fmt", type=click.Choice(LINT_FORMATS), default="text", show_default=True)
@click.option("--strict", is_flag=True, help="Warnings fail too.")
@common
def lint(session: Session, paths: tuple[Path, ...], all_envs: bool, fmt: str, strict: bool) -> None:
    """Check specs against the schema and the API's rules."""
    from xpdeploy.errors import FindingsError
    from xpdeploy.report.findings import REPORTERS

    reporter = REPORTERS.get(fmt)(sys.stdout)
    try:
        project = session.project
    except FindingsError as exc:  # the project file itself is broken: still a report
        reporter.emit(exc.findings, 0)
        sys.exit(ExitCode.ERROR)
    if all_envs and session.environment:
        raise click.UsageError("give -e NAME or --all-envs, not both")
    envs = list(project.config.environments) if all_envs else [session.env_name]

    files, shown = project.files_named(paths) if paths else (None, set())
    result = session.check(envs, files)
    findings = result.findings
    if paths:
        findings = [f for f in findings if f.path in shown]
    reporter.emit(findings, len(shown) if paths else len(project.spec_files))

    failing = [f for f in findings if strict or f.severity.value == "error"]
    sys.exit(ExitCode.ERROR if failing else ExitCode.OK)


@main.command()
@click.argument("names", nargs=-1)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write one file per execution into this folder.",
)
@common
def render(session: Session, names: tuple[str, ...], fmt: str, out_dir: Path | None) -> None:
    """Print the exact request bodies (apptoken shown as ***)."""
    from xpdeploy.report.render import write_files, write_stream

    executions, result = session.executions(names)
    _warn(result.findings, {e.path for e in executions})
    project = session.project
    redact = project.config.review.redact
    if out_dir is not None:
        if out_dir.resolve().is_relative_to(project.campaigns_dir.resolve()):
            raise UserError(
                f"render --out {out_dir} is in the specs' folder, and rendered bodies are not"
                " specs: choose a folder outside it; nothing was written"
            )
        inputs = [*project.input_files(), *session.overrides.var_files]
        for path in write_files(executions, out_dir, fmt, redact, inputs):
            click.echo(f"wrote {path}", err=True)
    else:
        write_stream(sys.stdout, session.env_name, executions, fmt, redact)


def _warn(findings: list[Any], paths: set[str]) -> None:
    """Warnings about the files of the executions at hand, on stderr."""
    from xpdeploy.report.findings import TextReporter

    warnings = [f for f in findings if f.severity.value == "warning" and f.path in paths]
    TextReporter(sys.stderr, summary=False).emit(warnings, 0)


@main.command()
@click.option("--write", is_flag=True, help="Rewrite the files instead of printing them.")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("schema"),
    show_default=True,
    help="Where --write puts them.",
)
@common_ignored
def schema(write: bool, folder: Path) -> None:
    """Print or rewrite the JSON Schemas (spec, project file, request body).

    The schemas are the same for every project: --project, -e, --var and --var-file
    are accepted, as on every command, and ignored.
    """
    from xpdeploy import schema as schemas

    if write:
        for path in schemas.write_all(folder):
            click.echo(f"wrote {path}")
        return
    import json

    documents = {name: json.loads(text) for name, text in schemas.render_all().items()}
    click.echo(json.dumps(documents, indent=2))


@main.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@common_ignored
def init(directory: Path) -> None:
    """Write a starter project: xpdeploy.yaml, one spec, the schema for editors.

    The project goes into DIRECTORY: --project, -e, --var and --var-file are
    accepted, as on every command, and ignored.
    """
    from xpdeploy.starter import write_starter

    for path in write_starter(directory):
        click.echo(f"created {path}")
    click.echo("next: xpdeploy lint && xpdeploy plan")
