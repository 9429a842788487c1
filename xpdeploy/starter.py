"""`xpdeploy init`: a starter project that lints, plans and applies against the emulator."""

from __future__ import annotations

import os
from pathlib import Path

from xpdeploy.errors import UserError
from xpdeploy.report.render import atomic_write
from xpdeploy.schema import render_all

PROJECT = """\
# yaml-language-server: $schema=schema/project.schema.json
version: 1
campaigns: campaigns
vars:
  brand: Acme
  campaign_ids:
    welcome: 245624
environments:
  local:
    api_url: emulator            # the built-in emulator: no account, no token
    state: .xpdeploy/local.jsonl
  production:
    api_url: https://external-api.xtremepush.com
    apptoken_env: XPDEPLOY_APPTOKEN_PRODUCTION   # the NAME of the variable, never the token
    state: state/production.jsonl
    guards: {max_targets: 1000}
default_environment: local
"""

SPEC = """\
# yaml-language-server: $schema=../schema/spec.schema.json
name: welcome-bonus
revision: 1                       # bump it to send this execution again
description: Welcome bonus for new sign-ups
vars:
  bonus: 100
execute:
  id: "{{ campaign_ids.welcome }}"
  target_by: user_id
  target_with_params:
    crm-user-1: {fname: Alex, balance: "{{ bonus }} EUR"}
  params:
    external_message_id: "welcome-{{ env }}-001"
  push_text: !raw "Hi {{fname}}, your {{balance}} bonus is waiting"
  time: "2030-01-01 12:00 UTC"
"""


def starter_files() -> dict[str, str]:
    """Relative path → text of every file ``init`` writes."""
    files = {
        "xpdeploy.yaml": PROJECT,
        "campaigns/welcome-bonus.yaml": SPEC,
        ".gitignore": ".xpdeploy/\n*.jsonl.lock\n",
    }
    files.update({f"schema/{name}": text for name, text in render_all().items()})
    return files


def write_starter(directory: Path) -> list[Path]:
    """Write the starter project; refuses to overwrite anything."""
    files = {directory / rel: text for rel, text in starter_files().items()}
    existing = [str(p) for p in files if os.path.lexists(p)]  # a dangling symlink too
    if existing:
        raise UserError(f"refusing to overwrite {', '.join(existing)}: init writes a new project")
    folders = {
        parent
        for path in files
        for parent in path.parents
        if parent == directory or directory in parent.parents
    }
    blocked = sorted(str(f) for f in folders if os.path.lexists(f) and not f.is_dir())
    if blocked:  # found before anything is written: no half-made project
        raise UserError(f"{', '.join(blocked)}: not a folder; init writes a new project")
    for path, text in files.items():
        atomic_write(path, text)
    return list(files)
