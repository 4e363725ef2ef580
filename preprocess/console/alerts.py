"""Which form field an API error is about, so the page can mark it (aria-invalid) and tie it
to the alert (aria-describedby): the field the code names, else the file on an upload form."""

from __future__ import annotations

from flask import g
from markupsafe import Markup

# Codes naming a field other than by invalid_<field>.
FIELD_OF_CODE = {
    "unknown_target": "target",
    "empty_target": "target",
    "ambiguous_target": "target",
    "target_not_numeric": "target",
    "missing_target": "target",
    "single_class": "target",
    "too_many_classes": "target",
    "no_repeated_classes": "target",
    "invalid_model_name": "model",
    "model_not_found": "model",
    "no_champion": "model",
    "unauthorized": "token",
}
UPLOAD_FIELD = "data_file"


def field_of(code: str | None, fields: tuple[str, ...], upload: bool) -> str | None:
    """The form field `code` is about: one it names, else the upload's file input (on a form
    with one), else none."""
    code = code or ""
    named = FIELD_OF_CODE.get(code) or code.removeprefix("invalid_")
    if named in fields:
        return named
    return UPLOAD_FIELD if upload else None


def mark(field: str | None, alert_id: str = "error") -> None:
    """Remember the field the page's alert (`alert_id`) is about, for `field_state`."""
    g.invalid_field = (field, alert_id) if field else None


def field_state(name: str) -> Markup:
    """The attributes of input `name`: invalid and described by the alert when it is the
    field the error is about, else nothing."""
    marked = g.get("invalid_field")
    if not marked or marked[0] != name:
        return Markup("")
    return Markup(' aria-invalid="true" aria-describedby="{}"').format(marked[1])
