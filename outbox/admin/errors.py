"""Errors of the admin operations, shared by the API (which turns them into 4xx answers in Label
Studio's format) and the CLI (which prints them). Messages never carry a secret or header value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

# Label Studio's error details, reproduced so its clients recognise them.
VALIDATION_ERROR = "Validation error"
REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."

FieldErrors = dict[str, Any]


class AdminError(Exception):
    """An admin request that cannot be carried out; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(AdminError):
    """Bad input: ``errors`` maps each field to its problems, as Label Studio's API does."""

    def __init__(self, errors: FieldErrors, detail: str = VALIDATION_ERROR) -> None:
        super().__init__(detail)
        self.errors = errors

    def __str__(self) -> str:
        return "; ".join(f"{field}: {problem}" for field, problem in flatten(self.errors))


class NotFound(AdminError):
    status = 404

    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"No {what} matches the given query.")
        self.what = what
        self.ident = ident

    def __str__(self) -> str:
        return f"{self.what} {self.ident} not found"


class Conflict(AdminError):
    """The request is valid but the resource is not in a state that allows it."""

    status = 409


def invalid(field: str, message: str) -> Invalid:
    return Invalid({field: [message]})


def flatten(errors: FieldErrors, prefix: str = "") -> list[tuple[str, str]]:
    """``{"actions": {"0": ["..."]}}`` as ``[("actions.0", "...")]``, for people."""
    items: list[tuple[str, str]] = []
    for key, value in errors.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            items += flatten(value, name)
        else:
            items += [(name, str(message)) for message in value]
    return items


def _type_name(value: Any) -> str:
    return {dict: "dict", list: "list", str: "str", int: "int", float: "float", bool: "bool"}.get(
        type(value), type(value).__name__
    )


def _message(error: Any) -> str:
    """Label Studio's wording for the common problems; our own for the rest."""
    kind = error["type"]
    given = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return REQUIRED
    if given is None and kind.endswith("_type"):
        return NOT_NULL
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("bool_type", "bool_parsing"):
        return "Must be a valid boolean."
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "A valid integer is required."
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "A valid number is required."
    if kind == "string_type":
        return "Not a valid string."
    if kind == "list_type":
        return f'Expected a list of items but got type "{_type_name(given)}".'
    if kind == "dict_type":
        return f'Expected a dictionary of items but got type "{_type_name(given)}".'
    if kind == "enum":
        shown = given if isinstance(given, str) and len(given) <= 64 else "value"
        return f'"{shown}" is not a valid choice.'
    if kind in ("greater_than_equal", "greater_than"):
        word = "greater than or equal to" if kind == "greater_than_equal" else "greater than"
        return f"Ensure this value is {word} {ctx.get('ge', ctx.get('gt'))}."
    if kind in ("less_than_equal", "less_than"):
        word = "less than or equal to" if kind == "less_than_equal" else "less than"
        return f"Ensure this value is {word} {ctx.get('le', ctx.get('lt'))}."
    if kind == "string_too_long":
        return f"Ensure this field has no more than {ctx.get('max_length')} characters."
    if kind == "too_long":
        return f"Ensure this field has no more than {ctx.get('max_length')} elements."
    if kind == "too_short":
        return f"Ensure this field has at least {ctx.get('min_length')} elements."
    if kind in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"):
        return "Datetime has wrong format. Use ISO 8601, e.g. 2026-01-31T12:00:00Z."
    return str(error["msg"])


def field_errors(errors: Sequence[Any], *, skip: int = 0) -> FieldErrors:
    """Pydantic errors as Label Studio's field errors: ``{"url": ["Enter a valid URL."]}``, list
    items keyed by index (``{"actions": {"0": [...]}}``), whole-object problems under
    ``non_field_errors``. ``skip`` drops leading location parts (FastAPI's ``"body"``)."""
    result: FieldErrors = {}
    for error in errors:
        loc = [str(part) for part in error["loc"][skip:]]
        message = _message(error)
        if loc == ["project"] and error["type"] == "string_pattern_mismatch":
            message = "Select a valid choice. That choice is not one of the available choices."
        pk_types = ("int_type", "int_parsing", "value_error")
        if loc in (["project"], ["organization"]) and error["type"] in pk_types:
            given = _type_name(error.get("input"))
            message = f"Incorrect type. Expected pk value, received {given}."
        if not loc:
            if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
                given = _type_name(error.get("input"))
                message = f"Invalid data. Expected a dictionary, but got {given}."
            loc = ["non_field_errors"]
        field = loc[0]
        if len(loc) >= 2 and loc[1].isdigit() and not isinstance(result.get(field), list):
            # a list item, keyed by its index as Label Studio reports them
            result.setdefault(field, {}).setdefault(loc[1], []).append(message)
        elif isinstance(result.get(field), dict):
            result[field].setdefault("non_field_errors", []).append(message)
        else:
            result.setdefault(field, []).append(message)
    return result


def from_validation_error(exc: ValidationError) -> Invalid:
    return Invalid(field_errors(exc.errors()))
