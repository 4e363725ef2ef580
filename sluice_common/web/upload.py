"""Parse an uploaded CSV into a table of text cells: what preprocess does to every upload, and
the trainer to a CSV posted to it directly. No typing here: the model decides what the cells
mean (at training time for dev, with its stored rules for prod)."""

from __future__ import annotations

import pyarrow as pa
from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import MultipartDecoder

from sluice_common import error_codes
from sluice_common.choices import resolve_target
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import (
    ParsedCsv,
    SmallCsv,
    one_column_error,
    parse_csv,
    parse_small_csv,
)
from sluice_common.web.params import read_upload


def parse_upload(
    raw: bytes, phase: str, requested_target: str | None
) -> tuple[pa.Table | dict[str, list[str]], dict, str | None]:
    """The upload's cells as Arrow string columns, what was detected about the file, and the
    target (dev).

    A prod upload of a few simple rows comes back as a dict of column lists, built without
    pandas or Arrow, whose per-call costs would be most of a single-row request.
    """
    small = parse_small_csv(raw) if phase == "prod" else None
    if small is not None:
        report = _report(small.n_rows, len(small.columns), small)
        return small.columns, report, None
    parsed = parse_csv(raw)
    table = parsed.table
    report = _report(table.num_rows, table.num_columns, parsed)
    target = None
    if phase == "dev":
        columns = table.column_names
        if len(columns) == 1:  # said before any target rule can misread the one column
            raise one_column_error(columns[0])
        target = resolve_target(columns, requested_target)
    return table, report, target


def _report(rows: int, columns: int, parsed: ParsedCsv | SmallCsv) -> dict:
    report = {
        "rows_in": rows,
        "columns_in": columns,
        "encoding": parsed.encoding,
        "delimiter": parsed.delimiter,
    }
    if parsed.comment_lines:
        report["comment_lines"] = parsed.comment_lines  # skipped above the header
    if parsed.sep_line:
        report["sep_line"] = True  # Excel's `sep=;` line named the delimiter (not data)
    return report


def read_form_upload(request: Request, raw_types: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """`read_upload`, with werkzeug's limits on a form's parts named as what they are: a 3 MB
    body of 50,000 tiny fields is refused by the part count, not by MAX_UPLOAD_MB."""
    try:
        return read_upload(request, raw_types)
    except RequestEntityTooLarge as err:
        raise form_limit_error(err, request) from err


def form_limit_error(err: RequestEntityTooLarge, request: Request) -> Exception:
    """The ApiError for the form limit werkzeug enforced, told by where it raised (werkzeug
    raises the same bare 413 for every limit); `err` itself for the body size limit."""
    frame = err.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    code = frame.tb_frame.f_code if frame is not None else None
    if code is MultipartDecoder.next_event.__code__:
        return ApiError(
            error_codes.TOO_MANY_FORM_PARTS,
            f"The form has more than {request.max_form_parts:,} parts, the limit per request "
            "(werkzeug's max_form_parts). Send the CSV as the one multipart field data_file, "
            "e.g. curl -F data_file=@data.csv.",
        )
    if code in (MultipartDecoder.receive_data.__code__, MultiPartParser.parse.__code__):
        return ApiError(
            error_codes.FORM_FIELD_TOO_LARGE,
            f"A text field of the form is larger than {request.max_form_memory_size:,} bytes, "
            "the limit for form fields that are not files (werkzeug's max_form_memory_size). "
            "Send the CSV as a file part: curl -F data_file=@data.csv (with @; "
            "data_file=<data.csv sends it as text).",
        )
    return err
