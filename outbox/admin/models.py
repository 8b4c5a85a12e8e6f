"""What crosses the admin boundary: webhook input as Label Studio's API takes it (plus outbox's
fields), and webhooks, events, deliveries and attempts as the API and CLI show them.

Input models ignore unknown and read-only fields (``id``, ``created_at``, …) as Label Studio
does, so a client that sends back what it read works unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from outbox.admin import states, validation

MAX_INT = 2**31 - 1


def _json_number(value: object) -> object:
    # JSON types as JSON Schema reads them: true is not 1 and "5" is not 5 (pydantic's lax mode
    # would take both), but 5.0 is the integer 5
    if isinstance(value, bool | str):
        raise ValueError("A valid number is required.")
    return value


# (constraints before the validator, or pydantic leaves them out of the JSON schema)
Id = Annotated[int, Field(ge=1, le=MAX_INT), BeforeValidator(_json_number)]
Seconds = Annotated[int, Field(ge=0, le=30 * 86400), BeforeValidator(_json_number)]
Concurrency = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_json_number)]
PerSecond = Annotated[float, Field(ge=0.01, le=10_000), BeforeValidator(_json_number)]
Timeout = Annotated[float, Field(ge=0.1, le=300), BeforeValidator(_json_number)]


def _iso_only(value: object) -> object:
    # pydantic would take 1700000000 (or "0.5") as a Unix time: only ISO 8601 text is a time here
    if isinstance(value, str) and not value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("Datetime has wrong format. Use ISO 8601, e.g. 2026-01-31T12:00:00Z.")


When = Annotated[datetime, BeforeValidator(_iso_only)]
# base64 of 24 to 64 bytes, for the schema (validation.secret_problem decides)
SECRET_PATTERN = r"^whsec_(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)?$"
URL_SCHEMA: dict[str, Any] = {"format": "uri", "minLength": 1, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}


def _action_name(value: object) -> object:
    # which names are registered is the registry's to say (outbox.admin.actions); this is only
    # the form of one, with Label Studio's message for anything else
    if isinstance(value, str) and validation.ACTION_NAME.match(value):
        return value
    shown = value if isinstance(value, str) and len(value) <= 64 else "value"
    raise ValueError(f'"{shown}" is not a valid choice.')


ActionName = Annotated[str, BeforeValidator(_action_name)]
# an action filter: a registered action, PING, or one removed since its events were logged
ACTION_PATTERN = r"^[A-Z][A-Z0-9_]{0,99}$"


def _text(value: str, what: str) -> str:
    if not validation.encodable(value):
        raise ValueError(f"{what} must be UTF-8 text without NUL characters.")
    return value


class _WebhookInput(BaseModel):
    """Fields a client may write, with Label Studio's defaults (``url`` is in the subclasses)."""

    # unknown fields are ignored, as Label Studio does (a client may send back what it read)
    model_config = ConfigDict(
        extra="ignore", allow_inf_nan=False, json_schema_extra={"additionalProperties": True}
    )

    send_payload: StrictBool = Field(True, description="If false, send only the action.")
    send_for_all_actions: StrictBool = Field(
        True, description="If false, send only the actions listed in `actions`."
    )
    headers: dict[str, Any] = Field(
        default_factory=dict,
        description="Static request headers, name to string value (at most 10).",
        json_schema_extra={
            "maxProperties": validation.MAX_HEADERS,
            "propertyNames": {"pattern": "^[A-Za-z0-9_-]+$", "maxLength": validation.MAX_HEADER_NAME},
            "additionalProperties": {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f]*$"},
        },
    )
    is_active: StrictBool = Field(True, description="If false, the webhook is paused.")
    actions: list[ActionName] = Field(
        default_factory=list,
        description="Actions sent when `send_for_all_actions` is false (names from "
        "`GET /api/webhooks/info/`). Omitted on PATCH: kept.",
        max_length=validation.MAX_ACTIONS,
    )
    # outbox's own fields
    description: str = Field("", max_length=1000)
    secret: str | None = Field(
        None,
        description="Signing secret (`whsec_` + base64 of 24-64 bytes); write-only, shown masked.",
        max_length=200,
        json_schema_extra={"pattern": SECRET_PATTERN},
    )
    ordered: StrictBool = Field(False, description="Deliver a project's events one at a time, in order.")
    delete_payload: Literal["ids", "rows"] = Field(
        "ids",
        description='What delete events list: `ids` ({"id": N}, as Label Studio) or `rows` (the '
        "deleted rows as they were).",
    )
    max_concurrency: Concurrency = Field(8, description="Requests in flight at most.")
    rate_limit: PerSecond | None = Field(None, description="Requests per second at most; null = unlimited.")
    timeout: Timeout | None = Field(None, description="Seconds per request; null = WEBHOOK_TIMEOUT.")
    retry_schedule: list[Seconds] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="Seconds to wait before each attempt; null = the relay's default schedule.",
    )

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str) -> str:
        problems = validation.url_problems(value)
        if problems:
            raise ValueError(" ".join(problems))
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = validation.header_problems(value)
        if problems:
            raise ValueError(" ".join(problems))
        return value

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return _text(value, "The description")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None or validation.is_masked(value):
            return value  # a masked secret means "unchanged" when it is the current one's
        problem = validation.secret_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class WebhookCreate(_WebhookInput):
    """``POST /api/webhooks/`` (and ``PUT``): ``url`` is required."""

    url: str = Field(
        description="Where to POST (http or https).",
        max_length=validation.MAX_URL_LENGTH,
        json_schema_extra=URL_SCHEMA,
    )
    project: Id | None = Field(None, description="Project id; null = organization-level webhook.")
    organization: Id | None = Field(
        None,
        description="Organization id (outbox): by default the project's, or the only organization.",
    )


class WebhookUpdate(_WebhookInput):
    """``PATCH /api/webhooks/<id>/``: only the fields sent change; ``project`` cannot change."""

    url: str = Field(
        "",
        description="Where to POST (http or https).",
        max_length=validation.MAX_URL_LENGTH,
        json_schema_extra=URL_SCHEMA,
    )


class SecretRotation(BaseModel):
    """``POST /api/webhooks/<id>/rotate-secret``: a secret to use, or none to have one generated."""

    model_config = ConfigDict(extra="ignore")

    secret: str | None = Field(None, max_length=200, json_schema_extra={"pattern": SECRET_PATTERN})

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and (problem := validation.secret_problem(value)):
            raise ValueError(problem)
        return value


class RecoverRequest(BaseModel):
    """``POST /api/webhooks/<id>/recover``: redeliver failed and dead deliveries created in
    ``[since, until)``."""

    model_config = ConfigDict(extra="ignore")

    since: When
    until: When | None = Field(None, description="Default: now.")


# Actions an event can have: registered ones, those removed since, and PING
EventAction = Annotated[str, Field(pattern=ACTION_PATTERN, max_length=100)]


# -- output ------------------------------------------------------------------------------------

WebhookStatus = states.WebhookStatus
DeliveryState = Literal["pending", "delivered", "dead"]


class WebhookHealth(BaseModel):
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None


class Webhook(BaseModel):
    """A webhook: Label Studio's fields first, in its order, then outbox's."""

    id: int
    organization: int
    project: int | None
    url: str
    send_payload: bool
    send_for_all_actions: bool
    headers: dict[str, Any]
    is_active: bool
    actions: list[str]
    created_at: datetime
    updated_at: datetime
    description: str
    secret: str | None = Field(description="Masked: `whsec_****` and the last four characters.")
    previous_secret_expires_at: datetime | None = Field(
        description="While set and in the future, the replaced secret still signs too."
    )
    ordered: bool
    delete_payload: str
    max_concurrency: int
    rate_limit: float | None
    timeout: float | None
    retry_schedule: list[int] | None
    status: WebhookStatus = Field(
        description="active, failing (recent attempts failed), paused (by a user) or disabled "
        "(by the relay, see disabled_reason)."
    )
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    health: WebhookHealth


class SecretRotated(BaseModel):
    webhook: Webhook
    secret: str | None = Field(
        description="The new secret when outbox generated it: shown this once, never again."
    )
    previous_secret_expires_at: datetime | None


class Delivery(BaseModel):
    id: int
    webhook: int
    event: int
    action: str
    project: int | None
    chunk: int
    message_id: str = Field(description="Sent as `webhook-id`; the same on every attempt.")
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None = Field(description="When pending: the next attempt is due.")
    in_flight: bool = Field(description="A relay is attempting it right now.")
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class Attempt(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error_class: str | None
    error: str | None
    response_body: str | None
    request_headers: dict[str, Any] = Field(description="As sent, static header values masked.")


class DeliveryDetail(Delivery):
    attempt_log: list[Attempt]


class DeliveryCounts(BaseModel):
    pending: int = 0
    delivered: int = 0
    dead: int = 0


class Event(BaseModel):
    id: int
    action: str
    organization: int | None
    project: int | None
    row_count: int
    chunk_size: int
    created_at: datetime
    deliveries: DeliveryCounts


class DeliveryPage(BaseModel):
    results: list[Delivery]
    next: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class EventPage(BaseModel):
    results: list[Event]
    next: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class Recovered(BaseModel):
    webhook: int
    since: datetime
    until: datetime
    redelivered: int = Field(description="Deliveries made due again.")


class ActionInfo(BaseModel):
    name: str
    description: str
    key: str
    organization_only: bool = Field(alias="organization-only")

    model_config = ConfigDict(populate_by_name=True)
