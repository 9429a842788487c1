"""JSON Schemas generated from the models: spec files, the project file, rendered bodies."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

from xpdeploy.model import ExecuteBody, ProjectFile, Spec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://xpdeploy.dev/schema/"
TEMPLATE_DEF = "template"
_NON_STRING = {"integer", "number", "boolean", "array", "object"}


def _allow_templates(node: Any) -> Any:
    """Let every non-string value also be a Jinja template string (rendered later)."""
    if isinstance(node, list):
        return [_allow_templates(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: value if key in ("properties", "$defs") else _allow_templates(value)
        for key, value in node.items()
    }
    if "properties" in out:
        out["properties"] = {k: _allow_templates(v) for k, v in out["properties"].items()}
    typed = (
        out.get("type") in _NON_STRING
        or "const" in out
        or ("enum" in out and any(not isinstance(v, str) for v in out["enum"]))
    )
    if typed and "$ref" not in out:
        annotations = {k: out.pop(k) for k in ("title", "description", "default") if k in out}
        return {**annotations, "anyOf": [out, {"$ref": f"#/$defs/{TEMPLATE_DEF}"}]}
    return out


def _finish(schema: dict[str, Any], name: str, title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": BASE_ID + name, **schema, "title": title}


def spec_schema() -> dict[str, Any]:
    """For spec files as written: values may still be templates."""
    schema = Spec.model_json_schema()
    defs = schema["$defs"]
    # Only the body is rendered; its values (not its shape) may be templates.
    for definition in defs.values():
        definition["properties"] = _allow_templates(definition["properties"])
    defs[TEMPLATE_DEF] = {
        "type": "string",
        "pattern": r"\{\{|\{%",
        "description": "A Jinja template, rendered per environment before the body is checked.",
    }
    return _finish(schema, "spec.schema.json", "xpdeploy campaign spec")


def project_schema() -> dict[str, Any]:
    return _finish(ProjectFile.model_json_schema(), "project.schema.json", "xpdeploy project file")


def payload_schema() -> dict[str, Any]:
    """The request body as sent: extra fields are merged in, so unknown keys are allowed."""
    schema = copy.deepcopy(ExecuteBody.model_json_schema())
    schema["properties"].pop("extra", None)
    schema["properties"] = {
        "apptoken": {"type": "string", "description": "Added at send time; shown as ***."},
        **schema["properties"],
    }
    schema["required"] = ["apptoken", *schema.get("required", [])]
    schema["additionalProperties"] = True
    return _finish(schema, "payload.schema.json", "Xtremepush execute-campaign request body")


GENERATORS = {
    "spec.schema.json": spec_schema,
    "project.schema.json": project_schema,
    "payload.schema.json": payload_schema,
}


def render_all() -> dict[str, str]:
    """File name → file text, exactly as committed."""
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in GENERATORS.items()}


def shipped(name: str) -> str:
    """A schema as shipped inside the installed package."""
    return (
        resources.files("xpdeploy").joinpath("schemas").joinpath(name).read_text(encoding="utf-8")
    )


def write_all(folder: Path) -> list[Path]:
    """Write every schema into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        target = folder / name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written


if __name__ == "__main__":  # pragma: no cover - `python -m xpdeploy.schema` refreshes both copies
    root = Path(__file__).resolve().parent
    write_all(root / "schemas")
    write_all(root.parent / "schema")
