"""What a request chooses: its phase, task and promotion mode among these values, and its target
among the table's columns. The web layer checks a request's parameters against them
(sluice_common/web/params.py); the core acts on them. No Flask here."""

from __future__ import annotations

from sluice_common import error_codes
from sluice_common.errors import ApiError

PHASES = ("dev", "prod")
PROMOTE_MODES = ("auto", "always", "never")
TASKS = ("auto", "classification", "regression")
# An error names at most this many columns, each cut to NAME_CHARS: a header of long names must
# not make the answer megabytes.
LISTED_COLUMNS = 50
NAME_CHARS = 80


def _short(name: str) -> str:
    """A column name as an error message quotes it: repr, cut to NAME_CHARS with an ellipsis."""
    return repr(name if len(name) <= NAME_CHARS else name[:NAME_CHARS] + "…")


def resolve_target(columns: list[str], requested: str | None) -> str:
    """The target column: the requested one, else `target`, else the last column."""
    if requested:
        if requested in columns:
            return requested
        near = [c for c in columns if c.lower() == requested.lower()]
        hint = f" Did you mean {_short(near[0])}?" if near else ""
        listed = ", ".join(_short(name) for name in columns[:LISTED_COLUMNS])
        more = len(columns) - LISTED_COLUMNS
        raise ApiError(
            error_codes.UNKNOWN_TARGET,
            f"Target column {_short(requested)} is not in the file.{hint} Columns: {listed}"
            + (f" and {more:,} more." if more > 0 else "."),
        )
    return "target" if "target" in columns else columns[-1]
