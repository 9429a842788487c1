"""Markdown for pull-request comments, kept under GitHub's comment size limit."""

from __future__ import annotations

import re

COMMENT_LIMIT = 65_536  # characters GitHub accepts in one comment body
_TRAILER_RESERVE = 1_000


def cell(text: object) -> str:
    """Text safe inside a table cell: no pipes or newlines break the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def fenced(text: str, language: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>\n"


class Budget:
    """Collects sections in order while they fit; says how many did not."""

    def __init__(self, limit: int = COMMENT_LIMIT) -> None:
        self.limit = limit - _TRAILER_RESERVE
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def add(self, text: str, *, required: bool = False) -> bool:
        if not required and (self.dropped or self.size + len(text) > self.limit):
            self.dropped += 1
            return False
        self.parts.append(text)
        self.size += len(text)
        return True

    def text(self, trailer: str = "") -> str:
        body = "".join(self.parts) + trailer
        return body if len(body) <= self.limit + _TRAILER_RESERVE else body[: self.limit] + "\n"
