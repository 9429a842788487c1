"""Jinja2's immutable sandbox, with limits on what can exhaust memory or time.

Imported only when a template needs Jinja: ``{{ name.key }}`` placeholders are
filled by :mod:`xpdeploy.template` without it, so most projects never load it.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import soft_str

from xpdeploy.template import TemplateProblem, plain

MAX_RANGE = 100_000  # items one range() may yield
MAX_ITERATIONS = 1_000_000  # range() items per execution, all loops together
MAX_OUTPUT = 1_000_000  # characters or items any string, list or output may grow to

_TOO_DEEP = "templates may not recurse this deep (a recursive macro, or brackets nested too deep)"
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%|\{#).)*)\}\}\s*$", re.S)


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
    """Items plus the characters of the strings inside, counted until past MAX_OUTPUT.

    A list of a million references to one long string is small in memory but huge
    once joined or serialised, so the strings inside count too.
    """
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple, dict)):
        return 0
    total = 0
    stack: list[Any] = [value]
    while stack and total <= MAX_OUTPUT:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.values())
    return total


# A format width or precision of 7+ digits ('{:>10000000}', '%10000000s') builds a
# string of that size before anything could measure it.
_WIDE_FORMAT = re.compile(r"(?:\{[^{}]*:[^{}]*|%[-+ #0]*)\d{7,}")


def _nondeterministic(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SecurityError(
            f"{what} gives a different body at every render, so the body sent would not be"
            " the body reviewed"
        )

    return refuse


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


class _CheckedConcat(CodeGenerator):
    """Jinja's code generator, with ``a ~ b`` measured before the string is built."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja joins with str_join or markup_join, out of the sandbox's reach; this
        # picks between them exactly as Jinja does, but calls the environment instead.
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.volatile"
        elif frame.eval_ctx.autoescape:
            markup = "True"
        else:
            markup = "False"
        self.write(f"environment.concat_checked({markup}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on what can exhaust memory or time."""

    code_generator_class = _CheckedConcat
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Reviewed bodies must be the bodies sent: nothing may differ between two renders.
        self.filters["random"] = _nondeterministic("the random filter")
        self.globals["lipsum"] = _nondeterministic("lipsum()")
        self.filters = {name: _guarded(f) for name, f in self.filters.items()}

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        receiver = getattr(value, "__self__", None)
        if isinstance(receiver, str) and _WIDE_FORMAT.search(receiver):
            raise SecurityError("format width or precision too large")
        return super().wrap_str_format(value)

    def concat_checked(self, markup: bool, parts: tuple[Any, ...]) -> str:
        """``a ~ b ~ ...``: the parts as strings, refused if together they are too long."""
        strings = [soft_str(part) if markup else str(part) for part in parts]
        if sum(map(len, strings)) > MAX_OUTPUT:
            raise SecurityError(f"result longer than {MAX_OUTPUT} items")
        joined = markup_join(strings) if markup else str_join(strings)
        _check_result(joined)  # escaping can still grow a markup join a few times
        return joined

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "+":
            if _sized(left) + _sized(right) > MAX_OUTPUT:
                raise SecurityError(f"result longer than {MAX_OUTPUT} items")
            return operator.add(left, right)
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


def _native_template(env: _Sandbox, expression: str) -> Any:
    """A template that stores the expression's value as ``result`` (as Jinja's own does)."""
    parser = Parser(env, expression, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    expr.set_environment(env)
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr)], lineno=1)
    return env.from_string(body)


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


class _Undefined(StrictUndefined):
    """StrictUndefined that also fails when shown inside a list or tuple, where Jinja
    would otherwise write the word "Undefined" into the body."""

    __slots__ = ()
    __repr__ = StrictUndefined._fail_with_undefined_error


_ENV: _Sandbox | None = None


def environment() -> _Sandbox:
    global _ENV
    if _ENV is None:
        # No loader: {% include %} and {% import %} have nothing to read.
        _ENV = _Sandbox(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
    return _ENV


def compile_template(source: str) -> tuple[Literal["native", "text"], Any]:
    """A single ``{{ expression }}`` compiles to a native value, anything else to text."""
    env = environment()
    match = _SINGLE_EXPRESSION.match(source)
    try:
        if match and match.group("expr").strip():
            return "native", _native_template(env, match.group("expr"))
        return "text", env.from_string(source)
    except Exception as exc:  # compiling folds constants: it can fail as rendering does
        raise _problem(exc) from None


def _problem(exc: Exception) -> TemplateProblem:
    """What a template's failure, at compile or render time, tells the spec's author."""
    if isinstance(exc, UndefinedError):
        return _undefined(exc)
    if isinstance(exc, TemplateSyntaxError):
        return TemplateProblem("template-syntax", f"template syntax error: {exc.message}")
    if isinstance(exc, SecurityError):
        return TemplateProblem("template-syntax", f"not allowed in a template: {exc}")
    if isinstance(exc, RecursionError):  # Jinja parses, compiles and runs nesting recursively
        return TemplateProblem("template-syntax", f"not allowed in a template: {_TOO_DEEP}")
    # Filters and methods fail in their own ways (FilterArgumentError, ValueError, even an
    # AssertionError from truncate); NameError: Jinja folds e.g. 1e999 to a constant its
    # code generator cannot name. Whatever a template raises is the template's failure.
    return TemplateProblem("template-syntax", f"template failed: {exc or type(exc).__name__}")


def context(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of one execution, with Jinja's globals and a fresh loop budget."""
    return {**environment().globals, **variables, "range": _Budget().range}


def render(kind: str, template: Any, variables: dict[str, Any]) -> Any:
    """Run a compiled template; every failure becomes a TemplateProblem."""
    try:
        ctx = template.new_context(variables, shared=True)
        if kind == "native":
            for _ in template.root_render_func(ctx):
                pass
            result = ctx.vars["result"]
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return plain(result)
        return _bounded_join(template.root_render_func(ctx))
    except Exception as exc:
        raise _problem(exc) from None


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_UNDEFINED_ATTR = re.compile(r"has no attribute '([^']+)'$")


def _undefined(exc: UndefinedError) -> TemplateProblem:
    text = exc.message or "undefined variable"
    match = _UNDEFINED_NAME.match(text) or _UNDEFINED_ATTR.search(text)
    name = match.group(1) if match else None
    return TemplateProblem("undefined-variable", text, name)
