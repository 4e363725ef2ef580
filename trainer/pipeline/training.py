"""The dev pipeline on one machine: the stages' work on one Arrow table in memory."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import one_column_error
from trainer.fit import rows as rowsets
from trainer.fit.booster import fit, inner_split
from trainer.fit.config import TrainingConfig
from trainer.fit.features import clean_table, fit_feature_spec, fit_kinds, text_columns_of
from trainer.fit.metrics import baseline_of
from trainer.fit.target import Target, read_target
from trainer.model import sluice_cells as cells
from trainer.model.sluice_model import feature_matrix
from trainer.pipeline import stages
from trainer.pipeline.stages import Held, Read, Reference, Split, TrainedModel


class InMemory:
    """The rows in this process: every stage reads the whole table."""

    booster_overrides: dict = {}

    def __init__(self, data, delimiter: str = ",", on_round=None, check=None):
        self.data = data
        self.delimiter = delimiter
        self.on_round = on_round
        self.check = check

    def progress(self, stage: str) -> None:
        pass  # the job reports "training" for the whole run, rounds through on_round

    def checkpoint(self) -> None:
        if self.check is not None:
            self.check()

    def read(self, requested_target: str | None) -> Read:
        """The cleaned cells; rows empty or without a target dropped (counted)."""
        target = requested_target
        table = clean_table(rowsets.as_table(self.data))
        self.data = None
        self.rows_in = table.num_rows
        if target not in table.column_names:
            raise ApiError(
                error_codes.UNKNOWN_TARGET, f"Target column {target!r} is not in the table."
            )
        if table.column_names == [target]:
            raise one_column_error(target)  # a file read as one column: say so, not "no features"
        if table.column(target).null_count == self.rows_in:
            raise ApiError(
                error_codes.EMPTY_TARGET,
                f"Target column {target!r} has no values. Pick another column with ?target=NAME.",
            )
        empty = rowsets.empty_rows(table)
        no_target = rowsets.is_null(table.column(target)) & ~empty
        self.table = rowsets.keep_rows(table, ~empty & ~no_target)
        self.dropped_rows = {"empty": int(empty.sum()), "missing_target": int(no_target.sum())}
        if self.table.num_rows < stages.MIN_ROWS:
            raise stages.too_few_rows(self.table.num_rows, "this file has")
        return Read(target, self.table.column_names, self.delimiter)

    def target(self, read: Read, task: str) -> Target:
        """The target read over every row; rows whose target cannot be read dropped."""
        prefer_comma = read.delimiter == ";"
        column = self.table.column(read.target).combine_chunks()
        target = read_target(column, read.target, task, prefer_comma)
        if not target.keep.all():
            self.dropped_rows["unreadable_target"] = int((~target.keep).sum())
            self.table = rowsets.keep_rows(self.table, target.keep)
            stages.check_readable_rows(self.table.num_rows)
        self.y = target.y
        self.task, self.n_classes = target.task, len(target.classes or [])
        return target

    def kinds(self, read: Read, target: Target, config: TrainingConfig):
        # Text columns read together: each rule runs once per block of columns (wide tables).
        self.texts = text_columns_of(self.table, read.target)
        kinds, dropped, self.unreadable = fit_kinds(
            self.table, read.target, read.delimiter, config.min_category_rows, texts=self.texts
        )
        return kinds, dropped

    def split(self, read: Read, target: Target, kinds, config: TrainingConfig) -> Split:
        """Each row's key from its read cells (copies of a record share a side)."""
        read_cells = rowsets.read_cells(self.table, kinds, read.target, self.y, texts=self.texts)
        self.content = rowsets.content_hashes(read_cells)
        self.keys = rowsets.row_keys(
            self.content, rowsets.observations(read_cells, read.target, self.content)
        )
        self.held = self.keys < config.validation_fraction
        self.fit_idx = np.flatnonzero(~self.held)
        self.valid_idx = np.flatnonzero(self.held)
        return Split(self.table.num_rows, len(self.fit_idx), list(read_cells))

    def spec(self, read: Read, kinds, dropped, split: Split, config: TrainingConfig) -> dict:
        spec = fit_feature_spec(
            self.table,
            read.target,
            ~self.held,
            kinds,
            dropped,
            config.min_category_rows,
            config.max_categories,
            texts=self.texts,
        )
        del self.texts
        return spec

    def matrices(self, spec: dict, split: Split, config: TrainingConfig) -> None:
        self.matrix, _ = feature_matrix(self.table, spec, cells)
        inner_fit, inner_stop = inner_split(
            self.keys[self.fit_idx], config.validation_fraction, config.early_stopping_fraction
        )
        self.fit_rows, self.stop_rows = self.fit_idx[inner_fit], self.fit_idx[inner_stop]

    def trainer(self, params: dict, types: list, names: list[str]):
        matrix, y = self.matrix, self.y

        def train(rows: str, rounds: int, early_stopping: int | None):
            on_round = self.on_round
            if rows == "train":
                every = self.fit_idx
                return fit(params, matrix[every], y[every], types, names, rounds, on_round=on_round)
            fit_rows, stop_rows = self.fit_rows, self.stop_rows
            return fit(
                params,
                matrix[fit_rows],
                y[fit_rows],
                types,
                names,
                rounds,
                valid=(matrix[stop_rows], y[stop_rows]),
                early_stopping=early_stopping,
                on_round=on_round,
            )

        return train

    def local_booster(self, booster, names: list[str]):
        return booster

    def held_out(self) -> Held:
        valid, y = self.valid_idx, self.y
        return Held(
            table=rowsets.take_rows(self.table, valid),
            matrix=self.matrix[valid],
            y=y[valid],
            keys=self.keys[valid],
            baseline=baseline_of(self.task, y[self.fit_idx], self.n_classes),
        )

    def reference(self) -> Reference:
        table, fit_idx = self.table, self.fit_idx

        def fit_cells(columns: list[str]) -> pa.Table:
            return rowsets.take_rows(table.select(columns), fit_idx)

        return Reference(self.matrix[fit_idx], fit_cells, table, self.keys)

    def report(self, split: Split, held: Held, reference: Reference) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.table.num_rows,
            "dropped_rows": self.dropped_rows,
            "duplicate_rows": rowsets.duplicate_count(self.content),
            "missing_values": rowsets.null_counts(self.table),
            "unreadable_treated_as_missing": self.unreadable,
        }


def train_model(
    data,
    target: str,
    task: str = "auto",
    config: TrainingConfig | None = None,
    delimiter: str = ",",
    on_round=None,
) -> TrainedModel:
    """Read the raw cells, decide each column's kind, split by row content, fit feature
    handling and booster on the training rows, score the validation rows."""
    engine = InMemory(data, delimiter, on_round)
    return stages.train(engine, target, task, config or TrainingConfig())
