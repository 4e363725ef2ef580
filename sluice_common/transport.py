"""Pass a parsed table between services as Arrow IPC: text cells, binary, no re-parsing."""

from __future__ import annotations

import orjson
import pandas as pd
import pyarrow as pa

from sluice_common.errors import ApiError

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
REPORT_KEY = b"sluice.cleaning"


def frame_to_arrow(frame: pd.DataFrame, report: dict | None = None) -> bytes:
    """Serialise a DataFrame of text cells as an Arrow IPC stream, with the parsing report
    as metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    text = pa.schema([pa.field(name, pa.large_string()) for name in table.column_names])
    return _write(table.cast(text), report)


def columns_to_arrow(columns: dict[str, list[str]], report: dict) -> bytes:
    """Serialise a few rows of text cells (lists per column) the way `frame_to_arrow` writes
    the same table, without building a DataFrame."""
    arrays = {name: pa.array(values, pa.large_string()) for name, values in columns.items()}
    return _write(pa.table(arrays), report)


def _write(table: pa.Table, report: dict | None) -> bytes:
    if report is not None:
        table = table.replace_schema_metadata({REPORT_KEY: orjson.dumps(report)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def read_arrow(raw: bytes) -> tuple[pa.Table, dict | None]:
    """Read an Arrow IPC stream into a table and its report; ApiError when it is not one."""
    try:
        table = pa.ipc.open_stream(raw).read_all()
        names = table.schema.names
        if len(set(names)) != len(names):
            raise ApiError(400, "duplicate_columns", "Column names must be unique in the table.")
        if not all(_readable(field.type) for field in table.schema):
            raise ApiError(
                400,
                "malformed_arrow",
                "Arrow columns must hold text, numbers, booleans or timestamps (no lists, "
                "structs, dictionaries or binary).",
            )
        metadata = table.schema.metadata or {}
        report = orjson.loads(metadata[REPORT_KEY]) if REPORT_KEY in metadata else None
        return table, report
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, orjson.JSONDecodeError) as err:
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


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """A table from `read_arrow` as a DataFrame; ApiError when its types do not convert."""
    try:
        return table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise _malformed() from err


def arrow_to_frame(raw: bytes) -> tuple[pd.DataFrame, dict | None]:
    """Read an Arrow IPC stream into a DataFrame and its report; ApiError when it is not one."""
    table, report = read_arrow(raw)
    return table_to_frame(table), report


def _malformed() -> ApiError:
    return ApiError(
        400, "malformed_arrow", "The upload declared Arrow IPC but could not be read as it."
    )
