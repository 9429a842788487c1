"""`xpdeploy diff --base REF`: the project at a git ref against the work tree (SPEC §4).

What changed, in each format; shared variables; environment selection and exit codes.
How the base comes out of git (a base that does not lint, bad refs, subfolders, the
repository left as it was): test_diff_base.py. The shared builders are in helpers.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from helpers import (
    ENVS,
    changed,
    cli,
    commit,
    diff_json,
    git,
    make_tree,
    project,
    project_text,
    spec,
    write_spec,
)

MARKER = "<!-- xpdeploy diff -->"


def three_way(root: Path) -> None:
    """keep (unchanged), change (edited), gone (deleted), new + fresh (added), in 2 envs."""
    project(root, {f"{n}.yaml": spec(n) for n in ("keep", "change", "gone")}, ENVS)
    commit(root)
    write_spec(root, "change", text="Hello again")
    (root / "campaigns" / "gone.yaml").unlink()
    write_spec(root, "new", text="Brand new")
    write_spec(root, "fresh")


EXPECTED = {
    (env, name, kind)
    for env in ENVS
    for name, kind in (
        ("change", "modified"),
        ("gone", "removed"),
        ("new", "added"),
        ("fresh", "added"),
    )
}


def body_of(diff: str, sign: str) -> dict[str, Any]:
    """The JSON body spelled by the `sign` lines of a one-sided unified diff."""
    lines = [line[1:] for line in diff.splitlines()[3:]]  # skip ---, +++, @@
    assert all(line.startswith(sign) for line in diff.splitlines()[3:])
    loaded: dict[str, Any] = json.loads("\n".join(lines))
    return loaded


# --- what changed, in each format ---------------------------------------------------------


def test_json_added_removed_modified_per_environment(tmp_path: Path) -> None:
    three_way(tmp_path)
    document = diff_json()
    assert document["format_version"] == 1 and document["base"] == "HEAD"
    assert changed(document) == EXPECTED
    assert all(set(c) >= {"environment", "name", "change", "diff"} for c in document["changes"])
    by_key = {(c["environment"], c["name"]): c["diff"] for c in document["changes"]}
    modified = by_key[("staging", "change")].splitlines()
    assert modified[:2] == ["--- HEAD/staging/change", "+++ work-tree/staging/change"]
    assert '-    "text": "Hello"' in modified and '+    "text": "Hello again"' in modified
    assert [line for line in modified if line[:1] in "+-"][2:] == [
        '-    "text": "Hello"',
        '+    "text": "Hello again"',
    ]
    # added / removed spell the whole canonical body, the one render sends
    rendered = json.loads(cli(["render", "-e", "staging", "new"]).stdout)["executions"][0]["body"]
    rendered.pop("apptoken")
    assert body_of(by_key[("staging", "new")], "+") == rendered
    gone = body_of(by_key[("local", "gone")], "-")
    assert gone["params"] == {"external_message_id": "gone-local", "text": "Hello"}


def test_text_format(tmp_path: Path) -> None:
    three_way(tmp_path)
    result = cli(["diff", "--base", "HEAD"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for env in ENVS:
        assert f"~ {env}/change modified" in lines
        assert f"+ {env}/new added" in lines
        assert f"- {env}/gone removed" in lines
    assert not any("keep" in line for line in lines)
    assert '    +    "text": "Hello again"' in lines
    assert lines[-1] == "Diff against HEAD: 4 added, 2 modified, 2 removed."


def test_markdown_format(tmp_path: Path) -> None:
    three_way(tmp_path)
    result = cli(["diff", "--base", "HEAD", "--format", "markdown"])
    text = result.stdout
    assert result.exit_code == 0 and text.startswith(MARKER + "\n")
    assert "| | environment | execution | change |" in text
    assert "| ~ | staging | `change` | modified |" in text
    assert "| + | local | `new` | added |" in text
    assert "| - | local | `gone` | removed |" in text
    assert text.count("<details>") == text.count("</details>") == 8
    assert "```diff" in text and '+    "text": "Hello again"' in text
    assert "keep" not in text and "left out" not in text


def test_markdown_fits_a_comment_and_says_what_was_left_out(tmp_path: Path) -> None:
    docs = [spec(f"e{i:04d}", text="{{ word }} " + str(i)) for i in range(1000)]
    make_tree(
        tmp_path,
        {
            "xpdeploy.yaml": project_text(vars={"word": "one"}),
            "campaigns/all.yaml": "---\n".join(docs),
        },
    )
    commit(tmp_path)
    make_tree(tmp_path, {"xpdeploy.yaml": project_text(vars={"word": "two"})})
    assert len(diff_json()["changes"]) == 1000
    text = cli(["diff", "--base", "HEAD", "--format", "markdown"]).stdout
    assert len(text) <= 65_536 and text.startswith(MARKER)  # GitHub's comment limit
    assert "| | environment | execution | change |" in text
    rows = len(re.findall(r"^\| ~ \| local \| `e\d{4}` \| modified \|$", text, re.MULTILINE))
    blocks = text.count("<details>")
    assert 0 < blocks < 1000 and text.count("</details>") == blocks
    left = re.search(r"(\d+) row\(s\) and (\d+) diff\(s\) left out", text)
    assert left, text[-500:]
    assert rows + int(left.group(1)) == 1000
    assert blocks + int(left.group(2)) == 1000


# --- shared variables -------------------------------------------------------------------


def vars_project(root: Path, brand: str = "Acme", staging_greeting: str = "Hi") -> None:
    environments = {
        "local": {"api_url": "emulator"},
        "staging": {"api_url": "emulator", "vars_files": ["vars/staging.yaml"]},
        "production": {"api_url": "emulator", "vars": {"brand": "ProdCo"}},
    }
    text = "{{ greeting }} from {{ brand }}"
    make_tree(
        root,
        {
            "xpdeploy.yaml": project_text(environments, vars={"brand": brand}),
            "vars/staging.yaml": f"greeting: {staging_greeting}\n",
            "campaigns/s1.yaml": "vars: {greeting: Hello}\n" + spec("s1", text),
            "campaigns/s2.yaml": "vars: {greeting: Hello}\n" + spec("s2", text),
            "campaigns/s3.yaml": "vars: {greeting: Hello}\n"
            + spec("s3", text, environments=["staging", "production"]),
            "campaigns/s4.yaml": spec("s4", "no variables here"),
        },
    )


def test_vars_file_change_shows_on_every_execution_of_that_environment_only(
    tmp_path: Path,
) -> None:
    vars_project(tmp_path)
    commit(tmp_path)
    vars_project(tmp_path, staging_greeting="Howdy")
    document = diff_json()
    assert changed(document) == {("staging", n, "modified") for n in ("s1", "s2", "s3")}
    assert all('+    "text": "Howdy from Acme"' in c["diff"] for c in document["changes"])


def test_project_vars_change_shows_where_not_overridden(tmp_path: Path) -> None:
    vars_project(tmp_path)
    commit(tmp_path)
    vars_project(tmp_path, brand="Acme Two")
    expected = {("local", "s1"), ("local", "s2"), ("staging", "s1")}
    expected |= {("staging", "s2"), ("staging", "s3")}  # production sets its own brand
    assert changed(diff_json()) == {(e, n, "modified") for e, n in expected}


# --- environments, exit codes ------------------------------------------------------------


def test_environment_selection(tmp_path: Path) -> None:
    three_way(tmp_path)
    assert {c[0] for c in changed(diff_json())} == {"local", "staging"}  # not just the default
    assert changed(diff_json("-e", "staging")) == {c for c in EXPECTED if c[0] == "staging"}
    assert changed(diff_json("--env", "local")) == {c for c in EXPECTED if c[0] == "local"}
    both = cli(["diff", "--base", "HEAD", "-e", "staging", "--all-envs"])
    assert both.exit_code == 1 and "not both" in both.stderr  # ambiguous: refused
    assert changed(diff_json("--all-envs")) == EXPECTED

    result = cli(["diff", "--base", "HEAD", "-e", "prod"])
    assert result.exit_code == 1 and "prod" in result.stderr


def test_detailed_exitcode(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    commit(tmp_path)
    for fmt in ("text", "json", "markdown"):
        assert cli(["diff", "--base", "HEAD", "--format", fmt]).exit_code == 0
        assert (
            cli(["diff", "--base", "HEAD", "--format", fmt, "--detailed-exitcode"]).exit_code == 0
        )
    quiet = cli(["diff", "--base", "HEAD", "--format", "markdown"]).stdout
    assert quiet.startswith(MARKER) and "No request body changes." in quiet
    assert diff_json()["changes"] == []
    write_spec(tmp_path, "a", text="changed")
    assert cli(["diff", "--base", "HEAD"]).exit_code == 0
    for fmt in ("text", "json", "markdown"):
        assert (
            cli(["diff", "--base", "HEAD", "--format", fmt, "--detailed-exitcode"]).exit_code == 2
        )
    assert cli(["diff", "--base", "HEAD", "-e", "local", "--detailed-exitcode"]).exit_code == 2


def test_committed_changes_against_a_branch(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a"), "b.yaml": spec("b")}, ENVS)
    commit(tmp_path)
    git(tmp_path, "checkout", "-q", "-b", "feature")
    write_spec(tmp_path, "a", text="on the branch")
    commit(tmp_path, "feature work")
    assert diff_json(base="HEAD")["changes"] == []
    assert changed(diff_json(base="main")) == {(e, "a", "modified") for e in ENVS}
    document = diff_json(base="HEAD~1")
    assert document["base"] == "HEAD~1" and len(document["changes"]) == 2
