"""Jinja inside string scalars: native values, text, strict undefined, !raw, the cache, limits."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from xpdeploy.loader import RawStr, load_text
from xpdeploy.sandbox import MAX_ITERATIONS, MAX_OUTPUT, environment
from xpdeploy.template import Renderer, TemplateProblem, is_template

VARS = {"bonus": 100, "ids": [1, 2], "brand": "Acme", "user": {"name": "Ana"}, "flag": True}


def render(source: str, variables: dict[str, Any] | None = None) -> Any:
    return Renderer(VARS if variables is None else variables).render(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ bonus }}", 100),
        ("{{ bonus * 2 }}", 200),
        ("{{ bonus / 8 }}", 12.5),
        ("{{ ids }}", [1, 2]),
        ("{{ ids + [3] }}", [1, 2, 3]),
        ("{{ [1] + [2] }}", [1, 2]),
        ("{{ 1 + 2 }}", 3),
        ("{{ 'a' + 'b' }}", "ab"),
        ("{{ 'a' ~ 1 }}", "a1"),
        ("{{ brand ~ '-' ~ bonus ~ none }}", "Acme-100None"),
        ("{{ (1, 'a') }}", [1, "a"]),  # tuples become JSON lists
        ("{{ {'a': bonus, 'b': [flag]} }}", {"a": 100, "b": [True]}),
        ("{{ user }}", {"name": "Ana"}),
        ("{{ flag }}", True),
        ("{{ not flag }}", False),
        ("{{ none }}", None),
        ("{{ brand }}", "Acme"),
        ("  {{ bonus }}\n", 100),  # whitespace around one expression
    ],
)
def test_one_expression_yields_its_native_value(source: str, expected: Any) -> None:
    value = render(source)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ bonus }} EUR", "100 EUR"),
        ("{{ bonus }}{{ bonus }}", "100100"),
        ("{{ ids[0] }} {{ ids[1] }}", "1 2"),
        ("{% if flag %}yes{% endif %}", "yes"),
        ("{# a comment #}{{ bonus }}", "100"),
        ("{{ '<b>' }} & co", "<b> & co"),  # no HTML escaping
        ("Hi {{ user.name }}\n", "Hi Ana\n"),  # the trailing newline is kept
        ("{% for i in ids %}{{ i }},{% endfor %}", "1,2,"),
        ("{% set s = brand ~ bonus %}{{ s ~ '!' }}", "Acme100!"),
        ("{% autoescape true %}{{ '<' ~ brand }}{% endautoescape %}", "&lt;Acme"),
    ],
)
def test_any_other_string_renders_as_text(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("{{ missing }}", "missing"),
        ("{{ missing }} EUR", "missing"),
        ("{% if missing %}x{% endif %}", "missing"),
        ("{{ user.age }}", "age"),
        ("{{ missing.deeper }}", "missing"),
    ],
)
def test_undefined_is_an_error(source: str, name: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(source)
    assert (caught.value.rule, caught.value.name) == ("undefined-variable", name)


def test_default_filter_still_works_with_strict_undefined() -> None:
    assert render("{{ missing | default('none') }}") == "none"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ bonus ", "template syntax error"),
        ("{% if flag %}no end", "template syntax error"),
        ("{{ 1 // 0 }}", "template failed"),
        ("{{ brand + 1 }}", "template failed"),
        ("{{ ''.__class__ }}", "not allowed in a template"),
        ("{{ range(200000)|list }}", "not allowed in a template"),
        ("{% include 'x.yaml' %}", "no loader"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "may not recurse this deep"),
        ("{{ " + "(" * 500 + "1" + ")" * 500 + " }}", "may not recurse this deep"),
        ("x {{ " + "[" * 500 + "]" * 500 + " }}", "may not recurse this deep"),
    ],
)
def test_other_problems_are_template_syntax(source: str, message: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(source)
    assert caught.value.rule == "template-syntax"
    assert message in caught.value.message


def test_nested_loops_have_a_budget_and_each_renderer_its_own() -> None:
    """One Renderer serves one execution; the next execution starts a new budget."""
    source = "{% for i in range(1000) %}{% for j in range(999) %}{% endfor %}{% endfor %}"
    assert MAX_ITERATIONS == 1000 + 1000 * 999
    assert Renderer({}).render(source) == ""
    assert Renderer({}).render(source) == ""
    with pytest.raises(TemplateProblem, match="loop at most"):
        Renderer({}).render(source.replace("999", "1000"))


def test_range_still_works() -> None:
    assert render("{{ range(3)|list }}") == [0, 1, 2]
    assert render("{{ range(1, 10, 4)|list }}") == [1, 5, 9]


@pytest.mark.parametrize("op", ["~", "+"])
def test_concatenation_stops_at_the_doubling_past_the_limit(op: str) -> None:
    start, double = "{% set a = 'x' * 1000 %}", f"{{% set a = a {op} a %}}"
    assert 1000 * 2**9 <= MAX_OUTPUT < 1000 * 2**10
    assert render(start + double * 9 + "{{ a|length }}") == str(1000 * 2**9)
    with pytest.raises(TemplateProblem, match="result longer than") as caught:
        render(start + double * 10 + "{{ a|length }}")
    assert caught.value.rule == "template-syntax"


@pytest.mark.parametrize("op", ["~", "+"])
def test_concatenation_is_refused_before_the_string_is_built(op: str) -> None:
    """Eleven doublings of a 1 MB string would reach 2 GB; not even the first is built."""
    source = "{% set a = 'x' * 999999 %}" + f"{{% set a = a {op} a %}}" * 11 + "{{ a }}"
    render("{{ 'warm' ~ 'up' }}")  # Jinja's own first-use allocations are not the point
    tracemalloc.start()
    try:
        with pytest.raises(TemplateProblem, match="result longer than"):
            render(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * MAX_OUTPUT  # the 1 MB string, never its 2 MB double


# --- walk: !raw, untouched values, problems with their paths -----------------------------


def test_raw_strings_are_never_rendered() -> None:
    [document] = load_text('a: !raw "Hi {{first_name}}"\n', "f.yaml").documents
    out = Renderer({}).walk(document.value, lambda path, problem: pytest.fail(problem.message))
    assert out == {"a": "Hi {{first_name}}"}
    assert is_template(RawStr("{{ x }}")) is False


def test_walk_renders_nested_strings_and_keeps_untouched_subtrees() -> None:
    untouched = {"plain": ["a", 1, None]}
    tree = {"id": "{{ bonus }}", "keep": untouched, "list": ["x", "{{ brand }}"]}
    out = Renderer(VARS).walk(tree, lambda path, problem: pytest.fail(problem.message))
    assert out == {"id": 100, "keep": {"plain": ["a", 1, None]}, "list": ["x", "Acme"]}
    assert out["keep"] is untouched
    assert tree["id"] == "{{ bonus }}"  # the input is not changed


def test_walk_returns_the_same_object_when_nothing_is_a_template() -> None:
    tree = {"a": ["x", {"b": "50% off } {"}], "c": 1}
    assert Renderer(VARS).walk(tree, lambda *_: None) is tree


def test_walk_reports_each_problem_with_its_path() -> None:
    seen: list[tuple[tuple[str | int, ...], str]] = []
    tree = {"a": "{{ nope }}", "b": [{"c": "{{ 1 // 0 }}"}], "d": "{{ bonus }}"}
    out = Renderer(VARS).walk(tree, lambda path, problem: seen.append((path, problem.rule)))
    assert seen == [(("a",), "undefined-variable"), (("b", 0, "c"), "template-syntax")]
    assert out["d"] == 100 and out["a"] == "{{ nope }}"


# --- compiled once; plain strings never reach Jinja -------------------------------------------


def test_each_template_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment()
    compiled: list[object] = []
    real_compile = env.compile

    def spy(source: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(source)
        return real_compile(source, *args, **kwargs)

    monkeypatch.setattr(env, "compile", spy)
    text, native = "{{ n | string }} compiled-once text", "{{ n * 7919 }}"
    assert [Renderer({"n": n}).render(text) for n in (1, 2, 3)] == [
        "1 compiled-once text",
        "2 compiled-once text",
        "3 compiled-once text",
    ]
    assert [Renderer({"n": n}).render(native) for n in (1, 2)] == [7919, 15838]
    assert len(compiled) == 2  # one per distinct template string, whatever the variables
    assert Renderer.compile(text) is Renderer.compile(text)


def test_variable_paths_do_not_load_jinja() -> None:
    """`{{ a.b }}` placeholders are filled without importing Jinja at all."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from xpdeploy.template import Renderer\n"
        "r = Renderer({'ids': {'w': 7}, 'env': 'prod'})\n"
        "assert r.render('{{ ids.w }}') == 7\n"
        "assert r.render('x-{{ env }}-{{ ids.w }}') == 'x-prod-7'\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 was imported'\n"
        "assert r.render('{{ ids.w + 1 }}') == 8 and 'jinja2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fast_path_agrees_with_jinja() -> None:
    """The same strings, rendered with and without the fast path, give the same values."""
    variables = {"a": {"b": 1, "items": 2, "l": [1, 2]}, "s": "x", "n": None, "f": 1.5, "t": True}
    sources = ["{{ a.b }}", " {{ a.l }} ", "{{ s }}-{{ a.b }}", "{{ n }}", "v{{ f }}", "{{ t }}"]
    sources += ["{{ a }}", "{{a.b}}{{a.b}}", "{{ a.items }}"]
    renderer = Renderer(variables)
    from xpdeploy import sandbox

    context = sandbox.context(variables)
    for source in sources:
        kind, compiled = sandbox.compile_template(source)
        assert renderer.render(source) == sandbox.render(kind, compiled, context), source


def test_strings_without_markers_never_reach_jinja(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(source: str) -> Any:
        raise AssertionError(f"compiled {source!r}")

    monkeypatch.setattr(
        Renderer, "compile", classmethod(lambda cls, source, **kwargs: refuse(source))
    )
    tree = {"a": "plain", "b": "} {", "c": "% #", "d": "{ {x} }", "e": ["{", "}"]}
    assert Renderer(VARS).walk(tree, lambda *_: None) is tree
    with pytest.raises(AssertionError, match="compiled"):
        Renderer(VARS).walk({"x": "{{ bonus }}"}, lambda *_: None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ x }}", True),
        ("a {% if x %}{% endif %}", True),
        ("{# note #}", True),
        ("{ x }", False),
        ("%}", False),
        (RawStr("{{ x }}"), False),
        (12, False),
        (None, False),
    ],
)
def test_is_template(value: object, expected: bool) -> None:
    assert is_template(value) is expected
