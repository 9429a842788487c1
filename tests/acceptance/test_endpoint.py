"""A ledger remembers where its sends went, and the token travels only encrypted."""

from __future__ import annotations

import pytest
from deploy_helpers import (
    TOKEN,
    TOKEN_ENV,
    Deploy,
    output,
)


def test_sends_elsewhere_are_refused_once_the_ledger_knows_its_api(deploy: Deploy) -> None:
    assert deploy.apply("s01").exit_code == 0
    endpoint = deploy.records()["s01"].endpoint
    assert endpoint == deploy.emulator.url  # http://127.0.0.1:PORT
    # The same environment pointed at the built-in emulator would mark s02 "applied" for
    # an API that never saw it: refused, nothing recorded.
    serial = deploy.state().serial
    refused = deploy.apply("s02", env={"XPDEPLOY_API_URL": "emulator"})
    assert refused.exit_code == 1
    assert f"records sends to {endpoint}" in output(refused)
    assert deploy.state().serial == serial
    assert deploy.apply("s02").exit_code == 0  # back to its own API: fine
    assert [body["params"]["external_message_id"] for body in deploy.accepted] == [
        "s01-staging",
        "s02-staging",
    ]


@pytest.mark.parametrize("url", ["http://api.example.com", "ftp://api.example.com", "nonsense"])
def test_the_token_never_travels_unencrypted_or_to_a_non_url(deploy: Deploy, url: str) -> None:
    result = deploy.apply(env={"XPDEPLOY_API_URL": url})
    assert result.exit_code == 1
    assert "http" in output(result) and "Traceback" not in output(result)
    assert deploy.accepted == [] and not deploy.ledger_path.exists()


def test_a_token_with_a_trailing_newline_is_the_token(deploy: Deploy) -> None:
    """Secrets pasted with a newline must authenticate, and the newline never masks a leak."""
    result = deploy.apply("s01", env={TOKEN_ENV: TOKEN + "\n"})
    assert result.exit_code == 0, output(result)
    assert deploy.statuses() == {"s01": "applied"}


def test_a_plan_says_when_its_ledger_does_not_exist(deploy: Deploy) -> None:
    """A renamed environment or a moved state: path would make everything new: say so."""
    first = deploy.run("plan").stdout.splitlines()[0]
    assert first.endswith(
        "(ledger state/staging.jsonl does not exist yet: every execution is new to it)"
    )
    markdown = deploy.run("plan", "--format", "markdown").stdout
    assert "Ledger state/staging.jsonl does not exist yet" in markdown
    assert deploy.apply("s01").exit_code == 0
    assert "(ledger state/staging.jsonl, serial 2)" in deploy.run("plan").stdout


def test_a_ledger_first_written_by_a_run_at_the_emulator_stops_plan_too(deploy: Deploy) -> None:
    """Found by fuzzing: the fresh production ledger then said "unchanged" for s01."""
    assert deploy.apply("s01", env={"XPDEPLOY_API_URL": "emulator"}).exit_code == 0
    for command in (["plan"], ["apply", "--auto-approve"]):
        refused = deploy.run(*command)
        assert refused.exit_code == 1 and "records sends to emulator" in output(refused)
    assert deploy.accepted == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:tok-SECRET-1@api.example.com", "has a user or password in it"),
        ("http://u:tok-SECRET-1@10.0.0.1", "has a user or password in it"),
        ("https://tok-SECRET-1@api.example.com", "has a user or password in it"),
        ("https://[::1", "is not a valid URL"),
        ("https://u:tok-SECRET-1@[::1", "is not a valid URL"),
        ("https://api.example.com:99999", "is not a valid URL"),
    ],
)
def test_an_api_url_never_carries_or_shows_credentials(
    deploy: Deploy, url: str, message: str
) -> None:
    result = deploy.apply(env={"XPDEPLOY_API_URL": url})
    assert result.exit_code == 1 and message in output(result)
    assert "tok-SECRET-1" not in output(result) and "Traceback" not in output(result)
    assert deploy.accepted == [] and not deploy.ledger_path.exists()
