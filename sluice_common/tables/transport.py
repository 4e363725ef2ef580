"""Pass a parsed table between services as Arrow IPC: text cells, binary, no re-parsing."""

from __future__ import annotations

import orjson
import pandas as pd
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
REPORT_KEY = b"sluice.cleaning"
# Arrow bytes per CSV byte at worst: an empty cell is 1 byte in a CSV (its delimiter) and a
# 4-byte offset plus a validity bit in Arrow. The trainer sizes the internal hop's limit with
# it, so it never refuses what the public entry accepted.
ARROW_PER_CSV_BYTE = 4.2


def frame_to_arrow(frame: pd.DataFrame, report: dict | None = None) -> bytes:
    """Serialise a DataFrame of text cells as an Arrow IPC stream, with the parsing report
    as metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    try:  # 4-byte offsets: half the size of large_string for short cells
        table = table.cast(pa.schema([pa.field(name, pa.string()) for name in table.column_names]))
    except pa.ArrowInvalid:  # over 2 GB of text in one column
        table = table.cast(
            pa.schema([pa.field(name, pa.large_string()) for name in table.column_names])
        )
    return _write(table, report)


def columns_to_arrow(columns: dict[str, list[str]], report: dict) -> bytes:
    """Serialise a few rows of text cells (lists per column) the way `frame_to_arrow` writes
    the same table, without building a DataFrame."""
    arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    return _write(pa.table(arrays), report)


def _write(table: pa.Table, report: dict | None) -> bytes:
    if report is not None:
        table = table.replace_schema_metadata({REPORT_KEY: orjson.dumps(report)})
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
