"""Parse an uploaded CSV into a table of text cells: what preprocess does to every upload, and
the trainer to a CSV posted to it directly. No typing here: the model decides what the cells
mean (at training time for dev, with its stored rules for prod)."""

from __future__ import annotations

import pandas as pd

from sluice_common.errors import ApiError
from sluice_common.parsing import parse_csv, parse_small_csv


def resolve_target(columns: list[str], requested: str | None) -> str:
    """The target column: the requested one, else `target`, else the last column."""
    if requested:
        if requested in columns:
            return requested
        near = [c for c in columns if c.lower() == requested.lower()]
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ApiError(
            422,
            "unknown_target",
            f"Target column {requested!r} is not in the file.{hint} "
            f"Columns: {', '.join(map(repr, columns[:50]))}.",
        )
    return "target" if "target" in columns else columns[-1]


def parse_upload(
    raw: bytes, phase: str, requested_target: str | None
) -> tuple[pd.DataFrame | dict[str, list[str]], dict, str | None]:
    """The upload's cells as text, what was detected about the file, and the target (dev).

    A prod upload of a few simple rows comes back as a dict of column lists, built without
    pandas, whose per-call costs would be most of a single-row request.
    """
    small = parse_small_csv(raw) if phase == "prod" else None
    if small is not None:
        report = _report(small.n_rows, len(small.columns), small.encoding, small.delimiter)
        return small.columns, report, None
    parsed = parse_csv(raw)
    frame = parsed.frame
    report = _report(len(frame), len(frame.columns), parsed.encoding, parsed.delimiter)
    target = None
    if phase == "dev":
        target = resolve_target([str(c) for c in frame.columns], requested_target)
    return frame, report, target


def _report(rows: int, columns: int, encoding: str, delimiter: str) -> dict:
    return {"rows_in": rows, "columns_in": columns, "encoding": encoding, "delimiter": delimiter}
