"""The rows a retrain trains on: the labelled prod rows fitted to the champion's inputs (the
columns dropped or left empty counted), after the champion's own rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Labelled:
    """The labelled prod rows, and those that cannot be used (with why)."""

    parts: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    batches: int = 0
    not_kept: int = 0
    other_target: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # column -> rows it was dropped from
    dropped_rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)  # column -> rows left empty
    missing_rows: int = 0

    def report(self, champion: str = "") -> dict:
        found = {"rows": self.rows, "batches": self.batches, "skipped": self.skipped()}
        if self.dropped:
            found["columns_dropped"] = {
                "columns": self.dropped,
                "rows": self.dropped_rows,
                "why": f"not inputs of the champion v{champion}: the new version keeps its inputs",
            }
        if self.missing:
            found["columns_missing"] = {
                "columns": self.missing,
                "rows": self.missing_rows,
                "why": f"inputs of the champion v{champion} these rows did not have: left empty",
            }
        return found

    def skipped(self) -> dict:
        skipped = {}
        if self.not_kept:
            skipped["cells_not_kept"] = {
                "rows": self.not_kept,
                "why": "their cells were not kept (PROD_ROWS_KEPT, the monitoring retention, "
                "prod by data_uri, or scored before Sluice kept them)",
            }
        if self.other_target:
            skipped["other_target"] = {
                "rows": self.other_target,
                "why": "labelled for a version with another target column",
            }
        return skipped


def fit_columns(part: pa.Table, columns: list[str], found: Labelled) -> pa.Table:
    """The part with exactly `columns` in that order: others dropped, missing ones empty
    (text), each counted in `found` by the rows it concerns."""
    extra = [name for name in part.column_names if name not in columns]
    missing = [name for name in columns if name not in part.column_names]
    for names, counts in ((extra, found.dropped), (missing, found.missing)):
        for name in names:
            counts[name] = counts.get(name, 0) + part.num_rows
    found.dropped_rows += part.num_rows if extra else 0
    found.missing_rows += part.num_rows if missing else 0
    return pa.table(
        {
            name: part.column(name) if name in part.column_names else pa.nulls(part.num_rows)
            for name in columns
        }
    )


def combine(base: pa.Table, parts: list[pa.Table]) -> pa.Table:
    """The base rows followed by each part's, column by column: a column missing from a table
    is empty there; a column whose types differ between tables becomes text (the model reads
    text cells with its own rules)."""
    tables = [base, *parts]
    names = list(base.column_names)
    for part in parts:
        names += [name for name in part.column_names if name not in names]
    columns = {}
    for name in names:
        types = {t.schema.field(name).type for t in tables if name in t.column_names}
        types = {kind for kind in types if not pa.types.is_null(kind)} or {pa.null()}
        kind = types.pop() if len(types) == 1 else pa.string()
        pieces = []
        for t in tables:
            if name not in t.column_names:
                pieces.append(pa.nulls(t.num_rows, kind))
            else:
                pieces.append(_as(t.column(name), kind))
        columns[name] = pa.chunked_array([c for p in pieces for c in _chunks(p)], kind)
    return pa.table(columns)


def _chunks(values) -> list:
    return values.chunks if isinstance(values, pa.ChunkedArray) else [values]


def _as(values, kind: pa.DataType):
    if values.type == kind:
        return values
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), kind)
    return pc.cast(values, kind)
