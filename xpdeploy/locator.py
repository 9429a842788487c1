"""Positions of key paths, found by composing a file's node tree lazily, once.

Findings are rare, so the loader keeps no positions: when one is needed, the file
is composed (ruamel.yaml's C composer, safe once the loader has checked the depth)
and walked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml.cyaml import CParser as _Parser
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, SequenceNode

KeyPath = tuple[str | int, ...]


def dispose(parser: Any) -> None:
    dispose = getattr(parser, "dispose", None)
    if dispose is not None:
        dispose()


class Locator:
    """Finds the position of a key path by composing the file's nodes, lazily, once."""

    def __init__(self, text: str | None, path: Path | None = None) -> None:
        self.text = text
        self.path = path
        self.safe = False
        self._roots: list[Any] | None = None

    def _text(self) -> str:
        if self.text is None and self.path is not None:
            try:
                return self.path.read_bytes().decode("utf-8-sig")
            except (OSError, UnicodeDecodeError):
                return ""  # the file changed under us: positions fall back to 1:1
        return self.text or ""

    def _documents(self) -> list[Any]:
        if self._roots is None:
            roots: list[Any] = []
            if self.safe:
                from ruamel.yaml.resolver import BaseResolver

                class _Composer(_Parser, BaseResolver):
                    def __init__(self, text: str) -> None:
                        _Parser.__init__(self, text)
                        BaseResolver.__init__(self, loadumper=self)

                composer = _Composer(self._text())
                try:
                    while composer.check_node():
                        roots.append(composer.get_node())
                except YAMLError:  # a file the loader read but the composer refuses
                    pass  # (or one changed since): positions there fall back to 1:1
                finally:
                    dispose(composer)
            self._roots = roots
        return self._roots

    def mark(self, index: int, keypath: KeyPath, *, key: bool = False) -> tuple[int, int]:
        """1-based position of the deepest node on ``keypath`` that exists."""
        roots = self._documents()
        if index >= len(roots):
            return 1, 1
        node = roots[index]
        position = node.start_mark
        for step in keypath:
            found = _child(node, step)
            if found is None:
                break
            key_node, node = found
            position = key_node.start_mark if key and step == keypath[-1] else node.start_mark
        return position.line + 1, position.column + 1


def _child(node: Any, step: str | int) -> tuple[Any, Any] | None:
    """(key node, value node) of ``step`` under ``node``, or None."""
    if isinstance(node, MappingNode):
        for key_node, value_node in reversed(node.value):  # the last duplicate wins, as in load
            if key_node.value == step:
                return key_node, value_node
    elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return node.value[step], node.value[step]
    return None
