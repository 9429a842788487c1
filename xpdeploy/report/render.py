"""Rendered request bodies as JSON or YAML, on a stream or one file per execution."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from xpdeploy.canonical import masked
from xpdeploy.execution import Execution
from xpdeploy.redact import redact

FORMAT_VERSION = 1


def shown_body(execution: Execution, paths: Sequence[str]) -> dict[str, Any]:
    """The body as people see it: apptoken masked, review.redact paths hidden."""
    return masked(redact(execution.body, paths))


def _dump(document: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def write_stream(
    out: IO[str], environment: str, executions: Sequence[Execution], fmt: str, paths: Sequence[str]
) -> None:
    document = {
        "format_version": FORMAT_VERSION,
        "environment": environment,
        "executions": [
            {"name": e.name, "revision": e.revision, "body": shown_body(e, paths)}
            for e in executions
        ],
    }
    out.write(_dump(document, fmt))


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file or nothing: temp file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(
    executions: Sequence[Execution], folder: Path, fmt: str, paths: Sequence[str]
) -> list[Path]:
    """One file per execution, named after it; each written atomically."""
    written = []
    for execution in executions:
        target = folder / f"{execution.name}.{fmt}"
        atomic_write(target, _dump(shown_body(execution, paths), fmt))
        written.append(target)
    return written
