"""The execute-campaign request body, the spec file and the project file, described once.

These pydantic models validate rendered bodies on the hot path and are the one
source of the JSON Schemas in ``schema/`` (see :mod:`xpdeploy.schema`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"

Flag = Literal[0, 1]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Identifier = NonEmptyStr | int


def _recipients(value: Any) -> Any:
    """Identifier → variables, checked in place: a 100,000-recipient map is never copied."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ValueError("must be a non-empty mapping of recipient identifiers to their variables")
    for key, params in value.items():
        if not isinstance(params, dict):
            raise ValueError(
                f"the variables of recipient {key!r} must be a mapping, not {type(params).__name__}"
            )
    return value


Recipients = Annotated[
    Any,
    AfterValidator(_recipients),
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "object", "additionalProperties": True},
        }
    ),
]


class _Strict(BaseModel):
    """Models build their validators at first use; defaults are made with
    ``model_construct``, which needs none (they are valid by definition)."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, defer_build=True)


class PayloadPair(_Strict):
    """One extra payload pair, e.g. a deep link opened with the notification."""

    key: NonEmptyStr
    value: Any


class ExecuteBody(_Strict):
    """An execute-campaign request, less the apptoken (which only CI holds)."""

    id: Identifier = Field(description="The API-triggered campaign to execute.")
    target: list[Identifier] | None = Field(
        None, min_length=1, description="Identifiers of the kind target_by names."
    )
    target_by: Literal["user_id", "id", "external_id", "token", "email"] | None = Field(
        None, description="Which identifier target / target_with_params hold; default device id."
    )
    target_with_params: Recipients = Field(
        None, description="Identifier → per-recipient template variables."
    )
    params: dict[str, Any] | None = Field(
        None, description="Template variables for every recipient (external_message_id too)."
    )
    time: str | None = Field(
        None, description="'YYYY-MM-DD HH:MM UTC' or ISO-8601 with offset; sent in UTC."
    )
    messages: dict[Literal["1", "2", "3", "6", "7", "8", "9"], dict[str, Any]] | None = Field(
        None,
        description="Per-message-type overrides: 1 iOS, 2 Android, 3 web, 6 inbox, 7 email, 8 webhook, 9 SMS.",
    )
    payload_add: list[PayloadPair] | None = None
    retry_for: Annotated[int, Field(ge=1)] | None = None
    retry_for_period: Literal["hours", "days", "weeks"] | None = None
    target_existing_only: Flag | None = None
    # Campaign-model fields an execution may override (reference §2.3).
    title: str | None = None
    push_title: str | None = None
    push_text: str | None = None
    push_icon: str | None = None
    push_picture_type: Literal["url"] | None = None
    push_picture: str | None = None
    url: str | None = None
    url_browser: Flag | None = None
    page: str | None = None
    android_push: Flag | None = None
    ios_push: Flag | None = None
    ios_push_production: Flag | None = None
    ios_push_sandbox: Flag | None = None
    encryption: str | int | None = None
    broadcast: Flag | None = None
    conditions: dict[str, Any] | None = None
    extra: dict[str, Any] | None = Field(
        None, description="Fields the schema does not know yet, passed through unchecked."
    )


class SpecHeader(_Strict):
    """A spec before rendering: everything but the body, which is checked after."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)] = Field(description="Unique in the project.")
    revision: Annotated[int, Field(ge=1)] = Field(
        1, description="Bump it to send an applied execution again."
    )
    description: str | None = None
    environments: list[NonEmptyStr] | None = Field(
        None, description="Where this execution applies; default: every environment."
    )
    vars: dict[str, Any] | None = Field(None, description="Defaults, lowest precedence.")
    execute: dict[str, Any]


class Spec(SpecHeader):
    """One campaign execution as kept in git."""

    execute: ExecuteBody  # type: ignore[assignment]  # the rendered body, validated after


class Guards(_Strict):
    max_targets: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Block any execution with more recipients."
    )
    allow_segment_sends: bool = Field(
        False, description="Allow executions with no target (the campaign's own segment)."
    )


class Environment(_Strict):
    api_url: Annotated[str, Field(pattern=r"^(emulator|https?://[^\s/?#]+[^\s]*)$")] = Field(
        "https://external-api.xtremepush.com",
        description="'emulator' for the built-in emulator; US: https://api.us.xtremepush.com",
    )

    apptoken_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        "XPDEPLOY_APPTOKEN", description="NAME of the environment variable holding the token."
    )
    vars_files: list[NonEmptyStr] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict)
    state: NonEmptyStr | None = Field(
        None,
        description="The ledger: a path in the project (default state/<environment>.jsonl, or"
        " .xpdeploy/<environment>.jsonl for the emulator), postgresql://USER@HOST/DB, or"
        " git:BRANCH:PATH",
    )
    state_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        None, description="NAME of an environment variable holding the `state` value."
    )
    state_remote: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")] = Field(
        "origin", description="The git remote of a git:BRANCH:PATH state."
    )
    guards: Guards = Field(default_factory=Guards.model_construct)


class EmulatorSettings(_Strict):
    campaigns: list[Identifier] = Field(
        default_factory=list, description="Campaign ids the built-in emulator knows; empty: any."
    )


RedactPath = Annotated[str, Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


class Review(_Strict):
    redact: list[RedactPath] = Field(
        default_factory=list,
        description="Body paths masked in plan, diff and render output, e.g. params.*",
    )


class ProjectFile(_Strict):
    """The project file, xpdeploy.yaml."""

    version: Literal[1]
    campaigns: NonEmptyStr = "campaigns"
    vars: dict[str, Any] = Field(default_factory=dict)
    environments: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Environment] = Field(
        min_length=1
    )
    default_environment: str | None = None
    emulator: EmulatorSettings = Field(default_factory=EmulatorSettings.model_construct)
    review: Review = Field(default_factory=Review.model_construct)
