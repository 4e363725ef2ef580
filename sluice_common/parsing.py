"""Turn uploaded bytes into a table of strings: encoding, delimiter, header, rows."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pandas as pd

from sluice_common.encoding import decode_text
from sluice_common.errors import ApiError

DELIMITERS = (",", ";", "\t", "|")
SNIFF_BYTES = 64 * 1024
MAX_COLUMNS = 20_000


# Up to this many rows, small batches skip pandas (parsing simple uploads, prod cleaning,
# scoring): pandas spends ~0.1 ms per call, over 10 ms for one 10-column row, where plain
# Python needs a few microseconds per cell. Uploads over SMALL_BYTES always go to pandas.
SMALL_ROWS = 64
SMALL_BYTES = 64 * 1024


@dataclass(frozen=True)
class SmallCsv:
    """A few rows read as lists of strings per column."""

    columns: dict[str, list[str]]
    n_rows: int
    encoding: str
    delimiter: str


@dataclass(frozen=True)
class ParsedCsv:
    """A CSV read as strings, with what was detected about it."""

    frame: pd.DataFrame
    encoding: str
    delimiter: str


def sniff_delimiter(text: str) -> str:
    """The delimiter among , ; TAB | that splits the first lines most consistently."""
    sample_lines = text[:SNIFF_BYTES].splitlines()
    if len(text) > SNIFF_BYTES:
        sample_lines = sample_lines[:-1]  # the last sampled line may be cut short
    sample = "\n".join(sample_lines[:200])
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        if width < 2:
            continue
        consistent = sum(1 for r in rows if len(r) == width) / len(rows)
        score = (round(consistent, 2), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _malformed(detail: str) -> ApiError:
    return ApiError(
        400,
        "malformed_csv",
        f"The CSV could not be parsed ({detail}). Check that every row has as many fields as "
        "the header and that quotes are balanced.",
    )


def read_header(text: str, delimiter: str) -> list[str]:
    """The header row's column names, stripped; blanks named column_N; duplicates rejected.
    A first data row wider than the header is refused here, before pandas would make it an
    index (and spend ~16 us per extra field doing so)."""
    reader = csv.reader(io.StringIO(text[: 4 * SNIFF_BYTES]), delimiter=delimiter)
    try:
        rows = (r for r in reader if r)
        header = next(rows)
        first = next(rows, None)  # cut short by the sample at worst: a lower bound
    except StopIteration as err:
        raise ApiError(400, "empty_file", "The file has no header row.") from err
    except csv.Error as err:
        raise _malformed(str(err)[:300]) from err
    if len(header) > MAX_COLUMNS:
        raise ApiError(
            400,
            "too_many_columns",
            f"The file has more than {MAX_COLUMNS} columns; at most {MAX_COLUMNS} are supported.",
        )
    if first is not None and len(first) > len(header):
        raise _malformed(
            f"the first data row has {len(first)} or more fields, the header {len(header)}"
        )
    names = [name.strip() or f"column_{i + 1}" for i, name in enumerate(header)]
    seen, duplicates = set(), []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise ApiError(
            400,
            "duplicate_columns",
            f"Column names must be unique; repeated: {', '.join(map(repr, duplicates))}. "
            "Rename them and upload again.",
        )
    return names


def parse_csv(raw: bytes) -> ParsedCsv:
    """Parse an uploaded CSV into a DataFrame of strings (no type conversion yet)."""
    text, encoding = decode_text(raw)  # validates the whole upload decodes
    if "\r\n" not in text and text.count("\r") > text.count("\n"):
        # Classic Mac line ends (Excel's "CSV (Macintosh)", which writes a line break inside a
        # cell as LF): pandas' C reader splits rows on \n.
        text = text.replace("\r", "\n")
        raw = text.encode(encoding)
    sample = text[: 4 * SNIFF_BYTES]
    del text  # pandas reads the bytes itself: no second copy of a large upload
    delimiter = sniff_delimiter(sample)
    names = read_header(sample, delimiter)
    try:
        # A row wider than the header is an error of the C tokenizer ("Expected N fields"),
        # raised at once; only a wider first data row would become an index instead, and
        # read_header refused that. (Not index_col=False with warnings as errors: the warnings
        # filter is process-wide, so a parse in another thread could switch it off and a wide
        # row would be trimmed silently.)
        frame = pd.read_csv(
            io.BytesIO(raw),
            encoding=encoding,
            sep=delimiter,
            header=0,
            names=names,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except pd.errors.EmptyDataError as err:
        raise ApiError(400, "empty_file", "The file has no header row.") from err
    except (pd.errors.ParserError, ValueError, csv.Error) as err:
        raise _malformed(_first_line(err)) from err
    if not isinstance(frame.index, pd.RangeIndex):  # a first row wider beyond the sample
        raise _malformed("the first data row has more fields than the header")
    if frame.empty:
        raise ApiError(400, "no_rows", "The file has a header but no data rows.")
    return ParsedCsv(frame=frame, encoding=encoding, delimiter=delimiter)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[-1][:300] if text else type(err).__name__


def parse_small_csv(raw: bytes) -> SmallCsv | None:
    """`parse_csv` for a small upload with no quoting, in plain Python; None when the upload
    is larger or has anything (quotes, lone CR, NUL, blank-looking or over-wide rows, no data
    rows) that only pandas' C parser should decide. Same cells as `parse_csv` otherwise."""
    if len(raw) > SMALL_BYTES:
        return None
    text, encoding = decode_text(raw)
    if '"' in text or "\0" in text or "\r" in text.replace("\r\n", ""):
        return None
    delimiter = sniff_delimiter(text)
    names = read_header(text, delimiter)
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if len(lines) < 2 or len(lines) > SMALL_ROWS + 1:
        return None
    width = len(names)
    columns: list[list[str]] = [[] for _ in names]
    for line in lines[1:]:
        cells = line.split(delimiter)
        if len(cells) > width or not line.strip():
            return None
        cells.extend([""] * (width - len(cells)))  # as pandas pads short rows
        for column, cell in zip(columns, cells, strict=True):
            column.append(cell)
    return SmallCsv(dict(zip(names, columns, strict=True)), len(lines) - 1, encoding, delimiter)
