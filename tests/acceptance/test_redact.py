"""review.redact: masked values never reach render, plan or diff output, yet count everywhere."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, make_tree, project_text

from xpdeploy.canonical import body_sha256
from xpdeploy.emulator import Emulator
from xpdeploy.ledger import FileLedger
from xpdeploy.project import load_project
from xpdeploy.redact import REDACTED, redact

R = "(redacted)"  # the documented marker
REVIEW = "review: {redact: [target_with_params.*.balance, params.*]}\n"
ENVS: dict[str, Any] = {"local": {"api_url": "emulator"}}
SECRETS = ("98765 EUR", "77777 EUR", "SECRETCODE-9", "promo-msg-0001")
SHOWN = ("Alexandra", "Samuel", "2031-01-01 12:00 UTC", "user_id")
GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
GIT += ["-c", "commit.gpgsign=false"]


def promo(code: str = "SECRETCODE-9", fname: str = "Alexandra", name: str = "promo") -> str:
    return f"""\
name: {name}
vars: {{balance: 98765, code: {code}}}
execute:
  id: 42
  target_by: user_id
  target_with_params:
    crm-user-1: {{fname: {fname}, balance: "{{{{ balance }}}} EUR"}}
    crm-user-2: {{fname: Samuel, balance: "77777 EUR"}}
  params: {{external_message_id: "{name}-msg-0001", code: "{{{{ code }}}}"}}
  time: "2031-01-01 12:00 UTC"
"""


def setup(root: Path, environments: dict[str, Any] = ENVS, **spec: str) -> None:
    """xpdeploy.yaml (with review.redact) and plain.yaml (without), one campaigns folder."""
    text = project_text(environments)
    make_tree(
        root,
        {
            "xpdeploy.yaml": text + REVIEW,
            "plain.yaml": text,
            "campaigns/promo.yaml": promo(**spec),
        },
    )


def no_secrets(text: str, *more: str, masked: bool = True) -> None:
    for secret in (*SECRETS, *more):
        assert secret not in text, f"{secret!r} shown"
    assert not masked or R in text


def real_body(name: str = "promo") -> dict[str, Any]:
    result = cli(["render", "--project", "plain.yaml", name])
    assert result.exit_code == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)["executions"][0]["body"]
    body.pop("apptoken")
    return body


def check_masked(body: dict[str, Any]) -> None:
    assert body["target_with_params"] == {
        "crm-user-1": {"fname": "Alexandra", "balance": R},
        "crm-user-2": {"fname": "Samuel", "balance": R},
    }
    assert body["params"] == {"external_message_id": R, "code": R}
    assert body["id"] == 42 and body["time"] == "2031-01-01 12:00 UTC"
    assert body["apptoken"] == "***"


def test_the_fixture_has_the_secrets_without_review(tmp_path: Path) -> None:
    setup(tmp_path)
    body = real_body()
    assert body["params"] == {"external_message_id": "promo-msg-0001", "code": "SECRETCODE-9"}
    assert body["target_with_params"]["crm-user-1"]["balance"] == "98765 EUR"


# --- render ----------------------------------------------------------------------------


def test_render_json_and_yaml(tmp_path: Path) -> None:
    setup(tmp_path)
    result = cli(["render"])
    assert result.exit_code == 0
    no_secrets(result.stdout + result.stderr)
    check_masked(json.loads(result.stdout)["executions"][0]["body"])
    yaml_out = cli(["render", "--format", "yaml"])
    assert yaml_out.exit_code == 0
    no_secrets(yaml_out.stdout + yaml_out.stderr)
    for shown in SHOWN:
        assert shown in yaml_out.stdout


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_render_out_files(tmp_path: Path, fmt: str) -> None:
    setup(tmp_path)
    result = cli(["render", "--format", fmt, "--out", "out"])
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "out" / f"promo.{fmt}").read_text(encoding="utf-8")
    no_secrets(text)
    if fmt == "json":
        check_masked(json.loads(text))
    assert all(shown in text for shown in SHOWN)


# --- plan -------------------------------------------------------------------------------


def test_plan_text_markdown_json(tmp_path: Path) -> None:
    setup(tmp_path)
    for fmt in ("text", "markdown"):
        result = cli(["plan", "--format", fmt])
        assert result.exit_code == 0, result.stderr
        no_secrets(result.stdout + result.stderr)
        assert "Alexandra" in result.stdout and "Samuel" in result.stdout
    result = cli(["plan", "--format", "json"])
    no_secrets(result.stdout)
    (action,) = json.loads(result.stdout)["actions"]
    assert action["action"] == "send"
    check_masked(action["body"])
    assert action["body_sha256"] == body_sha256(real_body())  # the real body, not the shown one


# --- diff -------------------------------------------------------------------------------


def git_base(root: Path) -> None:
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)


def test_diff_shows_unmasked_changes_and_masks_the_rest(tmp_path: Path) -> None:
    setup(tmp_path)
    git_base(tmp_path)
    make_tree(
        tmp_path,
        {
            "campaigns/promo.yaml": promo(code="NEWCODE-5", fname="Alexis"),
            "campaigns/other.yaml": promo(name="other"),
        },
    )
    for fmt in ("text", "markdown", "json"):
        result = cli(["diff", "--base", "HEAD", "--format", fmt])
        assert result.exit_code == 0, result.stderr
        no_secrets(result.stdout + result.stderr, "NEWCODE-5", "other-msg-0001")
        assert "Alexandra" in result.stdout and "Alexis" in result.stdout
    document = json.loads(cli(["diff", "--base", "HEAD", "--format", "json"]).stdout)
    changes = {c["name"]: c for c in document["changes"]}
    assert {n: c["change"] for n, c in changes.items()} == {"other": "added", "promo": "modified"}
    assert '+    "code": "(redacted)",' in changes["other"]["diff"].splitlines()
    lines = changes["promo"]["diff"].splitlines()
    assert '-      "fname": "Alexandra"' in lines and '+      "fname": "Alexis"' in lines


def redacted_only_change(root: Path) -> None:
    setup(root)
    git_base(root)
    make_tree(root, {"campaigns/promo.yaml": promo(code="NEWCODE-5")})


def test_diff_change_only_under_a_masked_path_still_shows(tmp_path: Path) -> None:
    redacted_only_change(tmp_path)
    assert real_body()["params"]["code"] == "NEWCODE-5"
    document = json.loads(cli(["diff", "--base", "HEAD", "--format", "json"]).stdout)
    assert [(c["name"], c["change"]) for c in document["changes"]] == [("promo", "modified")]
    assert "NEWCODE-5" not in json.dumps(document) and "SECRETCODE-9" not in json.dumps(document)
    text = cli(["diff", "--base", "HEAD", "--detailed-exitcode"])
    assert text.exit_code == 2
    assert "~ local/promo modified" in text.stdout and "redact" in text.stdout
    assert "1 modified" in text.stdout
    markdown = cli(["diff", "--base", "HEAD", "--format", "markdown"]).stdout
    assert "| ~ | local | `promo` | modified |" in markdown and "<details>" in markdown
    assert "redact" in markdown.split("<details>", 1)[1]
    for out in (text.stdout, markdown):
        assert not any(s in out for s in (*SECRETS, "NEWCODE-5"))


def test_diff_json_says_a_change_was_only_in_redacted_values(tmp_path: Path) -> None:
    redacted_only_change(tmp_path)
    document = json.loads(cli(["diff", "--base", "HEAD", "--format", "json"]).stdout)
    (change,) = document["changes"]
    said = json.dumps({k: v for k, v in change.items() if k != "name"}) + str(document["notes"])
    assert change["diff"] or "redact" in said


# --- apply: the real values are sent and hashed; a masked change is drift ----------------


def ledger_hash(root: Path, env: str = "local", name: str = "promo") -> str:
    path = load_project(root / "xpdeploy.yaml").state_path(env)
    return FileLedger(path, env).read().records[name].body_sha256


def test_masked_change_after_apply_is_drifted_and_hashes_the_real_body(tmp_path: Path) -> None:
    setup(tmp_path)
    sent = real_body()
    applied = cli(["apply", "--auto-approve"])
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    no_secrets(applied.stdout + applied.stderr)
    assert ledger_hash(tmp_path) == body_sha256(sent)
    assert json.loads(cli(["plan", "--format", "json"]).stdout)["actions"][0]["action"] == (
        "unchanged"
    )
    make_tree(tmp_path, {"campaigns/promo.yaml": promo(code="NEWCODE-5")})
    now = real_body()
    assert now["params"]["code"] == "NEWCODE-5" and body_sha256(now) != body_sha256(sent)
    result = cli(["plan", "--format", "json", "--detailed-exitcode"])
    assert result.exit_code == 0  # nothing to send: drift is never sent
    (action,) = json.loads(result.stdout)["actions"]
    assert action["action"] == "drifted"
    assert action["body_sha256"] == body_sha256(now) != ledger_hash(tmp_path)
    check_masked(action["body"])
    for fmt in ("text", "markdown", "json"):
        out = cli(["plan", "--format", fmt]).stdout
        assert "drifted" in out
        no_secrets(out, "NEWCODE-5", masked=fmt != "text")  # text shows bodies of sends only


def test_apply_sends_the_real_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(tmp_path, {"local": {"api_url": "https://example.invalid"}})
    with Emulator("127.0.0.1", 0, apptoken="tok-redact-1") as emulator:
        monkeypatch.setenv("XPDEPLOY_API_URL", emulator.url)
        monkeypatch.setenv("XPDEPLOY_APPTOKEN", "tok-redact-1")
        result = cli(["apply", "--auto-approve"])
        assert result.exit_code == 0, result.stdout + result.stderr
        no_secrets(result.stdout + result.stderr)
        (accepted,) = emulator.accepted_requests()
    accepted.pop("apptoken", None)
    assert accepted == real_body()
    assert accepted["params"]["code"] == "SECRETCODE-9"
    assert accepted["target_with_params"]["crm-user-1"]["balance"] == "98765 EUR"
    assert ledger_hash(tmp_path) == body_sha256(accepted)


# --- the pattern language: xpdeploy.redact.redact --------------------------------------


def sample() -> dict[str, Any]:
    return {
        "id": 42,
        "target_by": "user_id",
        "target": ["crm-user-1", "crm-user-2", "crm-user-3"],
        "target_with_params": {
            "crm-user-1": {"fname": "Alex", "balance": "100 EUR"},
            "crm-user-2": {"fname": "Sam", "balance": "7 EUR"},
            "crm-user-3": {"fname": "Kim"},
        },
        "params": {"external_message_id": "welcome-001", "code": "SECRET-1"},
        "messages": {"1": {"text": "hi", "links": [{"url": "u1"}, {"url": "u2"}]}},
        "time": "2031-01-01 12:00 UTC",
    }


def test_the_marker_is_the_documented_word() -> None:
    assert REDACTED == R


def test_star_over_dict_keys() -> None:
    out = redact(sample(), ["params.*"])
    assert out["params"] == {"external_message_id": R, "code": R}
    assert out["target_with_params"] == sample()["target_with_params"]


def test_star_in_the_middle_and_an_exact_key() -> None:
    out = redact(sample(), ["target_with_params.*.balance"])
    assert out["target_with_params"] == {
        "crm-user-1": {"fname": "Alex", "balance": R},
        "crm-user-2": {"fname": "Sam", "balance": R},
        "crm-user-3": {"fname": "Kim"},  # no balance: nothing added
    }
    assert out["params"] == sample()["params"]


def test_exact_key_masks_a_whole_subtree() -> None:
    out = redact(sample(), ["target_with_params"])
    assert out["target_with_params"] == R
    assert out["target"] == sample()["target"]


def test_star_over_list_items() -> None:
    out = redact(sample(), ["target.*"])
    assert out["target"] == [R, R, R]


def test_list_index() -> None:
    out = redact(sample(), ["target.1"])
    assert out["target"] == ["crm-user-1", R, "crm-user-3"]


def test_nested_index_and_star_through_lists() -> None:
    out = redact(sample(), ["messages.1.links.*.url"])
    assert out["messages"]["1"]["links"] == [{"url": R}, {"url": R}]
    assert out["messages"]["1"]["text"] == "hi"
    one = redact(sample(), ["messages.1.links.0.url"])
    assert one["messages"]["1"]["links"] == [{"url": R}, {"url": "u2"}]


def test_top_level_star_masks_every_field() -> None:
    out = redact(sample(), ["*"])
    assert set(out) == set(sample())
    assert all(value == R for value in out.values())


@pytest.mark.parametrize(
    "pattern",
    [
        "nope",
        "params.nope",
        "target.9",  # index past the end
        "target.x",  # a list has no key x
        "id.deeper",  # a scalar has no children
        "time.*",
        "target_with_params.*.balance.more",
        "target_with_params.nobody.*",
    ],
)
def test_patterns_that_match_nothing_change_nothing(pattern: str) -> None:
    assert redact(sample(), [pattern]) == sample()


def test_no_patterns_is_a_plain_copy() -> None:
    original = sample()
    out = redact(original, [])
    assert out == original
    out["id"] = 1
    assert original["id"] == 42


def test_several_patterns_combine() -> None:
    out = redact(sample(), ["target_with_params.*.balance", "params.*", "target.0"])
    assert out["params"] == {"external_message_id": R, "code": R}
    assert out["target_with_params"]["crm-user-2"] == {"fname": "Sam", "balance": R}
    assert out["target"][0] == R and out["target"][1] == "crm-user-2"
    assert out["id"] == 42 and out["time"] == "2031-01-01 12:00 UTC"


def test_masks_non_string_values_too() -> None:
    out = redact({"params": {"n": 5, "flag": True, "m": {"k": [1]}, "z": None}}, ["params.*"])
    assert out == {"params": {"n": R, "flag": R, "m": R, "z": R}}


def test_the_input_is_not_mutated() -> None:
    original = sample()
    snapshot = copy.deepcopy(original)
    out = redact(
        original,
        ["target_with_params.*.balance", "params.*", "target.*", "messages.1.links.*.url"],
    )
    assert original == snapshot
    assert out != snapshot
    # nothing shared that a later change to the copy could reach
    out["target_with_params"]["crm-user-1"]["fname"] = "changed"
    out["messages"]["1"]["links"].append("x")
    assert original == snapshot


def test_redacting_twice_is_the_same() -> None:
    patterns = ["target_with_params.*.balance", "params.*"]
    once = redact(sample(), patterns)
    assert redact(once, patterns) == once


def test_a_pattern_of_only_dots_does_not_crash() -> None:
    out = redact(sample(), ["."])
    assert isinstance(out, dict)
