"""Plan and apply for one environment: ledger, token, sender and guards put together."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from xpdeploy.apply import ApplyResult, Sender, check_endpoint, check_fresh, send_all
from xpdeploy.errors import UserError
from xpdeploy.execution import Execution
from xpdeploy.ledger import FileLedger, Ledger, LedgerState, LockInfo, open_ledger
from xpdeploy.model import Environment
from xpdeploy.plan import ATTENTION, Action, Plan, make_plan
from xpdeploy.planfile import SavedPlan, read_planfile
from xpdeploy.project import display_path
from xpdeploy.session import Session

EMULATOR_TOKEN = "local-emulator"  # the in-process emulator accepts any token  # noqa: S105


def read_for(session: Session, ledger: Ledger, environment: str) -> LedgerState:
    """The ledger's state, refused when it records sends to another API than this run's:
    they would count as done here (a ledger first written by a run at the emulator)."""
    state = ledger.read()
    elsewhere = check_endpoint(state, session.project.endpoint(environment))
    if elsewhere:
        raise UserError(f"{elsewhere}; nothing was sent")
    return state


def ledger_for(session: Session, environment: str | None = None) -> Ledger:
    env = environment or session.env_name
    project = session.project
    remote = project.environment(env).state_remote
    return open_ledger(project.state_value(env), env, project.root, remote)


def shown_location(ledger: Ledger) -> str:
    """Where the ledger is, for people: a file relative to here, else the backend's
    own (password-free) description."""
    if isinstance(ledger, FileLedger):
        return display_path(ledger.path)
    return ledger.location


def build_plan(
    session: Session,
    state: LedgerState,
    names: Sequence[str] = (),
    *,
    token_missing: str | None = None,
    behind: str | None = None,
) -> Plan:
    """The plan of the session's environment against ``state`` (``behind``: why that
    state may lack records, see `Ledger.behind`)."""
    executions, result = session.executions(names)
    env = session.env_name
    plan = make_plan(
        env,
        session.project.environment(env),
        executions,
        state,
        session.now,
        known_names={s.name for s in result.sources},
        token_missing=token_missing,
    )
    location = shown_location(ledger_for(session, env))
    return only(replace(plan, ledger=location, behind=behind), names)


def only(plan: Plan, names: Sequence[str]) -> Plan:
    """The plan limited to ``names`` (all of it when none are given)."""
    if not names:
        return plan
    wanted = set(names)
    return replace(plan, actions=[a for a in plan.actions if a.name in wanted])


def missing_token(session: Session, environment: str) -> str | None:
    """The variable that should hold the token, when it is empty; None for the emulator."""
    if session.project.uses_emulator(environment):
        return None
    variable = session.project.environment(environment).apptoken_env
    return None if apptoken(variable) else variable


def apptoken(variable: str) -> str:
    """The token from its variable; whitespace around it (a pasted newline) is not part of it."""
    return os.environ.get(variable, "").strip()


@contextmanager
def open_sender(session: Session, environment: str) -> Iterator[Sender]:
    """A function that sends one body; starts the built-in emulator when configured."""
    from xpdeploy.client import ExecuteClient

    project = session.project
    if project.uses_emulator(environment):
        from xpdeploy.emulator import Emulator

        emulator = Emulator(campaigns=project.config.emulator.campaigns or None)
        with emulator, ExecuteClient(emulator.start().url, EMULATOR_TOKEN) as client:
            yield client.execute
        return
    variable = project.environment(environment).apptoken_env
    token = apptoken(variable)
    if not token:  # guards block sends first; this is the last line of defence
        raise UserError(f"no apptoken: the environment variable {variable} is not set")
    with ExecuteClient(project.api_url(environment), token) as client:
        yield client.execute


def load_saved(path: Path, session: Session) -> SavedPlan:
    """A saved plan that is for this environment and not expired."""
    saved = read_planfile(path)
    if saved.plan.environment not in session.project.config.environments:
        raise UserError(
            f"the plan is for environment {saved.plan.environment!r}, which the project no longer"
            " has: nothing was sent",
            path=str(path),
        )
    if session.environment and session.environment != saved.plan.environment:
        raise UserError(
            f"the plan is for environment {saved.plan.environment!r}, not {session.environment!r}",
            path=str(path),
        )
    if session.now >= saved.expires_at:
        raise UserError(
            f"the plan expired at {saved.expires_at.isoformat()}: nothing was sent; plan again",
            path=str(path),
        )
    return saved


def _rederived(
    saved: Plan, env: Environment, state: LedgerState, session: Session, token_missing: str | None
) -> Plan:
    """The saved plan, its sends decided again from their own bodies against the ledger.

    A plan file is a file: whatever it says, a send must be one that planning those bodies
    against this ledger would make (never an execution the ledger has as applied, nor one
    body twice). Time has moved on and the token is only known now: guards run again.
    """
    sends = saved.of(Action.SEND)
    names = [a.name for a in sends]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(
            f"the saved plan sends {', '.join(twice)} more than once: the plan file was"
            " changed after it was made; nothing was sent; plan again"
        )
    executions = [
        Execution(a.name, a.revision, saved.environment, a.body or {}, "", 0) for a in sends
    ]
    derived = make_plan(
        saved.environment, env, executions, state, session.now, token_missing=token_missing
    )
    again = {a.name: a for a in derived.actions if a.name in set(names)}
    for name in names:
        if again[name].action not in (Action.SEND, Action.BLOCKED):
            raise UserError(
                f"the saved plan sends {name!r}, but against the ledger it is"
                f" {again[name].action.value} ({again[name].reason}): the plan file was changed"
                " after it was made; nothing was sent; plan again"
            )
    # A send keeps the reason it was planned with (planned against the whole project, not
    # just these bodies, it has the right hints); a blocked one says why it is blocked now.
    checked = [again[a.name] if again[a.name].action is Action.BLOCKED else a for a in sends]
    actions = [*(a for a in saved.actions if a.action is not Action.SEND), *checked]
    actions.sort(key=lambda a: (ATTENTION.index(a.action), a.name))
    return replace(saved, actions=actions)


def apply(
    session: Session,
    *,
    saved: SavedPlan | None,
    names: Sequence[str],
    parallelism: int,
    show_plan: Callable[[Plan], None],
    confirm: Callable[[Plan], bool],
    on_outcome: Callable[..., None],
    stop: threading.Event,
) -> ApplyResult | None:
    """Lock, (re)check the plan against the ledger, confirm, send. None when declined."""
    environment = saved.plan.environment if saved else session.env_name
    session.environment = environment
    token_missing = missing_token(session, environment)
    env = session.project.environment(environment)
    if saved is None:
        session.executions(names)  # lint errors stop apply before the lock is taken
    ledger = ledger_for(session, environment)
    endpoint = session.project.endpoint(environment)
    with ledger.lock(LockInfo.current("xpdeploy apply")):
        state = read_for(session, ledger, environment)
        behind = ledger.behind()
        if behind:
            shown = shown_location(ledger)
            raise UserError(f"{behind}; nothing was sent", path=shown)
        if saved is not None:
            stale = check_fresh(state, saved.plan)
            if stale:
                raise UserError(f"stale plan: {stale}; nothing was sent; plan again")
            unknown = sorted(set(names) - {a.name for a in saved.plan.actions})
            if unknown:
                raise UserError(f"not in the saved plan: {', '.join(unknown)}; nothing was sent")
            plan = only(_rederived(saved.plan, env, state, session, token_missing), names)
        else:
            plan = build_plan(session, state, names, token_missing=token_missing)
        show_plan(plan)
        if not plan.of(Action.SEND):
            return ApplyResult(plan)
        if not confirm(plan):
            return None
        with open_sender(session, environment) as sender:
            return send_all(
                ledger,
                plan,
                sender,
                parallelism=parallelism,
                on_outcome=on_outcome,
                stop=stop,
                endpoint=endpoint,
            )
