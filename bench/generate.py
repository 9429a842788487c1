"""Generate a realistic xpdeploy project: N specs of ~40 lines, M recipients each.

python bench/generate.py OUT_DIR --specs 1000 --recipients 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

PROJECT = """\
version: 1
campaigns: campaigns
vars:
  brand: Acme
  currency: EUR
  campaign_ids:
{ids}
environments:
  local:
    api_url: emulator
    state: .xpdeploy/local.jsonl
  production:
    api_url: https://external-api.xtremepush.com
    apptoken_env: XPDEPLOY_APPTOKEN_PRODUCTION
    state: state/production.jsonl
    guards: {{max_targets: 100000}}
default_environment: local
"""

SPEC_HEAD = """\
# yaml-language-server: $schema=../schema/spec.schema.json
name: promo-{n:05d}
revision: 1
description: Generated promotion {n} for the benchmark
vars:
  bonus: {bonus}
execute:
  id: "{{{{ campaign_ids.c{group} }}}}"
  target_by: user_id
  target_with_params:
"""

RECIPIENT = '    crm-{n:05d}-{r:03d}: {{fname: "User{r}", balance: "{{{{ bonus }}}} {{{{ currency }}}}", tier: {r}}}\n'

SPEC_TAIL = """\
  params:
    brand: "{{{{ brand }}}}"
    external_message_id: "promo-{{{{ env }}}}-{n:05d}"
    promo_code: SPRING{n}
  push_title: "{{{{ brand }}}} spring promotion"
  push_text: "Hi, your {{{{ brand }}}} bonus is waiting"
  messages:
    3: {{push_require_interaction: true}}
  payload_add:
    - {{key: deeplink, value: "https://m.example.com/promo/{n}"}}
  retry_for: 2
  retry_for_period: days
  time: "2031-0{month}-1{day} 12:00 UTC"
"""


def spec_text(n: int, recipients: int) -> str:
    text = SPEC_HEAD.format(n=n, bonus=50 + n % 50, group=n % 10)
    text += "".join(RECIPIENT.format(n=n, r=r) for r in range(recipients))
    return text + SPEC_TAIL.format(n=n, month=1 + n % 9, day=n % 10)


WIDE_RECIPIENT = (
    '    crm-{r:06d}: {{fname: "User{r}", balance: "{b} EUR", brand: "{{{{ brand }}}}"}}\n'
)


def wide_spec_text(recipients: int) -> str:
    """One spec with many recipients, as exported from a CRM: literal values, one shared template."""
    text = SPEC_HEAD.format(n=0, bonus=50, group=0)
    text += "".join(WIDE_RECIPIENT.format(r=r, b=50 + r % 500) for r in range(recipients))
    return text + SPEC_TAIL.format(n=0, month=1, day=0)


def generate(out: Path, specs: int, recipients: int) -> Path:
    """Write the project; returns the folder holding the spec files."""
    (out / "campaigns").mkdir(parents=True, exist_ok=True)
    ids = "".join(f"    c{i}: {245000 + i}\n" for i in range(10))
    (out / "xpdeploy.yaml").write_text(PROJECT.format(ids=ids), encoding="utf-8")
    for n in range(specs):
        (out / "campaigns" / f"promo-{n:05d}.yaml").write_text(
            spec_text(n, recipients), encoding="utf-8"
        )
    return out / "campaigns"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--recipients", type=int, default=20)
    args = parser.parse_args()
    generate(args.out, args.specs, args.recipients)


if __name__ == "__main__":
    main()
