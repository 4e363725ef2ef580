"""pyarrow's CSV reader held to pandas' C parser (`parsing.read_with_pandas`, the strict
reader): the same cells as string columns, or None where its reading could differ, and
parse_csv asks pandas. Tested against pandas in tests/sluice_common/tables/test_fast_csv.py.

A row pyarrow refuses (short: pandas pads it with ""; wider: pandas' error; a row longer than
a block) hands the file to pandas, which reads it or raises its own error. What pyarrow
would read otherwise without refusing it is found here:
- a line of spaces and tabs, which pandas skips as blank: skipped too (with several columns
  pyarrow refuses it as short); a one-column file holding one, or a file holding more than
  MAX_SKIPPED_LINES, goes to pandas;
- a blank line ended by a lone CR, after which pandas drops a delimiter starting the next
  line: such a file goes to pandas;
- a quoted cell still open at the end, which pyarrow reads to the end and pandas refuses:
  pandas decides.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.csv as pacsv

# Blocks are parsed one after another (use_threads=False: a gunicorn worker shares 2 cores
# with the others; 1 MB blocks parse faster than whole files, by cache). A row must fit in
# one block, so a block holds several of the longest lines sampled. Each block becomes one
# chunk of every column, and one record batch of the hop, whose ~80 bytes of metadata and
# padding per column must stay small beside the block's cells: with 20,000 empty cells a row,
# 1 MB blocks would make the Arrow body 5.5x the CSV, over ARROW_PER_CSV_BYTE.
BLOCK_BYTES = 1 << 20
BLOCK_BYTES_PER_COLUMN = 4096
MAX_BLOCK_BYTES = 256 << 20
MAX_SKIPPED_LINES = 1000
_WHITESPACE_LINE = re.compile(rb"(?:^|[\r\n])[ \t]+(?:[\r\n]|$)")
_BLANK_BY_LONE_CR = re.compile(rb"(?:^|[\r\n])[ \t]*\r(?!\n)")


def read_text_columns(
    data: bytes, delimiter: str, names: list[str], longest_line: int = 0
) -> pa.Table | None:
    """The rows of UTF-8 CSV `data` (a BOM is skipped) below its header as string columns
    named `names`, or None when pandas must decide. `data` was decoded once already (valid
    UTF-8), so it is not checked again; `longest_line` (characters of the longest sampled
    line) sizes the blocks."""
    if len(names) == 1 and _WHITESPACE_LINE.search(data):
        return None
    if _blank_by_lone_cr(data):
        return None

    skipped = 0

    def blank_or_refused(row) -> str:
        # pandas skips a line of spaces and tabs (its WHITESPACE_LINE state) unless the
        # delimiter is among them; pyarrow refuses it as a row too short. This runs in Python
        # for each such line (~1.3 us; pandas skips them in C): past MAX_SKIPPED_LINES, a file
        # padded with them goes to pandas, so its cost stays that of its size.
        nonlocal skipped
        blank = not row.text.strip(" \t") and delimiter not in row.text
        skipped += blank
        return "skip" if blank and skipped <= MAX_SKIPPED_LINES else "error"

    wanted = max(BLOCK_BYTES, 16 * longest_line, BLOCK_BYTES_PER_COLUMN * len(names))
    block = min(wanted, MAX_BLOCK_BYTES)
    # Columns f0, f1, ...: the header is read as the first row, so that pyarrow holds every
    # row to its width (as pandas does), then sliced off; the names are read_header's.
    types = {f"f{i}": pa.string() for i in range(len(names))}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=block, autogenerate_column_names=True
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=True,
                invalid_row_handler=blank_or_refused,
            ),
            convert_options=pacsv.ConvertOptions(
                check_utf8=False,
                column_types=types,
                null_values=[],
                true_values=[],
                false_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                auto_dict_encode=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None  # pandas reads it, or says what is wrong in its own words
    if table.num_columns != len(names) or table.num_rows == 0:
        return None  # pyarrow split the header otherwise than read_header did
    if _ends_in_quotes(data, table.column(-1)[-1].as_py()):
        return None
    return table.slice(1).rename_columns(names)


def _blank_by_lone_cr(data: bytes) -> bool:
    """True when a blank or whitespace line may end with a lone CR: after one, pandas drops
    a delimiter that starts the next line (`\\r,x` is read as the one cell x)."""
    crs = data.count(b"\r")
    if not crs or crs == data.count(b"\r\n"):  # two scans in C, no regex: LF or CRLF files
        return False
    return _BLANK_BY_LONE_CR.search(data) is not None


def _ends_in_quotes(data: bytes, last_cell: str) -> bool:
    """True when the data may end inside a quoted cell, which pyarrow reads to the end and
    pandas refuses ("EOF inside string"). Such a cell is the last one and was opened by a
    quote and never closed, so the data ends with `"` and the cell's text, its quotes
    doubled. (A closed cell can end so too, `""x`: pandas decides that one also.)"""
    return data.endswith(b'"' + last_cell.encode("utf-8").replace(b'"', b'""'))
