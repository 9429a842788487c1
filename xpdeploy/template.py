"""Jinja2 inside string scalars, in the sandbox, after YAML parsing.

A template can never change a document's structure: it only ever replaces one
string value. A string that is exactly one ``{{ expression }}`` yields the
expression's native value; any other string renders as text. Each distinct
template string is compiled once per process; strings without ``{{``/``{%``/``{#``
never reach Jinja at all.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from xpdeploy.loader import RawStr

MAX_RANGE = 100_000  # items one range() may yield
MAX_ITERATIONS = 1_000_000  # range() items per rendered string, all loops together
MAX_OUTPUT = 1_000_000  # characters a string or sequence may grow to by * or **

_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%|\{#).)*)\}\}\s*$", re.S)


class TemplateProblem(Exception):
    """A template that cannot render; ``rule`` is the finding's rule id."""

    def __init__(self, rule: str, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.name = name  # the undefined variable, when that is the problem


def is_template(value: object) -> bool:
    """Whether a value is a string Jinja must see."""
    return (
        isinstance(value, str)
        and not isinstance(value, RawStr)
        and any(marker in value for marker in _MARKERS)
    )


class _Budget:
    """Counts range() items across one rendering, so nested loops cannot run forever."""

    def __init__(self) -> None:
        self.used = 0

    def range(self, *args: int) -> Iterator[int]:
        items = range(*args)
        if len(items) > MAX_RANGE:
            raise SecurityError(f"range() of {len(items)} items exceeds the limit of {MAX_RANGE}")
        for item in items:
            self.used += 1
            if self.used > MAX_ITERATIONS:
                raise SecurityError(f"templates may loop at most {MAX_ITERATIONS} times")
            yield item


def _sized(value: object) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


# A format width or precision of 7+ digits ('{:>10000000}', '%10000000s') builds a
# string of that size before anything could measure it.
_WIDE_FORMAT = re.compile(r"(?:\{[^{}]*:[^{}]*|%[-+ #0]*)\d{7,}")


def _check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse the arguments that make filters and methods build huge results."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT:
            raise SecurityError(f"number {value} is larger than templates allow ({MAX_OUTPUT})")
        if isinstance(value, str) and _WIDE_FORMAT.search(value):
            raise SecurityError("format width or precision too large")


def _check_result(value: Any) -> Any:
    if _sized(value) > MAX_OUTPUT:
        raise SecurityError(f"result longer than {MAX_OUTPUT} items")
    return value


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test with its arguments and result size checked."""

    @functools.wraps(function)  # keeps jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        return _check_result(function(*args, **kwargs))

    return guarded


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on what can exhaust memory or time."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guarded(f) for name, f in self.filters.items()}

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        receiver = getattr(value, "__self__", None)
        if isinstance(receiver, str) and _WIDE_FORMAT.search(receiver):
            raise SecurityError("format width or precision too large")
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "%":
            _check_arguments((left,), {})
            return _check_result(operator.mod(left, right))
        if operator_name == "**":
            huge = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
            if huge and right > 0 and left.bit_length() * right > 100_000:
                raise SecurityError("power too large")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            if _sized(seq) and isinstance(count, int) and _sized(seq) * count > MAX_OUTPUT:
                raise SecurityError(f"result longer than {MAX_OUTPUT} items")
        return operator.mul(left, right)


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


def _native_template(env: _Sandbox, expression: str) -> Any:
    """A template that stores the expression's value as ``result`` (as Jinja's own does)."""
    parser = Parser(env, expression, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    expr.set_environment(env)
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr)], lineno=1)
    return env.from_string(body)


class Renderer:
    """Renders template strings with one variable set; compiled templates are shared.

    One Renderer serves one execution: its loop budget covers all of its strings.
    """

    _env: _Sandbox | None = None
    _compiled: dict[str, Compiled] = {}  # noqa: RUF012 - a process-wide cache on purpose

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = dict(variables)
        self._context: dict[str, Any] | None = None

    @classmethod
    def env(cls) -> _Sandbox:
        if cls._env is None:
            # No loader: {% include %} and {% import %} have nothing to read.
            cls._env = _Sandbox(
                undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
            )
        return cls._env

    @classmethod
    def compile(cls, source: str, *, fast: bool = True) -> Compiled:
        """The compiled form of a template string; raises TemplateProblem."""
        found = cls._compiled.get(source) if fast else None
        if found is not None:
            return found
        cached: Compiled
        lookups = _lookups(source) if fast else None
        if lookups is not None:
            cached = ("lookups", lookups)
        else:
            env = cls.env()
            match = _SINGLE_EXPRESSION.match(source)
            try:
                if match and match.group("expr").strip():
                    cached = ("native", _native_template(env, match.group("expr")))
                else:
                    cached = ("text", env.from_string(source))
            except TemplateSyntaxError as exc:
                raise TemplateProblem(
                    "template-syntax", f"template syntax error: {exc.message}"
                ) from None
        if fast:
            cls._compiled[source] = cached
        return cached

    def _jinja_context(self) -> dict[str, Any]:
        if self._context is None:
            budget = _Budget()
            self._context = {**self.env().globals, **self.variables, "range": budget.range}
        return self._context

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
                    return _plain(values[1])
                return "".join(v if isinstance(v, str) else str(v) for v in values)
        try:
            template = compiled
            context = template.new_context(self._jinja_context(), shared=True)
            if kind == "native":
                for _ in template.root_render_func(context):
                    pass
                return _plain(context.vars["result"])
            return _bounded_join(template.root_render_func(context))
        except UndefinedError as exc:
            raise _undefined(exc) from None
        except SecurityError as exc:
            raise TemplateProblem("template-syntax", f"not allowed in a template: {exc}") from None
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                "template-syntax", f"template syntax error: {exc.message}"
            ) from None
        except (
            ArithmeticError,
            TypeError,
            ValueError,
            LookupError,
            AttributeError,
            NameError,
        ) as exc:
            # NameError: Jinja folds e.g. 1e999 to a constant its code generator cannot name.
            raise TemplateProblem("template-syntax", f"template failed: {exc}") from None

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
                return self.render(value)
            except TemplateProblem as problem:
                on_problem(path, problem)
                return value
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


def _bounded_join(chunks: Iterator[str]) -> str:
    """Text output, stopped as soon as it grows past MAX_OUTPUT characters."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise SecurityError(f"output longer than {MAX_OUTPUT} characters")
        out.append(chunk)
    return "".join(out)


def _plain(value: Any) -> Any:
    """Native results as JSON-ready values (tuples → lists, Undefined refused)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return str(value)


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_UNDEFINED_ATTR = re.compile(r"has no attribute '([^']+)'$")


def _undefined(exc: UndefinedError) -> TemplateProblem:
    text = exc.message or "undefined variable"
    match = _UNDEFINED_NAME.match(text) or _UNDEFINED_ATTR.search(text)
    name = match.group(1) if match else None
    return TemplateProblem("undefined-variable", text, name)
