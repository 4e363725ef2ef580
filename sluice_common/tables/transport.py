"""Pass a parsed table between services as Arrow IPC: text cells, binary, no re-parsing."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
# A few rows (parse_small_csv's) cross the hop as JSON column lists: writing and reading them
# takes ~6 us where an Arrow stream of one row takes ~200 us, most of a single row's hop.
COLUMNS_MEDIA_TYPE = "application/vnd.sluice.columns+json"
MAX_COLUMNS_BODY = 2**20  # 64 rows of a 64 KB CSV, each character escaped as \uXXXX, fit
REPORT_KEY = b"sluice.cleaning"
# Arrow bytes per CSV byte at worst: an empty cell is 1 byte in a CSV (its delimiter) and a
# 4-byte offset plus a validity bit in Arrow. The trainer sizes the internal hop's limit with
# it, so it never refuses what the public entry accepted.
ARROW_PER_CSV_BYTE = 4.2


def frame_to_arrow(frame: pd.DataFrame, report: dict | None = None) -> bytes:
    """Serialise a DataFrame of text cells as an Arrow IPC stream, with the parsing report
    as metadata."""
    return _write(text_table(pa.Table.from_pandas(frame, preserve_index=False)), report)


def table_to_arrow(table: pa.Table, report: dict | None = None) -> bytearray:
    """Serialise an Arrow table of text cells (`ParsedCsv.table`) as `frame_to_arrow` writes
    the same cells, without a DataFrame between. Written once, into a body of its exact size
    (measured first, metadata only): no growing buffer, no copy into bytes."""
    table = _with_report(text_table(table), report)
    measured = pa.MockOutputStream()
    with pa.ipc.new_stream(measured, table.schema) as writer:
        writer.write_table(table)
    body = bytearray(measured.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(pa.py_buffer(body)), table.schema) as writer:
        writer.write_table(table)
    return body


def text_table(table: pa.Table) -> pa.Table:
    """Text columns as string (4-byte offsets: half the size of large_string for short
    cells), or all as large_string when a column holds 2 GB of text or more."""
    if all(pa.types.is_string(kind) for kind in table.schema.types):
        # Chunks under 2 GB each (pyarrow's CSV reader) can hold more in one column.
        if table.nbytes < LARGE_TEXT or all(_text_bytes(c) < LARGE_TEXT for c in table.columns):
            return table
        return _cast(table, pa.large_string())
    try:
        return _cast(table, pa.string())
    except pa.ArrowInvalid:  # a chunk of 2 GB of text or more
        return _cast(table, pa.large_string())


LARGE_TEXT = 2**31  # where string's 4-byte offsets end


def _cast(table: pa.Table, kind: pa.DataType) -> pa.Table:
    return table.cast(pa.schema([pa.field(name, kind) for name in table.column_names]))


def _text_bytes(column: pa.ChunkedArray) -> int:
    """Bytes of text in a string column's cells (not its buffers': chunks may be slices)."""
    total = 0
    for chunk in column.chunks:
        if len(chunk):
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
            total += int(offsets[chunk.offset + len(chunk)]) - int(offsets[chunk.offset])
    return total


def columns_to_arrow(columns: dict[str, list[str]], report: dict) -> bytes:
    """Serialise a few rows of text cells (lists per column) the way `frame_to_arrow` writes
    the same table, without building a DataFrame."""
    arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    return _write(pa.table(arrays), report)


def columns_to_json(columns: dict[str, list[str]], report: dict) -> bytes:
    """A few rows of text cells (lists per column) as the hop's JSON column body: the columns
    as [name, cells] pairs, in order, and the parsing report."""
    return orjson.dumps(
        {"columns": [[name, cells] for name, cells in columns.items()], "report": report}
    )


def read_columns_json(raw: bytes, max_rows: int, max_columns: int) -> tuple[dict, dict]:
    """The column lists and report of a JSON column body; ApiError unless it holds unique
    names, text cells and columns of one length, within the caps."""
    if len(raw) > MAX_COLUMNS_BODY:
        raise ApiError(
            error_codes.UPLOAD_TOO_LARGE,
            f"A column body holds at most {MAX_COLUMNS_BODY} bytes; larger tables go as Arrow.",
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise _malformed_columns("JSON") from err
    pairs = body.get("columns") if isinstance(body, dict) else None
    report = body.get("report") if isinstance(body, dict) else None
    if not isinstance(pairs, list) or not isinstance(report, dict):
        raise _malformed_columns("an object with a list `columns` and an object `report`")
    if len(pairs) > max_columns:
        raise ApiError(
            error_codes.TOO_MANY_COLUMNS, f"At most {max_columns} columns are supported."
        )
    columns: dict[str, list[str]] = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise _malformed_columns("each column a [name, cells] pair")
        name, cells = pair
        if not isinstance(cells, list) or not all(type(cell) is str for cell in cells):
            raise _malformed_columns("text cells only")
        if name in columns:
            raise ApiError(
                error_codes.DUPLICATE_COLUMNS, "Column names must be unique in the table."
            )
        columns[name] = cells
    lengths = {len(cells) for cells in columns.values()}
    if len(lengths) > 1:
        raise _malformed_columns("columns of one length")
    if lengths and lengths.pop() > max_rows:
        raise ApiError(
            error_codes.UPLOAD_TOO_LARGE,
            f"A column body holds at most {max_rows} rows; larger tables go as Arrow.",
        )
    return columns, report


def _malformed_columns(expected: str) -> ApiError:
    return ApiError(
        error_codes.MALFORMED_ARROW,
        f"The upload declared preprocess's column body but could not be read as it "
        f"(expected {expected}).",
    )


def _with_report(table: pa.Table, report: dict | None) -> pa.Table:
    if report is None:
        return table
    return table.replace_schema_metadata({REPORT_KEY: orjson.dumps(report)})


def _write(table: pa.Table, report: dict | None) -> bytes:
    table = _with_report(table, report)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _field(meta: bytes, table: int, index: int) -> int | None:
    """Where field `index` of the flatbuffer table at `table` is, or None when absent."""
    vtable = table - int.from_bytes(meta[table : table + 4], "little", signed=True)
    size = int.from_bytes(meta[vtable : vtable + 2], "little")
    slot = 4 + 2 * index
    if slot + 2 > size:
        return None
    offset = int.from_bytes(meta[vtable + slot : vtable + slot + 2], "little")
    return table + offset if offset else None


def batch_facts(meta: bytes) -> tuple[int, bool]:
    """Rows and whether the body is compressed, from a record batch message's flatbuffer
    (Message.header -> RecordBatch: length is field 0, compression field 3), read before any
    buffer is decoded."""
    root = int.from_bytes(meta[0:4], "little")
    header = _field(meta, root, 2)
    if header is None:
        raise ValueError("record batch message without a header")
    batch = header + int.from_bytes(meta[header : header + 4], "little")
    length = _field(meta, batch, 0)
    rows = 0 if length is None else int.from_bytes(meta[length : length + 8], "little")
    return rows, _field(meta, batch, 3) is not None


def check_arrow(raw: bytes, max_rows: int, max_columns: int, max_cells: int) -> None:
    """Refuse, before anything is decoded, an Arrow stream that could cost more than its own
    size: compressed bodies (a 61 KB zstd stream of zeros decoded to 4 GB), dictionary
    batches, columns other than text (a null-typed column holds any number of rows in no
    bytes), more rows, columns or cells than an upload under the limits can hold."""
    reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(raw))
    rows, width = 0, 1
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            break
        if message.type == "schema":
            columns = pa.ipc.read_schema(message)
            if len(columns) > max_columns:
                raise ApiError(
                    error_codes.TOO_MANY_COLUMNS, f"At most {max_columns} columns are supported."
                )
            text = (pa.types.is_string(f.type) or pa.types.is_large_string(f.type) for f in columns)
            if not all(text):
                raise ApiError(
                    error_codes.MALFORMED_ARROW, "Arrow columns must hold text cells, as parsed."
                )
            width = max(1, len(columns))
        elif message.type == "record batch":
            batch_rows, compressed = batch_facts(message.metadata.to_pybytes())
            if compressed:
                raise ApiError(
                    error_codes.MALFORMED_ARROW, "Compressed Arrow bodies are not accepted."
                )
            rows += batch_rows
            if rows > max_rows or rows * width > max_cells:
                raise ApiError(
                    error_codes.UPLOAD_TOO_LARGE,
                    "The table has more rows or cells than an upload under the limit can hold "
                    f"({max_rows} rows, {max_cells} cells).",
                )
        else:
            raise ApiError(
                error_codes.MALFORMED_ARROW, f"Arrow {message.type} messages are refused."
            )


def read_arrow(
    raw: bytes,
    max_rows: int | None = None,
    max_columns: int | None = None,
    max_cells: int | None = None,
) -> tuple[pa.Table, dict | None]:
    """Read an Arrow IPC stream into a table and its report; ApiError when it is not one, or
    when it breaks the caps (checked before decoding; see `check_arrow`)."""
    try:
        if max_rows is not None:
            check_arrow(raw, max_rows, max_columns or 1 << 31, max_cells or 1 << 62)
        table = pa.ipc.open_stream(raw).read_all()
        names = table.schema.names
        if len(set(names)) != len(names):
            raise ApiError(
                error_codes.DUPLICATE_COLUMNS, "Column names must be unique in the table."
            )
        if not all(_readable(field.type) for field in table.schema):
            raise ApiError(
                error_codes.MALFORMED_ARROW,
                "Arrow columns must hold text, numbers, booleans or timestamps (no lists, "
                "structs, dictionaries or binary).",
            )
        metadata = table.schema.metadata or {}
        report = orjson.loads(metadata[REPORT_KEY]) if REPORT_KEY in metadata else None
        return table, report
    except (
        pa.ArrowInvalid,
        pa.ArrowTypeError,
        OSError,
        orjson.JSONDecodeError,
        ValueError,
        IndexError,
    ) as err:
        raise _malformed() from err


def _readable(kind: pa.DataType) -> bool:
    """Column types the model's cell readers take."""
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
        or pa.types.is_timestamp(kind)
    )


def _malformed() -> ApiError:
    return ApiError(
        error_codes.MALFORMED_ARROW, "The upload declared Arrow IPC but could not be read as it."
    )
