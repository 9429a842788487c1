"""Templates inside string scalars, rendered after YAML parsing.

A template can never change a document's structure: it only ever replaces one
string value. A string that is exactly one ``{{ expression }}`` yields the
expression's native value; any other string renders as text. Strings without
``{{``/``{%``/``{#`` are left alone; strings whose placeholders are all plain
variable paths (``{{ campaign_ids.welcome }}``) are filled here directly; the
rest run in Jinja's sandbox (:mod:`xpdeploy.sandbox`, loaded only then). Each
distinct template string is compiled once per process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from xpdeploy.loader import RawStr

_MARKERS = ("{{", "{%", "{#")


class TemplateProblem(Exception):
    """A template that cannot render; ``rule`` is the finding's rule id."""

    def __init__(self, rule: str, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.name = name  # the undefined variable, when that is the problem


def is_template(value: object) -> bool:
    """Whether a value is a string a template engine must see."""
    return (
        isinstance(value, str)
        and not isinstance(value, RawStr)
        and any(marker in value for marker in _MARKERS)
    )


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_LOOKUP = re.compile(rf"^\s*({_NAME}(?:\.{_NAME})*)\s*$")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_CONSTANTS = frozenset({"true", "false", "none", "True", "False", "None"})
_PLAIN_TYPES = (str, int, float, bool, type(None), list, dict)

# A compiled template string: literal text and variable paths (the fast path, for
# `{{ name.key }}` placeholders only), a native expression, or a text template.
Lookups = tuple[tuple[str, ...] | str, ...]
Compiled = tuple[Literal["lookups", "native", "text"], Any]


def _lookups(source: str) -> Lookups | None:
    """Literal text and ``{{ a.b }}`` paths, when that is all the template is."""
    if "{%" in source or "{#" in source:
        return None
    parts: list[tuple[str, ...] | str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        path = _LOOKUP.match(match.group(1))
        if path is None or path.group(1).split(".")[0] in _CONSTANTS:
            return None
        parts += [source[position : match.start()], tuple(path.group(1).split("."))]
        position = match.end()
    tail = source[position:]
    if "{{" in tail:
        return None
    parts.append(tail)
    return tuple(parts)


def _resolve(variables: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """A path's value as Jinja would give it, or KeyError to let Jinja decide."""
    value: Any = variables[path[0]]
    for key in path[1:]:
        # Jinja tries attributes before items: dict.items etc. are for Jinja to resolve.
        if not isinstance(value, dict) or hasattr(dict, key):
            raise KeyError(key)
        value = value[key]
    if not isinstance(value, _PLAIN_TYPES):
        raise KeyError(path[0])
    return value


class Renderer:
    """Renders template strings with one variable set; compiled templates are shared.

    One Renderer serves one execution: its loop budget covers all of its strings.
    """

    _compiled: dict[str, Compiled] = {}  # noqa: RUF012 - a process-wide cache on purpose

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = dict(variables)
        self._context: dict[str, Any] | None = None

    @classmethod
    def compile(cls, source: str, *, fast: bool = True) -> Compiled:
        """The compiled form of a template string; raises TemplateProblem."""
        found = cls._compiled.get(source) if fast else None
        if found is not None:
            return found
        lookups = _lookups(source) if fast else None
        if lookups is not None:
            compiled: Compiled = ("lookups", lookups)
        else:
            from xpdeploy import sandbox

            compiled = sandbox.compile_template(source)
        if fast:
            cls._compiled[source] = compiled
        return compiled

    def render(self, source: str) -> Any:
        """The rendered value: native for a single expression, else text."""
        kind, compiled = self.compile(source)
        if kind == "lookups":
            try:
                values = [
                    part if isinstance(part, str) else _resolve(self.variables, part)
                    for part in compiled
                ]
            except KeyError:  # not plain data: Jinja gives the exact value or error
                kind, compiled = self.compile(source, fast=False)
            else:
                if len(values) == 3 and not values[0].strip() and not values[2].strip():
                    return plain(values[1])
                return "".join(v if isinstance(v, str) else str(v) for v in values)
        from xpdeploy import sandbox

        if self._context is None:
            self._context = sandbox.context(self.variables)
        return sandbox.render(kind, compiled, self._context)

    def walk(
        self,
        value: Any,
        on_problem: Callable[[tuple[str | int, ...], TemplateProblem], None],
        path: tuple[str | int, ...] = (),
    ) -> Any:
        """Render every template string in a tree; untouched subtrees are returned as is."""
        if isinstance(value, str):
            if isinstance(value, RawStr):
                return str(value)
            if not is_template(value):
                return value
            try:
                rendered = self.render(value)
            except TemplateProblem as problem:
                on_problem(path, problem)
                return value
            bad = _lone_surrogate(rendered)
            if bad is not None:
                on_problem(path, TemplateProblem("template-syntax", _SURROGATE.format(bad)))
                return value
            return rendered
        if isinstance(value, dict):
            changed = False
            out: dict[str, Any] = {}
            for key, item in value.items():
                rendered = self.walk(item, on_problem, (*path, key))
                changed = changed or rendered is not item
                out[key] = rendered
            return out if changed else value
        if isinstance(value, list):
            items = [self.walk(item, on_problem, (*path, i)) for i, item in enumerate(value)]
            return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
        return value


_SURROGATE = (
    "the rendered text has {}, a lone surrogate that UTF-8 (and so the API) cannot carry;"
    " was a --var given bytes that are not UTF-8?"
)


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a rendered value's strings and keys, as ``'\\udcff'``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts: Iterable[Any] = (item,)
        elif isinstance(item, dict):
            texts = item.keys()
            stack.extend(item.values())
        else:
            if isinstance(item, list):
                stack.extend(item)
            continue
        for text in texts:
            if isinstance(text, str) and not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    return ascii(text[exc.start])
    return None


def plain(value: Any) -> Any:
    """Native results as JSON-ready values (tuples become lists, keys strings)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)  # Markup (from |safe) or RawStr (from vars) become plain text
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)
