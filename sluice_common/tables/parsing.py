"""Turn uploaded bytes into a table of strings: encoding, delimiter, header, rows."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.tables import fast_csv
from sluice_common.tables.encoding import decode_text
from sluice_common.tables.transport import text_table

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_BYTES = 64 * 1024
MAX_COLUMNS = 20_000
# The header and the first rows are read whole even when longer than the samples above (20,000
# columns named like `feature_00001` are a 280 KB header), up to this many characters.
MAX_HEAD_CHARS = 16 * 2**20
UTF8 = ("utf-8", "utf-8-sig")  # read as uploaded; other encodings are re-encoded once


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
    comment_lines: int = 0
    sep_line: bool = False


@dataclass(frozen=True)
class ParsedCsv:
    """A CSV read as Arrow string columns, with what was detected about it."""

    table: pa.Table
    encoding: str
    delimiter: str
    comment_lines: int = 0  # leading `#` lines skipped before the header
    sep_line: bool = False  # Excel's `sep=;` first line named the delimiter

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The cells as a DataFrame (built when asked: the services pass the table on)."""
        return as_frame(self.table)


_LINE_END = re.compile(r"\r\n?|\n")


def head(text: str, chars: int, lines: int = 3, start: int = 0) -> str:
    """`text` from `start`: `chars` characters, more when its first `lines` lines are longer
    (a wide file's header alone can be; at most MAX_HEAD_CHARS)."""
    end = start
    for _ in range(lines):
        found = _LINE_END.search(text, end, start + MAX_HEAD_CHARS)
        if found is None:
            end = len(text)
            break
        end = found.end()
    return text[start : min(max(start + chars, end), start + MAX_HEAD_CHARS)]


def sniff_delimiter(text: str) -> str:
    """The delimiter among , ; TAB | that splits the first lines most consistently."""
    sampled = head(text, SNIFF_BYTES)
    sample_lines = sampled.splitlines()
    if len(text) > len(sampled):
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


_SEP_LINE = re.compile(r"sep=([,;\t|])[ \t]*(?:\r\n|\r|\n)", re.I)


def sep_line(text: str) -> tuple[str | None, int]:
    """The delimiter an Excel `sep=;` first line declares, and where the header starts after
    it; (None, 0) without one. Excel writes and reads this line; it is not data."""
    match = _SEP_LINE.match(text)
    return (match.group(1), match.end()) if match else (None, 0)


def _malformed(detail: str) -> ApiError:
    return ApiError(
        error_codes.MALFORMED_CSV,
        f"The CSV could not be parsed ({detail}). Check that every row has as many fields as "
        "the header and that quotes are balanced.",
    )


def _shown(text: str, limit: int = 80) -> str:
    """A line or a name as quoted in a message, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_COMMENT_START = re.compile(r"[ \t\r\n]*#")
MAX_COMMENT_LINES = 1000


def leading_comments(text: str) -> tuple[int, int]:
    """How many lines above the header are comments, and where the header starts.

    Comments are the leading lines that start with `#` (blank lines among them are skipped
    too) and that the file's delimiter splits into another number of fields than the line
    after them: `# Data source: ...` above `a,b,c`. A `#` line as wide as the next line is
    the header itself (`#,Name,Type`: a column named #), and it and what follows are kept.
    """
    if not _COMMENT_START.match(text):
        return 0, 0
    lines: list[tuple[str, int]] = []  # each leading # line and where the next line starts
    position = 0
    while len(lines) < MAX_COMMENT_LINES and position < len(text):
        line = _LINE.match(text, position).group()
        if not line:
            break
        content = line.strip()
        if content and not content.startswith("#"):
            break
        position += len(line)
        if content:
            lines.append((content, position))
    if len(lines) == MAX_COMMENT_LINES and _COMMENT_START.match(text, position):
        raise ApiError(
            error_codes.MALFORMED_CSV,
            f"The file starts with more than {MAX_COMMENT_LINES:,} lines starting with #: "
            f"at most {MAX_COMMENT_LINES:,} comment lines above the header are skipped. "
            "Remove them and upload again.",
        )
    rest = head(text, 4 * SNIFF_BYTES, start=position)
    if lines and not rest.strip() and len(lines) > 1:
        raise ApiError(
            error_codes.EMPTY_FILE,
            f"The file holds only lines starting with # ({len(lines)}): no header row and no "
            "data rows below them.",
        )
    if not lines or not rest.strip():
        return 0, 0  # nothing below it: a single # line is the header (or the file is empty)
    delimiter = sniff_delimiter(rest)
    width = len(_first_row(rest, delimiter))
    start = 0
    for count, (line, end) in enumerate(lines):
        if len(_first_row(line, delimiter)) == width:
            return count, start  # this # line is the header
        start = end
    return len(lines), start


def _first_row(text: str, delimiter: str) -> list[str]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return next((row for row in reader if row), [])
    except csv.Error:
        return []


def one_column_error(name: str) -> ApiError:
    """Training on a file read as a single column: say so, with the delimiters tried."""
    tried = ", ".join(DELIMITER_NAMES.values())
    if len(name.split()) > 1:
        detail = (
            "It looks separated by spaces: spaces are not a supported delimiter (cells such as "
            "'New York' hold them too). Save the file with commas, semicolons or tabs between "
            "the columns."
        )
    else:
        detail = "Training needs at least one column besides the target."
    return ApiError(
        error_codes.NO_USABLE_FEATURES,
        f"Only one column was found: none of the delimiters Sluice reads ({tried}) splits the "
        f"header {_shown(name)}. {detail}",
    )


def read_header(text: str, delimiter: str) -> list[str]:
    """The header row's column names, stripped; duplicates rejected. A blank header is named
    as pandas names it, `Unnamed: N` (N the 0-based position), which also tells the trainer
    that the column had no name (pandas' and R's row numbers: see trainer/fit/features.py).
    A first data row wider than the header is refused here, before pandas would make it an
    index (and spend ~16 us per extra field doing so)."""
    # newline="": rows end at CR, LF or CRLF, mixed or not, as in pandas' C parser; a line
    # break inside quotes stays in its cell.
    sample = head(text, 4 * SNIFF_BYTES, lines=2)
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    try:
        rows = (r for r in reader if r)
        header = next(rows)
        first = next(rows, None)  # cut short by the sample at worst: a lower bound
    except StopIteration as err:
        raise ApiError(error_codes.EMPTY_FILE, "The file has no header row.") from err
    except csv.Error as err:
        raise _malformed(str(err)[:300]) from err
    if len(header) > MAX_COLUMNS:
        raise ApiError(
            error_codes.TOO_MANY_COLUMNS,
            f"The file has more than {MAX_COLUMNS} columns; at most {MAX_COLUMNS} are supported.",
        )
    if first is not None and len(first) > len(header):
        if len(header) == 1:
            raise ApiError(
                error_codes.MALFORMED_CSV,
                f"The first line ({_shown(header[0])}) has 1 field and the next line "
                f"{len(first)} or more: it looks like a title or a note above the header. "
                "Remove the lines above the header row (lines starting with # are skipped "
                "when the header follows them) and upload again.",
            )
        line = delimiter.join(header)
        raise ApiError(
            error_codes.MALFORMED_CSV,
            f"The first line ({_shown(line)}) has {len(header)} fields and the next line "
            f"{len(first)} or more. If the first line is a title or a note above the header, "
            "remove it (lines starting with # are skipped when the header follows them); "
            "otherwise check that the header names every column and that quotes are balanced.",
        )
    stripped = [name.strip() for name in header]
    real = set(filter(None, stripped))
    names: list[str] = []
    given: set[str] = set()  # a set, not the list: 20,000 blank names cost no 20,000^2 scan
    for i, name in enumerate(stripped):
        if not name:
            # pandas' name; a real column already called so keeps it, as in pandas.
            name, copy = f"Unnamed: {i}", 0
            while name in real or name in given:
                copy += 1
                name = f"Unnamed: {i}.{copy}"
        names.append(name)
        given.add(name)
    seen, duplicates = set(), []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise ApiError(
            error_codes.DUPLICATE_COLUMNS,
            f"Column names must be unique; repeated: {', '.join(map(repr, duplicates))}. "
            "Rename them and upload again.",
        )
    return names


def parse_csv(raw: bytes) -> ParsedCsv:
    """Parse an uploaded CSV into a table of strings (no type conversion yet)."""
    text, encoding = decode_text(raw)  # validates the whole upload decodes
    declared, start = sep_line(text)
    if declared:
        text = text[start:]
    comments, start = leading_comments(text)
    if comments:
        text = text[start:]
    mac = "\r\n" not in text and text.count("\r") > text.count("\n")
    if mac:
        # Classic Mac line ends (Excel's "CSV (Macintosh)", which writes a line break inside a
        # cell as LF): pandas' C reader splits rows on \n.
        text = text.replace("\r", "\n")
    if mac or comments or declared or encoding not in UTF8:
        # One copy, only for these files: both readers take UTF-8 (pandas would decode the
        # bytes again and re-encode them to UTF-8 as it reads).
        raw, encoding_read = text.encode("utf-8"), "utf-8"
    else:
        encoding_read = encoding
    sample = head(text, 4 * SNIFF_BYTES)
    del text  # the readers take the bytes: no second copy of a large upload
    delimiter = declared or sniff_delimiter(sample)
    names = read_header(sample, delimiter)
    table = fast_csv.read_text_columns(raw, delimiter, names, _longest_line(sample))
    if table is None:  # where pyarrow could read otherwise, pandas decides
        table = text_table(
            pa.Table.from_pandas(
                read_with_pandas(raw, encoding_read, delimiter, names), preserve_index=False
            )
        )
    if table.num_rows == 0:
        raise ApiError(error_codes.NO_ROWS, "The file has a header but no data rows.")
    return ParsedCsv(table, encoding, delimiter, comments, bool(declared))


def _longest_line(sample: str) -> int:
    return max(map(len, sample.splitlines()), default=0)


def read_with_pandas(raw: bytes, encoding: str, delimiter: str, names: list[str]) -> pd.DataFrame:
    """The rows below the header as pandas' C parser reads them, all as text: the strict
    reader, and the definition the fast one is tested against."""
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
        raise ApiError(error_codes.EMPTY_FILE, "The file has no header row.") from err
    except (pd.errors.ParserError, ValueError, csv.Error) as err:
        raise _malformed(_first_line(err)) from err
    if not isinstance(frame.index, pd.RangeIndex):  # a first row wider beyond the sample
        raise _malformed("the first data row has more fields than the header")
    return frame


def as_frame(table: pa.Table) -> pd.DataFrame:
    """A table of text cells as the DataFrame pandas' C parser gives for the same cells."""
    return table.to_pandas()


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
    declared, start = sep_line(text)
    text = text[start:]
    comments, start = leading_comments(text)
    text = text[start:]
    delimiter = declared or sniff_delimiter(text)
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
    return SmallCsv(
        dict(zip(names, columns, strict=True)),
        len(lines) - 1,
        encoding,
        delimiter,
        comments,
        bool(declared),
    )
