"""Rendered request bodies as JSON or YAML, on a stream or one file per execution."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import IO, Any

from xpdeploy.canonical import masked
from xpdeploy.errors import UserError
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
        os.fchmod(fd, 0o644)  # as the ledger: mkstemp's 0600 is wrong for project files
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(
    executions: Sequence[Execution],
    folder: Path,
    fmt: str,
    paths: Sequence[str],
    inputs: Collection[Path] = (),
) -> list[Path]:
    """One file per execution, named after it; each written atomically. Every target is
    checked first, so a refusal writes nothing: never one of the project's ``inputs``
    (its project file, specs, vars files), never over a folder."""
    targets = [(folder / f"{e.name}.{fmt}", e) for e in executions]
    protected = {path.resolve() for path in inputs}
    for target, _ in targets:
        if target.resolve() in protected:
            raise UserError(
                f"render --out would overwrite {target}, a file of this project: choose"
                " another folder; nothing was written"
            )
        if os.path.lexists(target) and not target.is_file():
            raise UserError(f"{target} is not a regular file; nothing was written")
    for target, execution in targets:
        atomic_write(target, _dump(shown_body(execution, paths), fmt))
    return [target for target, _ in targets]
