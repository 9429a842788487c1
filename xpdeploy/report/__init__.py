"""Reporters: each output format is a class in a registry that also feeds ``--format``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Generic, TypeVar

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
