"""Parse and clean an uploaded CSV: what preprocess does to every upload, and the trainer to a
CSV posted to it directly."""

from __future__ import annotations

import pandas as pd

from sluice_common.cleaning import clean, clean_small, resolve_target
from sluice_common.parsing import parse_csv, parse_small_csv


def clean_upload(
    raw: bytes, phase: str, requested_target: str | None
) -> tuple[pd.DataFrame | dict[str, list], dict, str | None]:
    """The cleaned table, its report (with the detected encoding and delimiter) and the target
    (dev only). A prod upload of a few simple rows comes back as a dict of column lists, built
    without pandas, whose per-call costs would be most of a single-row request."""
    small = parse_small_csv(raw) if phase == "prod" else None
    if small is not None:
        columns, report = clean_small(small.columns, small.n_rows, small.delimiter == ";")
        report.update(encoding=small.encoding, delimiter=small.delimiter)
        return columns, report, None
    parsed = parse_csv(raw)
    target = None
    if phase == "dev":
        target = resolve_target(list(parsed.frame.columns), requested_target)
    frame, report = clean(parsed.frame, phase, target, parsed.delimiter)
    report.update(encoding=parsed.encoding, delimiter=parsed.delimiter)
    return frame, report, target
