"""The YAML loader: values, positions, tags, merge keys, duplicates, YAML 1.2 scalars."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from xpdeploy.loader import RawStr, load_file, load_text, resolve_scalar
from xpdeploy.locator import Locator


def one(text: str) -> Any:
    """The value of the only document of ``text``, which must load without findings."""
    result = load_text(text, "f.yaml")
    assert result.findings == []
    [document] = result.documents
    return document.value


def problems(text: str) -> list[tuple[str, int, int, str]]:
    result = load_text(text, "f.yaml")
    return [(f.rule, f.line, f.column, f.message) for f in result.findings]


# --- positions ---------------------------------------------------------------------------

SPEC = """\
# a comment first
name: promo
execute:
  id: 42
  target: [u1, "u2"]
  target_with_params:
    crm-1: {fname: Alex, balance: "100 EUR"}
  messages:
    3:
      push_require_interaction: true
"""


@pytest.mark.parametrize(
    ("keypath", "key", "position"),
    [
        ((), False, (2, 1)),
        (("name",), False, (2, 7)),
        (("name",), True, (2, 1)),
        (("execute",), True, (3, 1)),
        (("execute",), False, (4, 3)),  # a block mapping starts at its first key
        (("execute", "id"), False, (4, 7)),
        (("execute", "target", 1), False, (5, 16)),
        (("execute", "target_with_params", "crm-1", "balance"), False, (7, 35)),
        (("execute", "target_with_params", "crm-1", "balance"), True, (7, 26)),
        (("execute", "messages", "3"), True, (9, 5)),
        (("execute", "messages", "3", "push_require_interaction"), False, (10, 33)),
        # A path that leaves the document stops at the deepest node that exists.
        (("execute", "target", 7), False, (5, 11)),
        (("execute", "nothing", "here"), False, (4, 3)),
    ],
)
def test_marks_are_one_based_line_and_column(
    keypath: tuple[str | int, ...], key: bool, position: tuple[int, int]
) -> None:
    [document] = load_text(SPEC, "f.yaml").documents
    assert document.mark(keypath, key=key) == position


def test_finding_at_a_keypath() -> None:
    [document] = load_text(SPEC, "campaigns/promo.yaml").documents
    found = document.at(("execute", "id"), "schema", "bad id")
    assert (found.path, found.line, found.column, found.rule, found.severity.value) == (
        "campaigns/promo.yaml",
        4,
        7,
        "schema",
        "error",
    )


def test_columns_count_characters_not_bytes() -> None:
    [document] = load_text('a: {x: "ééé€😀", y: 2}\n', "f.yaml").documents
    assert document.mark(("a", "y"), key=True) == (1, 17)


def test_a_byte_order_mark_is_not_a_column(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\nb: 2\n")
    [document] = load_file(path, "bom.yaml").documents
    assert (document.value, document.mark(("b",))) == ({"a": 1, "b": 2}, (2, 4))


def test_positions_in_later_documents() -> None:
    text = "a: 1\n---\n# second\nb:\n  c: [1, 2]\n---\nd: x\n"
    documents = load_text(text, "f.yaml").documents
    assert [(d.index, d.line, d.value) for d in documents] == [
        (0, 1, {"a": 1}),
        (1, 2, {"b": {"c": [1, 2]}}),
        (2, 6, {"d": "x"}),
    ]
    assert documents[1].mark(("b", "c", 1)) == (5, 10)
    assert documents[2].mark(("d",)) == (7, 4)


# --- tags -----------------------------------------------------------------------------------


def test_raw_tag_yields_a_raw_string() -> None:
    value = one('a: !raw "Hi {{first_name}}"\nb: !raw 12\nc: plain\n')
    assert type(value["a"]) is RawStr and value["a"] == "Hi {{first_name}}"
    assert type(value["b"]) is RawStr and value["b"] == "12"
    assert type(value["c"]) is str


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!!str 12", "12"),
        ('!!int "12"', 12),
        ("!!float 1", 1.0),
        ("!!bool true", True),
        ('!!null ""', None),
        ("! 12", "12"),  # the non-specific tag: a string
    ],
)
def test_standard_scalar_tags(text: str, expected: Any) -> None:
    value = one(f"a: {text}\n")["a"]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!bool yes\n", "'yes' is not a valid !!bool"),
        ("a: !!int 1.5\n", "'1.5' is not a valid !!int"),
        ("a: !!timestamp 2001-12-14\n", "unsupported tag !!timestamp"),
        ("a: !!python/tuple [1, 2]\n", "unsupported tag !!python/tuple"),
        ("a: !custom {b: 1}\n", "unsupported tag !custom"),
        ("!!omap [a: 1]\n", "unsupported tag !!omap"),
        ("? [1, 2]\n: x\n", "mapping keys must be untagged scalars"),
        ("!!int 3: x\n", "mapping keys must be untagged scalars"),
    ],
)
def test_other_tags_are_refused(text: str, message: str) -> None:
    [(rule, _, _, got)] = problems(text)
    assert (rule, message in got) == ("yaml-syntax", True)


# --- keys, merge keys, duplicates ------------------------------------------------------------


def test_keys_are_the_text_as_written() -> None:
    value = one("messages: {3: a, 07: b, true: c, 1.5: d, ~: e, 0x10: f}\n")
    assert list(value["messages"]) == ["3", "07", "true", "1.5", "~", "0x10"]


def test_merge_keys() -> None:
    value = one(
        "base: &base {p: 1, q: 2}\n"
        "m:\n  <<: *base\n  q: 3\n"
        "n:\n  <<: [{a: 1}, {a: 2, b: 2}]\n"
        '"<<": a quoted key is just a key\n'
    )
    assert value["m"] == {"p": 1, "q": 3}  # explicit keys win
    assert value["n"] == {"a": 1, "b": 2}  # the first merged mapping wins
    assert value["<<"] == "a quoted key is just a key"


def test_merging_a_scalar_is_refused() -> None:
    assert problems("m:\n  <<: 3\n") == [
        ("yaml-syntax", 2, 3, "'<<' merges only mappings (or a list of them)")
    ]


def test_duplicate_keys_are_reported_at_the_second_key() -> None:
    result = load_text("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n", "f.yaml")
    [found] = result.findings
    assert (found.rule, found.severity.value, found.line, found.column) == (
        "duplicate-key",
        "error",
        5,
        3,
    )
    assert "'x' appears twice" in found.message
    [document] = result.documents
    assert document.value["b"]["x"] == 3
    assert document.mark(("b", "x")) == (5, 6)  # positions follow the value that loaded


def test_aliases_share_their_anchor_value() -> None:
    value = one("a: &x [1, 2]\nb: *x\n")
    assert value["b"] == [1, 2]


# --- YAML 1.2 scalars ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("tRue", "tRue"),
        ("0x10", 16),
        ("0o17", 15),
        ("017", 17),  # no octal by leading zero in YAML 1.2
        ("-12", -12),
        ("1_000", "1_000"),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        (".inf", math.inf),
        ("-.inf", -math.inf),
        ("~", None),
        ("null", None),
        ("", None),
        ("2001-12-14", "2001-12-14"),  # timestamps stay text
        ("12:30", "12:30"),  # no sexagesimal numbers
        ("0b101", "0b101"),
    ],
)
def test_yaml_1_2_core_schema(text: str, expected: Any) -> None:
    [document] = load_text(f"a: {text}\n", "f.yaml").documents
    value = document.value["a"]
    assert value == expected and type(value) is type(expected)
    assert resolve_scalar(text) == expected


def test_quoted_scalars_are_strings() -> None:
    assert one("a: '12'\nb: \"yes\"\nc: 'null'\n") == {"a": "12", "b": "yes", "c": "null"}


def test_nan_is_a_float() -> None:
    assert math.isnan(one("a: .nan\n")["a"])


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("007", True),
        ("-0042", True),
        ("+01", True),
        ("00", True),
        ("+353871234567", True),  # a phone number loses its plus
        ("+0", True),
        ("0", False),
        ("-0", False),
        ("-12", False),
        ("10", False),
        ("0x0F", False),  # a hex number says it is one
        ("0o17", False),
        ("'007'", False),
        ("!!int 007", False),  # asked for a number explicitly
        ("0.5", False),
        ("007.5", False),  # a float: YAML keeps its value, only the text changes
    ],
)
def test_numbers_are_flagged_where_yaml_drops_their_text(text: str, flagged: bool) -> None:
    result = load_text(f"ids:\n  - {text}\n", "f.yaml")
    assert [(f.rule, f.severity.value, f.line, f.column) for f in result.findings] == (
        [("lossy-number", "warning", 2, 5)] if flagged else []
    )
    if flagged:
        assert f'"{text}"' in result.findings[0].message


# --- documents and files -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_a_file_with_no_document(text: str) -> None:
    assert load_text(text, "f.yaml").documents == [] and load_text(text, "f.yaml").findings == []


def test_document_end_markers() -> None:
    documents = load_text("a: 1\n...\n---\nb: 2\n...\n", "f.yaml").documents
    assert [d.value for d in documents] == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize("text", ["a: 1\n---\n", "---\n# nothing\n---\na: 1\n", "---\n---\na: 1\n"])
def test_empty_documents_are_skipped(text: str) -> None:
    assert [d.value for d in load_text(text, "f.yaml").documents] == [{"a": 1}]


def test_a_document_that_is_null_on_purpose_is_kept() -> None:
    assert [d.value for d in load_text("a: 1\n--- ~\n", "f.yaml").documents] == [{"a": 1}, None]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("a: b: c\n", 1, 5, "mapping values are not allowed"),
        ("a:\n\t- b\n", 2, 1, "found character that cannot start any token"),
        ("a: [1, 2\nb: 3\n", 2, 2, "did not find expected ',' or ']'"),
        ('a: "open\n', 2, 1, "found unexpected end of stream"),
    ],
)
def test_syntax_errors_are_positioned_findings(
    text: str, line: int, column: int, message: str
) -> None:
    result = load_text(text, "f.yaml")
    assert result.documents == []
    [(rule, got_line, got_column, got)] = problems(text)
    assert (rule, got_line, got_column) == ("yaml-syntax", line, column)
    assert message in got


def test_a_later_syntax_error_drops_the_whole_file() -> None:
    result = load_text("a: 1\n---\nb: [\n", "f.yaml")
    assert result.documents == [] and [f.rule for f in result.findings] == ["yaml-syntax"]


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        (b"a: 1\nb: \x00\n", "binary file: not YAML text", 1),
        (b"a: 1\nb: 2\nc: caf\xe9\n", "not UTF-8 text", 3),
    ],
)
def test_files_that_are_not_text(tmp_path: Path, content: bytes, message: str, line: int) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    result = load_file(path, "f.yaml")
    assert result.documents == []
    assert [(f.rule, f.message, f.line) for f in result.findings] == [
        ("yaml-syntax", message, line)
    ]


def test_a_missing_file_is_a_finding(tmp_path: Path) -> None:
    [found] = load_file(tmp_path / "gone.yaml", "gone.yaml").findings
    assert (found.rule, found.path) == ("yaml-syntax", "gone.yaml")
    assert found.message.startswith("cannot read file")


def test_positions_fall_back_to_the_start_when_the_composer_refuses_the_file() -> None:
    locator = Locator("a: &x 1\nb: &x 2\n")  # the loader refuses this; the file may change
    locator.safe = True
    assert locator.mark(0, ("b",)) == (1, 1)
