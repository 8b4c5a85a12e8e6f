"""What the console's forms send: read once, refused unless they carry the session's CSRF token,
and turned into the admin layer's input models (which decide what is valid, as for the API).

Forms are ``application/x-www-form-urlencoded`` (what a browser sends without JavaScript). Every
state-changing request is refused with 403, its form ignored, when:

- its ``Sec-Fetch-Site`` says another site made it, or its ``Origin`` is another site's;
- it comes from a browser session and its ``csrf`` field is not that session's token.

A client that sent the admin token in ``Authorization`` needs no CSRF token (a browser never adds
that header on its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, Request

from outbox.admin.errors import Invalid
from outbox.admin.models import Webhook
from outbox.api.auth import Visitor, require_visitor
from outbox.console import session

MAX_FIELDS = 200
MASK = "***"  # what a header value looks like in the console (and in the attempt log)


class Forbidden(Exception):
    """A state-changing request that may come from another site: nothing is done."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Form:
    """A submitted form: each field's values, in order."""

    fields: Mapping[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))

    def checked(self, name: str) -> bool:
        return name in self.fields


def cross_site(request: Request) -> str | None:
    """Why ``request`` looks made by another site, or None."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "the request was made by another site"
    origin = request.headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.headers.get("host")):
        return "the request's Origin is another site"
    return None


async def read(request: Request) -> Form:
    """The form of ``request`` (at most ``MAX_FIELDS`` fields; RequestLimits bounded its size)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return Form()
    body = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(body, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise Forbidden("the form has too many fields") from None
    return Form(fields)


async def submitted(request: Request, visitor: Annotated[Visitor, Depends(require_visitor)]) -> Form:
    """The form of a state-changing console request, once it has passed the CSRF checks."""
    reason = cross_site(request)
    if reason is not None:
        raise Forbidden(reason)
    form = await read(request)
    if not visitor.by_header and not session.csrf_valid(
        request.app.state.console_key, visitor.session, form.get("csrf") or None
    ):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")
    return form


Submitted = Annotated[Form, Depends(submitted)]


# -- the webhook form ----------------------------------------------------------------------------


def blank_values() -> dict[str, Any]:
    """A new webhook's form, with Label Studio's defaults."""
    return {
        "url": "",
        "project": "",
        "description": "",
        "send_payload": True,
        "send_for_all_actions": True,
        "actions": [],
        "headers": "",
        "ordered": False,
        "max_concurrency": "8",
        "rate_limit": "",
        "timeout": "",
        "retry_schedule": "",
    }


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def values_of(webhook: Webhook) -> dict[str, Any]:
    """The edit form of ``webhook``; header values and the URL's password are shown masked, and
    kept when sent back so."""
    return {
        "url": webhook.url,  # its password masked by the admin layer, kept when sent back so
        "project": "" if webhook.project is None else str(webhook.project),
        "description": webhook.description,
        "send_payload": webhook.send_payload,
        "send_for_all_actions": webhook.send_for_all_actions,
        "actions": list(webhook.actions),
        "headers": "\n".join(f"{name}: {MASK}" for name in webhook.headers),
        "ordered": webhook.ordered,
        "max_concurrency": str(webhook.max_concurrency),
        "rate_limit": _number(webhook.rate_limit),
        "timeout": _number(webhook.timeout),
        "retry_schedule": ", ".join(str(s) for s in webhook.retry_schedule or []),
    }


def values_from(form: Form) -> dict[str, Any]:
    """The webhook form as submitted, to show it again with its errors."""
    values = blank_values()
    for name in ("url", "project", "description", "headers", "max_concurrency", "rate_limit", "timeout"):
        values[name] = form.get(name)
    values["retry_schedule"] = form.get("retry_schedule")
    values["actions"] = form.all("actions")
    for name in ("send_payload", "ordered"):
        values[name] = form.checked(name)
    values["send_for_all_actions"] = form.get("send_for_all_actions", "all") == "all"
    return values


def _parsed(text: str, field_name: str, kind: type[int] | type[float], errors: dict[str, list[str]]) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        word = "integer" if kind is int else "number"
        errors[field_name] = [f"A valid {word} is required."]
        return None


def _headers(text: str, current: Mapping[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            errors["headers"] = [f"Line {number}: write one header per line, as `Name: value`."]
            continue
        # a value sent back masked is the current one, unchanged
        headers[name] = current[name] if value == MASK and name in current else value
    return headers


def webhook_input(form: Form, *, creating: bool, current_headers: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook form as the admin layer's input (validated there); Invalid for what cannot
    even be read (a number that is no number, a header line without a colon)."""
    errors: dict[str, list[str]] = {}
    data: dict[str, Any] = {
        "url": form.get("url").strip(),
        "description": form.get("description"),
        "send_payload": form.checked("send_payload"),
        "send_for_all_actions": form.get("send_for_all_actions", "all") == "all",
        "actions": form.all("actions"),
        "headers": _headers(form.get("headers"), current_headers, errors),
        "ordered": form.checked("ordered"),
        "rate_limit": _parsed(form.get("rate_limit"), "rate_limit", float, errors),
        "timeout": _parsed(form.get("timeout"), "timeout", float, errors),
    }
    concurrency = _parsed(form.get("max_concurrency"), "max_concurrency", int, errors)
    if concurrency is not None:
        data["max_concurrency"] = concurrency
    schedule = [part for part in form.get("retry_schedule").replace(",", " ").split() if part]
    data["retry_schedule"] = None
    if schedule:
        if all(part.isdigit() for part in schedule):
            data["retry_schedule"] = [int(part) for part in schedule]
        else:
            errors["retry_schedule"] = ["Seconds before each attempt, e.g. `0, 5, 60, 600`."]
    if creating:
        data["project"] = _parsed(form.get("project"), "project", int, errors)
    if errors:
        raise Invalid(errors)
    return data
