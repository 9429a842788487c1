"""Reporters: each output format is a class in a registry that also feeds ``--format``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import IO, Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Format name → reporter class, in registration order."""

    def __init__(self) -> None:
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            self._classes[name] = cls
            return cls

        return add

    @property
    def names(self) -> list[str]:
        return list(self._classes)

    def get(self, name: str) -> type[T]:
        return self._classes[name]


def use_color(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def json_document(document: dict[str, Any], list_key: str) -> str:
    """JSON with one item of ``document[list_key]`` per line.

    Readable in a terminal and in a diff, and written by the C encoder: an indented
    dump of 1,000 request bodies would go through json's slow pure-Python path.
    """
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    lines = ["{"]
    keys = list(document)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = document[key]
        if key == list_key and isinstance(value, list) and value:
            lines.append(f"  {dumps(key)}: [")
            lines += [f"    {dumps(item)}," for item in value[:-1]]
            lines += [f"    {dumps(value[-1])}", f"  ]{comma}"]
        else:
            lines.append(f"  {dumps(key)}: {dumps(value)}{comma}")
    return "\n".join(lines) + "\n}\n"
