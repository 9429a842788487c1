"""Schema validation results as findings: failing paths mapped back to source positions."""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from xpdeploy.findings import Finding
from xpdeploy.loader import Document, KeyPath

APPTOKEN = "apptoken"

# Pydantic error locations name the data path, with union member tags mixed in.
_KEY_MARKER = "[key]"


def dotted(path: KeyPath) -> str:
    """``execute.messages.3`` / ``target[0]`` as people read a body path."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(document)"


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[KeyPath, bool]:
    """The part of ``loc`` that exists in ``data``, and whether it ends at a key."""
    path: list[str | int] = []
    current = data
    for step in loc:
        if step == _KEY_MARKER:
            return tuple(path), True
        if (isinstance(current, dict) and step in current) or (
            isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current)
        ):
            current = current[step]
        elif isinstance(current, dict) and isinstance(step, str) and not path:
            path.append(step)  # a missing top-level field: point at the mapping
            break
        else:
            continue  # a union member tag such as 'str' or 'int'
        path.append(step)
    return tuple(path), False


def _alternatives(annotation: Any) -> list[Any]:
    """The types an annotation allows: Optional, unions and Annotated unwrapped."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType, Annotated):
        args = get_args(annotation)[:1] if origin is Annotated else get_args(annotation)
        return [alt for arg in args for alt in _alternatives(arg)]
    return [annotation]


def _step(annotation: Any, step: str | int) -> Any:
    """The type found one step below ``annotation`` (a field, an item, a value)."""
    for alt in _alternatives(annotation):
        origin = get_origin(alt)
        if isinstance(step, int) and origin is list:
            return get_args(alt)[0]
        if isinstance(step, str) and origin is dict:
            return get_args(alt)[1]
        if isinstance(alt, type) and issubclass(alt, BaseModel) and step in alt.model_fields:
            return alt.model_fields[step].annotation
    return None


def _known_fields(model: type[BaseModel], path: KeyPath) -> list[str]:
    """Field names of the (nested) model at ``path``, for "did you mean" hints."""
    current: Any = model
    for step in path:
        current = _step(current, step)
        if current is None:
            return []
    models = [a for a in _alternatives(current) if isinstance(a, type) and issubclass(a, BaseModel)]
    return list(models[0].model_fields) if models else []


def pydantic_findings(
    exc: ValidationError,
    document: Document,
    model: type[BaseModel],
    base: KeyPath = (),
    data: Any = None,
) -> list[Finding]:
    """One finding per failing data path of a validation error."""
    data = document.value if data is None else data
    grouped: dict[tuple[KeyPath, bool, str], list[str]] = {}
    for error in exc.errors():
        path, at_key = _data_path(tuple(error["loc"]), data)
        rule, message = _classify(error, path, at_key, model)
        at_key = at_key or rule == "unknown-field"  # point at the key that is unknown
        grouped.setdefault((path, at_key, rule), [])
        if message not in grouped[(path, at_key, rule)]:
            grouped[(path, at_key, rule)].append(message)
    findings = []
    for (path, at_key, rule), messages in grouped.items():
        where = dotted((*base, *path))
        text = " or ".join(messages) if rule == "schema" else messages[0]
        findings.append(document.at((*base, *path), rule, f"{where}: {text}", key=at_key))
    return findings


# What a pattern means, for people (the schema keeps the exact regular expression).
_PATTERN_HINTS = {
    "name": "use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
    "api_url": "use 'emulator' or an http(s) URL such as https://external-api.xtremepush.com",
    "apptoken_env": "the NAME of an environment variable, such as XPDEPLOY_APPTOKEN",
}


def _classify(error: Any, path: KeyPath, at_key: bool, model: type[BaseModel]) -> tuple[str, str]:
    kind = error["type"]
    if kind == "extra_forbidden":
        import difflib  # only a spec with an unknown field pays for it

        *parent, name = path
        known = _known_fields(model, tuple(parent))
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if not hint and tuple(parent) == () and model.__name__ == "ExecuteBody":
            hint = "; put fields the schema does not know yet under execute.extra"
        return "unknown-field", f"unknown field{hint}"
    if at_key and len(path) >= 2 and path[-2] == "messages":
        return "message-type", (
            f"message type {error['input']!r} is not one of 1 (iOS), 2 (Android), 3 (web push),"
            " 6 (inbox), 7 (email), 8 (webhook), 9 (SMS)"
        )
    if path and path[-1] == "retry_for_period":
        return "retry-period", "retry_for_period must be one of 'hours', 'days', 'weeks'"
    message = error["msg"]
    if kind == "string_pattern_mismatch":
        field = next((step for step in reversed(path) if isinstance(step, str)), "")
        message = _PATTERN_HINTS.get(str(field), message)
    if kind == "missing":
        message = f"required field {error['loc'][-1]!r} is missing"
    return "schema", message


def nodes(value: Any) -> Iterator[Any]:
    """Every mapping, list and scalar in a tree, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def has_apptoken_key(value: Any) -> bool:
    return any(
        isinstance(node, dict) and any(str(k).lower() == APPTOKEN for k in node)
        for node in nodes(value)
    )


def apptoken_findings(document: Document, base: KeyPath = ()) -> list[Finding]:
    """A key named apptoken anywhere in a document: the token belongs in the environment."""
    if not has_apptoken_key(_at(document.value, base)):
        return []  # the common case, without building a path for every node
    found: list[Finding] = []
    stack: list[tuple[KeyPath, Any]] = [(base, _at(document.value, base))]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key.lower() == APPTOKEN:
                    found.append(
                        document.at(
                            (*path, key),
                            "apptoken-in-file",
                            "never write the apptoken in a file: CI reads it from the environment"
                            " variable that the environment's apptoken_env names",
                            key=True,
                        )
                    )
                else:
                    stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
    return found


def state_secret_findings(document: Document) -> list[Finding]:
    """A ``state:`` URL with a password in it (never echoed: the finding names the key)."""
    from urllib.parse import urlsplit

    environments = document.value.get("environments") if isinstance(document.value, dict) else None
    found = []
    for name, env in (environments or {}).items() if isinstance(environments, dict) else ():
        state = env.get("state") if isinstance(env, dict) else None
        if not isinstance(state, str) or "://" not in state:
            continue
        try:
            password = urlsplit(state).password
        except ValueError:
            password = None
        if password:
            found.append(
                document.at(
                    ("environments", name, "state"),
                    "secret-in-file",
                    "the state URL holds a password: drop it from the URL and give it to libpq"
                    " through PGPASSWORD or ~/.pgpass (a CI secret), or put the whole URL in a"
                    " secret variable and name it with state_env",
                )
            )
    return found


def _at(value: Any, path: KeyPath) -> Any:
    for step in path:
        value = value[step]
    return value
