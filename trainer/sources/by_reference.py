"""Dev and prod on data by reference (`data_uri`), on the trainer itself or on a Dask cluster.

Both engines answer the same API: the same typing rules (the model's cell rules), the same
split, the same answer. Prod writes one output file, one row per input row in input order,
keyed by input file and row. Every file is one partition: scored alone (a row's prediction
never depends on other rows), its monitoring counts recorded as one batch.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.model.row_flags import (
    FLAGS_COLUMN,
    count_flagged,
    flag_texts,
)
from trainer.monitoring.monitor import new_batch_id, scored_counts
from trainer.sources import files as datasource
from trainer.sources.files import DataFile, DataSettings, Output

OUTPUT_KEY_COLUMNS = ("file", "row")
# Prod answers list the first ignored columns, at most this many and about IGNORED_CHARS
# characters of names (the first name always), and count them all: a 20,000-column upload's
# answer would otherwise repeat its whole header.
MAX_IGNORED_COLUMNS = 100
IGNORED_CHARS = 10_000


@dataclass(frozen=True)
class ProdOptions:
    """What a prod job writes besides predictions."""

    proba: bool = False
    key: str | None = None  # an input column copied to the output


def file_report(reports: list[dict], files: list[DataFile], columns: list[str], rows: int) -> dict:
    """What was read: the upload report's fields, over every file."""
    encodings = Counter(r["encoding"] for r in reports if "encoding" in r)
    delimiters = Counter(r["delimiter"] for r in reports if "delimiter" in r)
    report = {
        "rows_in": rows,
        "columns_in": len(columns),
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "formats": dict(Counter(r["format"] for r in reports)),
    }
    if encodings:
        report["encoding"] = encodings.most_common(1)[0][0]
        if len(encodings) > 1:
            report["encodings"] = dict(encodings)
    # The split's number conventions follow the files' delimiter (a ; file prefers 1,5).
    report["delimiter"] = delimiters.most_common(1)[0][0] if delimiters else ","
    if len(delimiters) > 1:
        report["delimiters"] = dict(delimiters)
    return report


def read_all(files: list[DataFile], settings: DataSettings, context) -> tuple[pa.Table, dict]:
    """Every file read on this machine into one table of cells (dev without a cluster)."""
    tables, reports, columns, rows = [], [], None, 0
    for item in files:
        context.progress(stage=f"reading {item.name[:120]}", rows_read=rows)
        table, report = datasource.read_cells(item, settings)
        columns = columns or table.column_names
        tables.append(datasource.align(table, columns, item.name))
        reports.append(report)
        rows += table.num_rows
        context.progress(rows_read=rows)
    table = pa.concat_tables(datasource.unify(tables))
    return table, file_report(reports, files, columns, rows)


def output_columns(
    model, scored, file_name: str, table: pa.Table, options: ProdOptions, batch_id
) -> pa.Table:
    """A scored partition as output rows: file, row, [key], [batch_id], prediction, [proba_*],
    flags (left out for a version whose model cannot tell rows)."""
    n_rows = table.num_rows
    columns = {
        "file": pa.array([file_name] * n_rows, pa.string()),
        "row": pa.array(np.arange(n_rows, dtype="int64")),
    }
    if options.key is not None:  # as text: typed alike in every file, 007 kept as written
        key = table.column(options.key)
        columns[options.key] = (
            key if pa.types.is_large_string(key.type) else key.cast(pa.large_string())
        )
    if batch_id is not None:
        columns["batch_id"] = pa.array([batch_id] * n_rows, pa.string())
    predictions = scored.predictions
    columns["prediction"] = pa.array(
        predictions.tolist() if predictions.dtype == object else predictions
    )
    if options.proba and scored.probabilities is not None:
        for index, label in enumerate(model.classes):
            columns[f"proba_{label}"] = pa.array(scored.probabilities[:, index])
    columns[FLAGS_COLUMN] = flag_texts(scored.flags, n_rows)
    return pa.table(columns)


def listed_ignored(ignored: list[str] | None) -> dict:
    """The answer's fields for the input columns the model does not read: `ignored_columns`
    (the first ones, in input order), `ignored_columns_total` and `ignored_columns_omitted`."""
    ignored = ignored or []
    listed, chars = [], 0
    for name in ignored[:MAX_IGNORED_COLUMNS]:
        chars += len(name)
        if listed and chars > IGNORED_CHARS:
            break
        listed.append(name)
    return {
        "ignored_columns": listed,
        "ignored_columns_total": len(ignored),
        "ignored_columns_omitted": len(ignored) - len(listed),
    }


def check_key(options: ProdOptions, columns: list[str], required: list[str]) -> None:
    """The key column must be an input column and not collide with an output column."""
    if options.key is None:
        return
    if options.key not in columns:
        raise ApiError(
            error_codes.UNKNOWN_KEY, f"key column {options.key[:100]!r} is not in the input files."
        )
    taken = (*OUTPUT_KEY_COLUMNS, "prediction", "batch_id", FLAGS_COLUMN)
    if options.key in taken or options.key.startswith("proba_"):
        raise ApiError(
            error_codes.INVALID_KEY_COLUMN,
            f"key column {options.key!r} would collide with an output column; rename it.",
        )


class OutputWriter:
    """Streams output partitions, in order, into one Parquet or CSV file; the file appears
    under its name only when complete."""

    def __init__(self, output: Output, settings: DataSettings):
        self.output = output
        self.settings = settings
        self.stream = datasource.write_output(output, settings)
        self.writer = None
        self.rows = 0
        self.flagged: int | None = None  # rows with flags; None without a flags column
        self.schema = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.schema = table.schema
            if self.output.format == "parquet":
                self.writer = pq.ParquetWriter(self.stream, table.schema, compression="zstd")
            else:
                self.writer = pacsv.CSVWriter(self.stream, table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows
        if FLAGS_COLUMN in table.column_names:
            self.flagged = (self.flagged or 0) + count_flagged(table.column(FLAGS_COLUMN))

    def close(self) -> dict:
        if self.writer is not None:
            self.writer.close()
        self.stream.close()
        if not self.output.s3:
            partial = self.output.location + ".partial"
            try:
                os.link(partial, self.output.location)  # never over a file made meanwhile
            except FileExistsError as err:
                os.unlink(partial)
                raise ApiError(
                    error_codes.OUTPUT_EXISTS, f"{self.output.name!r} appeared while the job ran."
                ) from err
            os.unlink(partial)
        else:
            from pyarrow import fs

            s3 = datasource.s3_filesystem(self.settings)
            partial = self.output.location + ".partial-" + self.output.token
            if s3.get_file_info(self.output.location).type != fs.FileType.NotFound:
                s3.delete_file(partial)
                raise ApiError(
                    error_codes.OUTPUT_EXISTS, f"{self.output.name!r} appeared while the job ran."
                )
            s3.move(partial, self.output.location)
        return {
            "uri": self.output.name,
            "format": self.output.format,
            "rows": self.rows,
            "columns": list(self.schema.names) if self.schema else [],
            "flagged_rows": self.flagged,
        }

    def abort(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            self.stream.close()
        except Exception:  # the stream may be broken already; the partial file goes anyway
            pass
        if not self.output.s3:
            try:
                os.unlink(self.output.location + ".partial")
            except FileNotFoundError:
                pass
        else:
            try:  # only this job's own key: never an output another job finished
                partial = self.output.location + ".partial-" + self.output.token
                datasource.s3_filesystem(self.settings).delete_file(partial)
            except OSError:
                pass


def merge_warnings(total: dict, warnings: dict) -> None:
    """Add one partition's reading warnings (kind -> column -> count) to the total, under the
    kinds' current names."""
    for kind, per_column in warnings.items():
        into = total.setdefault(kind, {})
        for name, count in per_column.items():
            into[name] = into.get(name, 0) + int(count)


def score_locally(
    files: list[DataFile],
    settings: DataSettings,
    output: Output,
    options: ProdOptions,
    champion,
    model_name: str,
    monitor,
    context,
    missing_columns_error,
) -> dict:
    """Prod by reference on this machine: each file read, scored and appended in turn.
    `missing_columns_error(model_name, version, missing, names, what)` is the error for
    files that lack columns the champion needs (lifecycle/hints.py's, naming a version
    that reads them)."""
    model = champion.model
    writer = OutputWriter(output, settings)
    warnings: dict = {}
    reports, ignored, columns = [], None, None
    batches: list = []
    try:
        for index, item in enumerate(files):
            context.progress(stage=f"scoring file {index + 1} of {len(files)}")
            table, report = datasource.read_cells(item, settings)
            if columns is None:
                columns = table.column_names
                check_key(options, columns, model.required_columns)
                missing = [n for n in model.required_columns if n not in columns]
                if missing:
                    raise missing_columns_error(
                        model_name, champion.version, missing, set(columns), what="files"
                    )
            table = datasource.align(table, columns, item.name)
            reports.append(report)
            scored = model.score_frame(table)
            merge_warnings(warnings, scored.warnings)
            ignored = scored.ignored_columns
            batch_id = None
            if monitor is not None:
                batch_id = new_batch_id()
                profile = model.profile
                compiled = monitor._compile(profile) if profile is not None else None
                counts, kept = scored_counts(profile, compiled, scored, table.num_rows)
                batches.append((batch_id, counts, kept, table.num_rows))
            writer.write(output_columns(model, scored, item.name, table, options, batch_id))
            context.progress(rows_read=writer.rows)
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    batch_ids = record_batches(monitor, model_name, champion, batches)
    rows = written["rows"]
    return prod_answer(
        model_name, champion, rows, written, warnings, ignored, reports, files, columns, batch_ids
    )


def record_batches(monitor, model_name: str, champion, batches: list) -> list[str]:
    """Record each scored partition's monitoring counts, once the output exists: a failed
    job leaves no batches that nobody received. The batch ids, in order."""
    for batch_id, counts, kept, n_rows in batches:
        monitor.record_counts(
            model_name,
            champion.version,
            champion.model.profile,
            counts,
            kept,
            n_rows,
            batch_id=batch_id,
        )
    return [batch_id for batch_id, *_ in batches]


def prod_answer(
    model_name, champion, rows, written, warnings, ignored, reports, files, columns, batch_ids
) -> dict:
    """The answer of prod by reference; `flagged_rows_total` counts the output's rows with a
    non-empty `flags` (null, with a note, for a version whose model cannot tell rows)."""
    output = dict(written)
    flagged = output.pop("flagged_rows", None)
    answer = {
        "phase": "prod",
        "model": model_name,
        "version": champion.version,
        "run_id": champion.run_id,
        "digest": champion.digest,  # of the version's training data
        "n_rows": rows,
        "output": output,
        **listed_ignored(ignored),
        "warnings": warnings,
        "flagged_rows_total": flagged,
        "cleaning": file_report(reports, files, columns or [], rows),
    }
    if batch_ids:
        answer["batch_ids"] = batch_ids
    return answer
