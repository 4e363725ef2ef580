"""What a request chooses: its phase, task and promotion mode among these values, and its target
among the table's columns. The web layer checks a request's parameters against them
(sluice_common/web/params.py); the core acts on them. No Flask here."""

from __future__ import annotations

from sluice_common import error_codes
from sluice_common.errors import ApiError

PHASES = ("dev", "prod")
PROMOTE_MODES = ("auto", "always", "never")
TASKS = ("auto", "classification", "regression")


def resolve_target(columns: list[str], requested: str | None) -> str:
    """The target column: the requested one, else `target`, else the last column."""
    if requested:
        if requested in columns:
            return requested
        near = [c for c in columns if c.lower() == requested.lower()]
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ApiError(
            error_codes.UNKNOWN_TARGET,
            f"Target column {requested!r} is not in the file.{hint} "
            f"Columns: {', '.join(map(repr, columns[:50]))}.",
        )
    return "target" if "target" in columns else columns[-1]
