"""Stateless cleaning: normalise cells, infer numeric columns, drop what cannot train (dev only)."""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sluice_common.errors import ApiError
from sluice_common.parsing import SMALL_ROWS

MISSING_TOKENS = frozenset(
    {"", "na", "n/a", "nan", "null", "none", "nil", "?", "-", "--", "#n/a", "#na", "missing"}
)
# A column is numeric when at least this share of its present values parse as numbers;
# the rest become missing and are reported.
NUMERIC_SHARE = 0.95
_NUMBER_NOISE = r"^[\$€£¥]|%$|(?<=\d)[,'_ ](?=\d{3}(?:\D|$))"
# Text the noise pattern (or the decimal comma) can change; other unparsed text stays unparsed.
_NOISE_CHARS = r"[\$€£¥%,'_ ]"
# A superset of what to_number reads (signs, currency, separators, %, exponent, inf): text
# that does not fully match it never parses as a number.
_MAY_BE_NUMBER = (
    r"^[ \t\n\r\f\v]*[\$€£¥]?[ \t\n\r\f\v]*[+-]?"
    r"(?:inf(?:inity)?|[\d.,'_ ]*\d[\d.,'_ ]*(?:e[+-]?[\d.,'_ ]*\d[\d.,'_ ]*)?)"
    r"[ \t\n\r\f\v]*%?[ \t\n\r\f\v]*$"
)
# Below this many rows the shortcuts cost more (~0.2 ms per regex call) than they save.
SHORTCUT_MIN_ROWS = 1024
# Python's whitespace, named so the pandas and plain-Python paths strip the same characters.
WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
# What pd.to_numeric reads: optional sign, decimal or exponent form, or inf/infinity.
_NUMBER = re.compile(
    r"[ \t\n\r\f\v]*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity)[ \t\n\r\f\v]*",
    re.IGNORECASE | re.ASCII,
)
_NOISE = re.compile(_NUMBER_NOISE)
# From this many rows, columns are cleaned side by side on a small pool: the Arrow string
# kernels doing most of the work release the GIL.
PARALLEL_ROWS = 20_000
_COLUMN_THREADS = min(4, os.cpu_count() or 1)
_COLUMN_POOL = ThreadPoolExecutor(max_workers=_COLUMN_THREADS, thread_name_prefix="clean")


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


def _each_column(fn, frame: pd.DataFrame) -> list:
    """fn(name, column) for every column, in order; side by side for large frames."""
    items = [(name, frame[name]) for name in frame.columns]  # taken here: one thread reads
    if len(frame) >= PARALLEL_ROWS and len(items) > 1 and _COLUMN_THREADS > 1:
        return list(_COLUMN_POOL.map(lambda item: fn(*item), items))
    return [fn(name, col) for name, col in items]


def _normalise_column(_name: str, col: pd.Series) -> pd.Series:
    col = col.astype("str").str.strip(WHITESPACE)
    missing = col.str.lower().isin(MISSING_TOKENS) | col.isna()
    return col.where(~missing, None)


def normalise_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip whitespace and turn the usual missing-value tokens into missing values."""
    columns = _each_column(_normalise_column, frame)
    return pd.DataFrame(dict(zip(frame.columns, columns, strict=True)), index=frame.index)


def to_number(col: pd.Series, decimal_comma: bool = False, finite: bool = True) -> pd.Series:
    """Parse text as numbers; currency signs, % and thousands separators are tolerated.

    With finite=True, infinities and overflowing values become missing.
    """
    numbers = _plain_numbers(col)
    if numbers is not None:
        return numbers.where(np.isfinite(numbers)) if finite else numbers
    candidates = _number_candidates(col)
    if candidates is not None and not candidates.all():
        # Only values matching the superset pattern can parse: skip the rest (exact).
        numbers = pd.Series(np.nan, index=col.index, dtype="float64")
        if candidates.any():
            numbers[candidates] = to_number(col[candidates], decimal_comma, finite).to_numpy()
        return numbers
    numbers = pd.to_numeric(col, errors="coerce")
    unparsed = numbers.isna() & col.notna()
    if len(col) >= SHORTCUT_MIN_ROWS and unparsed.any():
        # The regex pass costs ~150 ms per 100k cells: run it only where it can change the text.
        noisy = col[unparsed].astype("str").str.contains(_NOISE_CHARS, regex=True)
        unparsed[unparsed] = noisy.to_numpy(dtype=bool)
    if unparsed.any():
        text = col[unparsed].str.replace(_NUMBER_NOISE, "", regex=True)
        if decimal_comma:
            text = text.str.replace(",", ".", regex=False)
        numbers = numbers.copy()
        numbers[unparsed] = pd.to_numeric(text, errors="coerce")
    numbers = numbers.astype("float64")
    if finite:  # inf and overflow carry no usable value: missing, and reported as coerced
        numbers = numbers.where(np.isfinite(numbers))
    return numbers


def _plain_numbers(col: pd.Series) -> pd.Series | None:
    """The column as float64 when every present value is a plain number, else None.

    Arrow's C++ cast reads a text column ~10x faster than pd.to_numeric, but fails as a whole
    on any other text; the caller then takes the tolerant path.
    """
    if len(col) < SHORTCUT_MIN_ROWS or not pd.api.types.is_string_dtype(col.dtype):
        return None
    if pd.api.types.is_object_dtype(col.dtype):
        return None
    try:
        numbers = pc.cast(pa.array(col), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return pd.Series(numbers.to_numpy(zero_copy_only=False), index=col.index, dtype="float64")


def _number_candidates(col: pd.Series) -> np.ndarray | None:
    """For a large text column, which values match _MAY_BE_NUMBER (None for other columns)."""
    if len(col) < SHORTCUT_MIN_ROWS or not pd.api.types.is_string_dtype(col.dtype):
        return None
    if pd.api.types.is_object_dtype(col.dtype):
        return None
    matches = pc.match_substring_regex(pa.array(col), _MAY_BE_NUMBER, ignore_case=True)
    return matches.fill_null(False).to_numpy(zero_copy_only=False)


def _may_be_numeric(col: pd.Series, present: int) -> bool:
    """False when too few values hold a digit to ever reach NUMERIC_SHARE (a cheap upper bound:
    pd.to_numeric on a text column costs ~100 ms per 100k cells, this check ~5 ms)."""
    if pd.api.types.is_numeric_dtype(col.dtype) or len(col) < SHORTCUT_MIN_ROWS:
        return True
    matches = pc.match_substring_regex(
        pa.array(col.astype("str")), _MAY_BE_NUMBER, ignore_case=True
    )
    return int(pc.sum(matches).as_py() or 0) >= NUMERIC_SHARE * present


def infer_numeric(
    frame: pd.DataFrame, skip: set[str], decimal_comma: bool
) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """Convert mostly-numeric text columns to float64; report values that became missing."""

    def infer(name: str, col: pd.Series) -> tuple[pd.Series, int | None]:
        """The column as numbers and how many values were lost, or as it was and None."""
        present = int(col.notna().sum())
        if name in skip or present == 0 or not _may_be_numeric(col, present):
            return col, None
        numbers = to_number(col, decimal_comma)
        parsed = int(numbers.notna().sum())
        if parsed >= NUMERIC_SHARE * present:
            return numbers, present - parsed
        return col, None

    numeric, coerced, out = [], {}, {}
    for name, (col, lost) in zip(frame.columns, _each_column(infer, frame), strict=True):
        out[name] = col
        if lost is not None:
            numeric.append(name)
            if lost:
                coerced[name] = lost
    return pd.DataFrame(out, index=frame.index), numeric, coerced


def parse_number(text: str, decimal_comma: bool = False, finite: bool = True) -> float | None:
    """One cell of `to_number`, in plain Python: the same rules, for small batches."""
    number = float(text) if _NUMBER.fullmatch(text) else None
    if number is None:
        cleaned = _NOISE.sub("", text)
        if decimal_comma:
            cleaned = cleaned.replace(",", ".")
        number = float(cleaned) if _NUMBER.fullmatch(cleaned) else None
    if number is None or (finite and not math.isfinite(number)):
        return None
    return number


def clean_small(
    columns: dict[str, list], n_rows: int, decimal_comma: bool
) -> tuple[dict[str, list], dict]:
    """`clean(frame, "prod")` for a few rows given as lists per column, cell by cell: the same
    values (floats with NaN for numeric columns, text or None otherwise) and the same report."""
    out, numeric, coerced = {}, [], {}
    for name, values in columns.items():
        cells = []
        for value in values:
            if isinstance(value, str):
                value = value.strip(WHITESPACE)
                cells.append(None if value.lower() in MISSING_TOKENS else value)
            else:
                cells.append(None)
        numbers = [None if cell is None else parse_number(cell, decimal_comma) for cell in cells]
        present = sum(cell is not None for cell in cells)
        parsed = sum(number is not None for number in numbers)
        if present and parsed >= NUMERIC_SHARE * present:
            out[name] = [math.nan if number is None else number for number in numbers]
            numeric.append(name)
            if parsed < present:
                coerced[name] = present - parsed
        else:
            out[name] = cells
    report = {
        "rows_in": n_rows,
        "columns_in": len(columns),
        "dropped_rows": {},
        "rows_out": n_rows,
        "columns_out": len(columns),
        "dropped_columns": [],
        "numeric_columns": numeric,
        "coerced_to_missing": coerced,
    }
    return out, report


def _clean_prod_small(frame: pd.DataFrame, decimal_comma: bool) -> tuple[pd.DataFrame, dict]:
    """`clean_small` on a DataFrame's cells, back as a DataFrame."""
    columns, report = clean_small(
        {name: frame[name].tolist() for name in frame.columns}, len(frame), decimal_comma
    )
    numeric = set(report["numeric_columns"])
    cleaned = pd.DataFrame(
        {
            name: np.array(values, dtype="float64")
            if name in numeric
            else pd.array(values, dtype="str")
            for name, values in columns.items()
        },
        index=frame.index,
    )
    return cleaned, report


def clean(
    frame: pd.DataFrame, phase: str, target: str | None = None, delimiter: str = ","
) -> tuple[pd.DataFrame, dict]:
    """Clean a parsed table. dev drops unusable rows and columns; prod keeps every row in order.

    The target column (dev) keeps its text so labels come back as the user wrote them.
    """
    if phase == "prod" and len(frame) <= SMALL_ROWS:
        return _clean_prod_small(frame, decimal_comma=delimiter == ";")
    rows_in, columns_in = len(frame), len(frame.columns)
    frame = normalise_cells(frame)
    report: dict = {"rows_in": rows_in, "columns_in": columns_in, "dropped_rows": {}}
    dropped_columns = []
    if phase == "dev":
        empty_cols = [c for c in frame.columns if c != target and frame[c].isna().all()]
        if target is not None and frame[target].isna().all():
            raise ApiError(
                422,
                "empty_target",
                f"Target column {target!r} has no values. Pick another column with ?target=NAME.",
            )
        frame = frame.drop(columns=empty_cols)
        dropped_columns = [{"name": c, "reason": "all values missing"} for c in empty_cols]
        empty_rows = frame.isna().all(axis=1)
        frame = frame[~empty_rows]
        duplicates = frame.duplicated(keep="first")
        frame = frame[~duplicates]
        no_target = frame[target].isna() if target is not None else np.zeros(len(frame), bool)
        frame = frame[~no_target]
        report["dropped_rows"] = {
            "empty": int(empty_rows.sum()),
            "duplicate": int(duplicates.sum()),
            "missing_target": int(no_target.sum()),
        }
        frame = frame.reset_index(drop=True)
    skip = {target} if target is not None else set()
    frame, numeric, coerced = infer_numeric(frame, skip, decimal_comma=delimiter == ";")
    report.update(
        rows_out=len(frame),
        columns_out=len(frame.columns),
        dropped_columns=dropped_columns,
        numeric_columns=numeric,
        coerced_to_missing=coerced,
    )
    return frame, report
