"""YAML files → plain Python documents, with positions found on demand.

Parsing walks libyaml's event stream (ruamel.yaml's C parser) and builds plain
``dict``/``list``/scalar values directly: no node tree and no position table is
kept, so a 100,000-recipient spec costs little more than its values. Positions
are needed only when there is something to report; :class:`Locator` composes the
file's node tree then, once per file, and walks it.

The event walk is also where hostile input is stopped: unknown tags, alias
bombs, nesting too deep for the C composer, and non-text files are findings, not
crashes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml import events as ev
from ruamel.yaml.cyaml import CParser as _Parser
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from xpdeploy.findings import Finding, finding
from xpdeploy.locator import KeyPath, Locator, dispose

MAX_DEPTH = 64  # far beyond any spec; keeps the C composer (recursive) safe
MAX_INT_DIGITS = 40  # far beyond 64-bit ids; Python refuses str() past 4300 digits
MAX_ALIAS_NODES = 100_000  # nodes that aliases may add by repetition (billion laughs)


_STD = "tag:yaml.org,2002:"
_KEY_TAGS = (None, "!", _STD + "str")
_NULL = re.compile(r"^(?:~|null|Null|NULL)?$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
# An integer whose text YAML does not keep: leading zeros (00123) or a plus (+3538...).
_LOSSY_INT = re.compile(r"^(?:[-+]?0[0-9]|\+)")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class RawStr(str):
    """A scalar tagged ``!raw``: sent verbatim, never templated."""

    __slots__ = ()


@dataclass
class Document:
    """One YAML document of a file: its value and where to find its positions."""

    path: str
    index: int
    value: Any
    line: int
    locator: Locator = field(repr=False, compare=False)

    def mark(self, keypath: KeyPath, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the node at ``keypath`` (or of its key)."""
        return self.locator.mark(self.index, keypath, key=key)

    def at(self, keypath: KeyPath, rule: str, message: str, *, key: bool = False) -> Finding:
        """A finding positioned at ``keypath`` in this document."""
        line, column = self.mark(keypath, key=key)
        return finding(rule, message, self.path, line, column)


class _Reject(Exception):
    """A document feature xpdeploy refuses; becomes a finding."""

    def __init__(self, rule: str, message: str, mark: Any) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.line = mark.line + 1 if mark is not None else 1
        self.column = mark.column + 1 if mark is not None else 1


def resolve_scalar(text: str) -> Any:
    """YAML 1.2 core schema for an untagged plain scalar; timestamps stay text."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        if len(text) > MAX_INT_DIGITS:
            raise ValueError(f"integer of {len(text)} digits is too large")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return int(text)
    if _FLOAT.match(text):
        lowered = text.lower()
        if lowered.endswith((".inf", ".nan")):
            return float(lowered.replace(".", ""))  # '+.inf' → '+inf', '.nan' → 'nan'
        return float(text)
    return text


_SCALAR_KINDS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _tagged(tag: str, text: str, mark: Any) -> Any:
    """A scalar with an explicit tag: ``!raw`` and the standard scalar tags only."""
    if tag == "!raw":
        return RawStr(text)
    if tag == _STD + "str":
        return text
    if tag in (_STD + "int", _STD + "float", _STD + "bool", _STD + "null"):
        try:
            value = resolve_scalar(text)
        except ValueError as exc:
            raise _Reject("yaml-syntax", str(exc), mark) from None
        kind = tag[len(_STD) :]
        if _SCALAR_KINDS[kind](value):
            return float(value) if kind == "float" else value
        raise _Reject("yaml-syntax", f"{text!r} is not a valid !!{kind}", mark)
    raise _Reject(
        "yaml-syntax",
        f"unsupported tag {_short_tag(tag)}: only !raw and the standard scalar tags are allowed",
        mark,
    )


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


def _is_empty(event: Any) -> bool:
    """libyaml's empty document: an untagged, unanchored, empty plain scalar at the root."""
    return (
        isinstance(event, ev.ScalarEvent)
        and event.value == ""
        and not event.style
        and event.tag is None
        and event.anchor is None
    )


class _Built(NamedTuple):
    value: Any
    size: int  # nodes, aliases expanded: what an alias of it adds (alias bombs)
    height: int  # levels of nesting, aliases expanded: 0 for a scalar


class _Builder:
    """Builds one stream's documents from parser events."""

    def __init__(self, parser: Any, path: str) -> None:
        self.parser = parser
        self.path = path
        self.anchors: dict[str, _Built] = {}
        self.alias_nodes = 0
        self.keys: dict[str, str] = {}  # interning: 100k recipients share their param names
        self.findings: list[Finding] = []

    def documents(self) -> Iterator[tuple[int, Any, int]]:
        """Yield (index, value, first line) per non-empty document."""
        parser = self.parser
        parser.get_event()  # StreamStart
        index = 0
        while not isinstance(parser.peek_event(), ev.StreamEndEvent):
            start = parser.get_event()  # DocumentStart
            self.anchors.clear()
            self.alias_nodes = 0
            first = parser.peek_event()
            if _is_empty(first):
                parser.get_event()
                parser.get_event()  # DocumentEnd
                index += 1
                continue  # an empty document (a stray '---') is nothing to check
            value = self._node(0).value
            parser.get_event()  # DocumentEnd
            yield index, value, start.start_mark.line + 1
            index += 1

    def _node(self, depth: int) -> _Built:
        """Construct the next node."""
        event = self.parser.get_event()
        if depth > MAX_DEPTH:
            raise _Reject(
                "yaml-syntax", f"nesting deeper than {MAX_DEPTH} levels", event.start_mark
            )
        if isinstance(event, ev.AliasEvent):
            return self._alias(event)
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            self._anchor_twice(event)
        if isinstance(event, ev.ScalarEvent):
            built = _Built(self._scalar(event), 1, 0)
        elif isinstance(event, ev.MappingStartEvent):
            self._container_tag(event, "map")
            built = self._mapping(depth)
        elif isinstance(event, ev.SequenceStartEvent):
            self._container_tag(event, "seq")
            built = self._sequence(depth)
        else:  # pragma: no cover - libyaml never yields others here
            raise _Reject("yaml-syntax", f"unexpected {type(event).__name__}", event.start_mark)
        if built.height > MAX_DEPTH:  # an alias nests its whole value where it is used
            raise _Reject(
                "yaml-syntax",
                f"nesting deeper than {MAX_DEPTH} levels, through aliases",
                event.start_mark,
            )
        if anchor is not None:
            self.anchors[anchor] = built
        return built

    @staticmethod
    def _anchor_twice(event: Any) -> None:
        raise _Reject(
            "yaml-syntax",
            f"anchor &{event.anchor} is defined twice in this document; give each its own name",
            event.start_mark,
        )

    def _alias(self, event: Any) -> _Built:
        if event.anchor not in self.anchors:
            raise _Reject("yaml-syntax", f"alias *{event.anchor} has no anchor", event.start_mark)
        built = self.anchors[event.anchor]
        self.alias_nodes += built.size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _Reject(
                "yaml-syntax",
                f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                event.start_mark,
            )
        return built

    @staticmethod
    def _container_tag(event: Any, kind: str) -> None:
        tag = event.tag
        if tag is not None and tag != "!" and tag != _STD + kind:
            raise _Reject("yaml-syntax", f"unsupported tag {_short_tag(tag)}", event.start_mark)

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            if event.style or not event.implicit[0] or tag == "!":
                return event.value  # quoted, or '!': a string
            try:
                value = resolve_scalar(event.value)
            except ValueError as exc:
                raise _Reject("yaml-syntax", str(exc), event.start_mark) from None
            if type(value) is int and _LOSSY_INT.match(event.value):
                self._lossy_number(event, value)
            return value
        return _tagged(tag, event.value, event.start_mark)

    def _lossy_number(self, event: Any, value: int) -> None:
        """`target: [00123]` is the number 123 to YAML: a different recipient than "00123"."""
        mark = event.start_mark
        self.findings.append(
            finding(
                "lossy-number",
                f"{event.value} is read as the number {value}."
                f' Quote it ("{event.value}") to keep the text',
                self.path,
                mark.line + 1,
                mark.column + 1,
            )
        )

    def _mapping(self, depth: int) -> _Built:
        result: dict[str, Any] = {}
        merges: list[dict[str, Any]] = []
        size, height = 1, 1
        parser = self.parser
        while not isinstance(parser.peek_event(), ev.MappingEndEvent):
            key_event = parser.get_event()
            if not isinstance(key_event, ev.ScalarEvent) or key_event.tag not in _KEY_TAGS:
                raise _Reject(
                    "yaml-syntax",
                    "mapping keys must be untagged scalars (JSON objects have string keys)",
                    key_event.start_mark,
                )
            if key_event.anchor is not None:
                if key_event.anchor in self.anchors:
                    self._anchor_twice(key_event)
                self.anchors[key_event.anchor] = _Built(key_event.value, 1, 0)
            # The text as written: `3:` becomes the JSON key "3", as the API expects.
            key = self.keys.setdefault(key_event.value, key_event.value)
            if key in result:
                mark = key_event.start_mark
                self.findings.append(
                    finding(
                        "duplicate-key",
                        f"key {key!r} appears twice in this mapping; the second one would win"
                        " silently, so remove one",
                        self.path,
                        mark.line + 1,
                        mark.column + 1,
                    )
                )
            value, count, below = self._node(depth + 1)
            size += count + 1
            if key == "<<" and not key_event.style:  # merged values sit at this level
                height = max(height, below)
                merges.extend(self._merge_sources(value, key_event))
                continue
            height = max(height, below + 1)
            result[key] = value
        parser.get_event()
        for source in merges:  # explicit keys win over merged ones, as YAML's merge key says
            for merged_key, merged_value in source.items():
                result.setdefault(merged_key, merged_value)
        return _Built(result, size, height)

    @staticmethod
    def _merge_sources(value: Any, key_event: Any) -> list[dict[str, Any]]:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            raise _Reject(
                "yaml-syntax", "'<<' merges only mappings (or a list of them)", key_event.start_mark
            )
        return sources

    def _sequence(self, depth: int) -> _Built:
        result: list[Any] = []
        size, height = 1, 1
        parser = self.parser
        while not isinstance(parser.peek_event(), ev.SequenceEndEvent):
            value, count, below = self._node(depth + 1)
            result.append(value)
            size += count
            height = max(height, below + 1)
        parser.get_event()
        return _Built(result, size, height)


@dataclass
class LoadResult:
    documents: list[Document]
    findings: list[Finding]


def read_text(path: Path, display: str) -> tuple[str | None, list[Finding]]:
    """The file's text, or a finding when it is not UTF-8 text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [finding("yaml-syntax", f"cannot read file: {exc.strerror}", display)]
    if b"\x00" in data:
        return None, [finding("yaml-syntax", "binary file: not YAML text", display)]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [finding("yaml-syntax", "not UTF-8 text", display, line)]


def load_file(path: Path, display: str) -> LoadResult:
    """Load every document of a YAML file; problems come back as findings."""
    text, problems = read_text(path, display)
    if text is None:
        return LoadResult([], problems)
    # Positions are rarely needed: the locator re-reads the file then, not keeping the text.
    return load_text(text, display, Locator(None, path))


def load_text(text: str, display: str, locator: Locator | None = None) -> LoadResult:
    """Load every document of YAML text; a file that fails yields no documents."""
    locator = locator or Locator(text)
    try:
        parser = _Parser(text)
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8 (from argv)
        return LoadResult([], [finding("yaml-syntax", "not UTF-8 text", display)])
    builder = _Builder(parser, display)
    documents: list[Document] = []
    try:
        for index, value, line in builder.documents():
            documents.append(Document(display, index, value, line, locator))
    except _Reject as exc:
        return LoadResult([], [finding(exc.rule, exc.message, display, exc.line, exc.column)])
    except MarkedYAMLError as exc:
        return LoadResult([], [_syntax_finding(exc, display)])
    except YAMLError as exc:  # the reader's errors carry no mark
        message = str(exc).splitlines()[0] if str(exc) else "not valid YAML"
        return LoadResult([], [finding("yaml-syntax", message, display)])
    finally:
        dispose(builder.parser)
    locator.safe = True  # every document parsed within MAX_DEPTH: composing is safe
    return LoadResult(documents, builder.findings)


def _syntax_finding(exc: MarkedYAMLError, display: str) -> Finding:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and exc.context_mark is not None:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return finding("yaml-syntax", problem, display, line, column)
