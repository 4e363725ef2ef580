"""The dev pipeline on a Dask cluster: the stages' work as passes over partitions.

The data never comes to the trainer: each file is a partition read, typed and keyed on a
worker (pipeline/cluster_parts.py); the trainer decides the rules from what the passes sum:

1. read and clean every file; an evenly spaced sample (CLUSTER_SAMPLE_ROWS) decides the task
   and each column's kind and format, with the single-machine rules; class labels and
   unreadable cells are counted over every row;
2. rows are hashed as the single-machine split hashes them; repeated rows are found over all
   partitions, so copies get the keys they would get on one machine;
3. category levels are counted over every training row, so all partitions read one set;
4. `xgboost.dask` trains on `DaskQuantileDMatrix` partitions, early stopping on the stop rows
   spread over the workers (pipeline/dask_boost.py);
5. validation metrics, the promotion comparison and the monitoring reference use keyed
   samples of the validation and training rows brought to the trainer (at most
   CLUSTER_SAMPLE_ROWS each), reported as such.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb

from sluice_common import error_codes
from sluice_common.choices import resolve_target
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import one_column_error
from trainer.fit import rows as rowsets
from trainer.fit.config import TrainingConfig
from trainer.fit.features import fit_kinds, spec_from_level_counts
from trainer.fit.target import Target, classes_of, labels_of, read_target
from trainer.pipeline import cluster_parts as parts
from trainer.pipeline import dask_boost, stages
from trainer.pipeline.dask_client import client_for, gather, tree_sum, workers_of
from trainer.pipeline.stages import Held, Read, Reference, Split
from trainer.sources import by_reference
from trainer.sources import files as datasource


class OnCluster:
    """The rows on the cluster's workers, one partition per file."""

    # The workers' threads: Dask sets each worker's, so XGBoost takes them all.
    booster_overrides = {"nthread": 0}

    def __init__(self, address, files, settings, context, sample_rows: int = 200_000):
        self.address = address
        self.files = files
        self.settings = settings
        self.context = context
        self.sample_rows = sample_rows

    def _gather(self, futures, what: str):
        return gather(self.client, futures, self.context, what)

    def progress(self, stage: str) -> None:
        self.context.progress(stage=stage)

    def checkpoint(self) -> None:
        self.context.check()

    def read(self, requested_target: str | None) -> Read:
        """Every file read and cleaned on a worker, each file a partition."""
        self.client = client = client_for(self.address)
        files = self.files
        self.workers = workers_of(client)
        if not self.workers:
            raise ApiError(error_codes.CLUSTER_UNAVAILABLE, "The Dask cluster has no workers.")
        self.context.progress(stage="reading", rows_read=0)
        self.loaded = client.map(parts.load, files, settings=self.settings, pure=False)
        described = self._gather(
            client.map(parts.describe, self.loaded, pure=False), "Reading the files"
        )
        columns = described[0]["columns"]
        for item in described[1:]:
            missing = [c for c in columns if c not in item["columns"]]
            extra = [c for c in item["columns"] if c not in columns]
            if missing or extra:
                raise ApiError(
                    error_codes.COLUMNS_DIFFER,
                    f"{item['name'][:200]!r} has columns {item['columns'][:10]} where the first "
                    f"file has {columns[:10]}: every file of a data_uri must have the same "
                    "columns.",
                )
        rows = sum(item["rows"] for item in described)
        self.context.progress(stage="read", rows_read=rows)
        self.file_report = by_reference.file_report(
            [item["report"] for item in described], files, columns, rows
        )
        target = resolve_target([str(c) for c in columns], requested_target)
        return Read(target, columns, self.file_report.get("delimiter", ","))

    def _sample(self, read: Read) -> pa.Table:
        """An evenly spaced sample of the rows with a target (CLUSTER_SAMPLE_ROWS in all)."""
        per_part = max(1, self.sample_rows // len(self.files))
        sampled = self.client.map(
            parts.sample,
            self.loaded,
            columns=read.columns,
            target=read.target,
            rows=per_part,
            pure=False,
        )
        samples = self._gather(sampled, "Sampling")
        sample = pa.concat_tables(datasource.unify([s for s in samples if s.num_rows] or samples))
        if sample.num_rows < stages.MIN_ROWS:
            raise stages.too_few_rows(sample.num_rows, "the files have")
        if sample.column_names == [read.target]:
            # A file read as one column: say so, not "no features".
            raise one_column_error(read.target)
        return sample

    def target(self, read: Read, task: str) -> Target:
        """The task from the sample; class labels counted over every row."""
        client, name = self.client, read.target
        self.sample = self._sample(read)
        column = self.sample.column(name).combine_chunks()
        target = read_target(column, name, task, read.delimiter == ";")
        if target.task == "classification":
            as_series = [
                client.submit(
                    pd.Series,
                    client.submit(parts.target_levels, p, read.columns, name, pure=False),
                    dtype="int64",
                    pure=False,
                )
                for p in self.loaded
            ]
            counted = self._gather([tree_sum(client, as_series)], "Counting the classes")[0]
            labels = pa.array([str(k) for k in counted.index], pa.large_string())
            target = classes_of(labels, name, target.reason)
            target.y = np.empty(0)
        self.target_spec = {
            "task": target.task,
            "classes": target.classes,
            "target_number_format": target.number_format,
        }
        return target

    def kinds(self, read: Read, target: Target, config: TrainingConfig):
        """Kinds and formats from the sample rows whose target reads."""
        _, readable = labels_of(self.target_spec, self.sample.column(read.target).combine_chunks())
        kept = rowsets.keep_rows(self.sample, readable)
        kinds, dropped, _ = fit_kinds(kept, read.target, read.delimiter, config.min_category_rows)
        return kinds, dropped

    def split(self, read: Read, target: Target, kinds, config: TrainingConfig) -> Split:
        """Rows dropped and hashed on the workers; keys as one machine gives them."""
        client, name = self.client, read.target
        prepared = client.map(
            parts.prepare,
            self.loaded,
            columns=read.columns,
            target=name,
            target_spec=self.target_spec,
            kinds=kinds,
            pure=False,
        )
        self.summaries = self._gather(
            client.map(parts.prepared_summary, prepared, task=target.task, n_classes=0, pure=False),
            "Reading the cells",
        )
        self.loaded = None
        rows = sum(s["rows"] for s in self.summaries)
        stages.check_readable_rows(rows)
        counts_total = tree_sum(client, client.map(parts.content_counts, prepared, pure=False))
        repeated, self.n_distinct = self._gather(
            [client.submit(parts.repeated, counts_total, pure=False)], "Hashing rows"
        )[0]
        del counts_total
        offsets = spread_offsets(self, prepared, kinds, name, repeated)
        self.prepared = [
            client.submit(parts.assign_keys, p, o, pure=False)
            for p, o in zip(prepared, offsets, strict=True)
        ]
        fraction = config.validation_fraction
        n_train = sum(
            self._gather(
                [client.submit(parts.train_count, p, fraction) for p in self.prepared],
                "Counting training rows",
            )
        )
        return Split(rows, n_train, [k.name for k in kinds] + [name])

    def spec(self, read: Read, kinds, dropped, split: Split, config: TrainingConfig) -> dict:
        """Category levels counted over every training row."""
        categorical = [k.name for k in kinds if k.kind == "categorical"]
        level_parts = self._gather(
            self.client.map(
                parts.training_levels,
                self.prepared,
                names=categorical,
                fraction=config.validation_fraction,
                pure=False,
            ),
            "Counting category levels",
        )
        level_totals: dict[str, dict[str, int]] = {name: {} for name in categorical}
        for part in level_parts:
            for name, counted in part.items():
                into = level_totals[name]
                for key, count in counted.items():
                    into[key] = into.get(key, 0) + count
        return spec_from_level_counts(
            kinds,
            dropped,
            level_totals,
            split.n_train,
            config.min_category_rows,
            config.max_categories,
        )

    def matrices(self, spec: dict, split: Split, config: TrainingConfig) -> None:
        """Each partition's matrices on its worker, and keyed samples for the trainer."""
        client = self.client
        self.n_valid = split.rows - split.n_train
        self.built = client.map(
            parts.matrices,
            self.prepared,
            spec=spec,
            fraction=config.validation_fraction,
            stop_fraction=config.early_stopping_fraction,
            valid_share=min(1.0, self.sample_rows / max(1, self.n_valid)),
            fit_share=min(1.0, self.sample_rows / max(1, split.n_train)),
            pure=False,
        )
        self.prepared = None
        self.counts = self._gather(
            [client.submit(parts.pick, b, "counts", pure=False) for b in self.built],
            "Building the feature matrices",
        )
        n_fit = sum(c["fit"] for c in self.counts)
        n_stop = sum(c["stop"] for c in self.counts)
        # The stop rows are a key range here (no few-rows fallback as in memory).
        if n_fit < 2 or n_stop < 1:
            raise stages.too_few_distinct(split.rows)

    def trainer(self, params: dict, types: list, names: list[str]):
        return dask_boost.trainer(
            self.client, self.built, self.counts, params, types, names, self.context
        )

    def local_booster(self, booster, names: list[str]):
        """The booster as a plain one in this process (not tied to the cluster)."""
        booster.feature_names = names
        booster.feature_types = None
        local = xgb.Booster(model_file=bytearray(booster.save_raw("ubj")))
        local.feature_names = names
        return local

    def held_out(self) -> Held:
        """A keyed sample of the validation rows, brought to the trainer."""
        valid = self._gather(
            [self.client.submit(parts.pick, b, "valid_sample", pure=False) for b in self.built],
            "Collecting the validation sample",
        )
        label_sum = np.sum([c["label_sum"] for c in self.counts], axis=0)
        regression = self.target_spec["task"] == "regression"
        return Held(
            table=pa.concat_tables(datasource.unify([v["table"] for v in valid])),
            matrix=np.concatenate([v["matrix"] for v in valid]),
            y=np.concatenate([v["y"] for v in valid]),
            keys=np.concatenate([v["keys"] for v in valid]),
            baseline=label_sum[0] / label_sum[1] if regression else label_sum,
        )

    def reference(self) -> Reference:
        """A keyed sample of the training rows, brought to the trainer."""
        fitted = self._gather(
            [self.client.submit(parts.pick, b, "fit_sample", pure=False) for b in self.built],
            "Collecting the training sample",
        )
        self.warnings = self._gather(
            [self.client.submit(parts.pick, b, "warnings", pure=False) for b in self.built],
            "Collecting warnings",
        )
        self.built = None
        table = pa.concat_tables(datasource.unify([f["table"] for f in fitted]))
        return Reference(np.concatenate([f["matrix"] for f in fitted]), table.select, table, None)

    def report(self, split: Split, held: Held, reference: Reference) -> dict:
        """The files' reading report with the partitions' counts summed."""
        dropped_rows: dict[str, int] = {}
        unreadable: dict[str, int] = {}
        missing: dict[str, int] = {}
        for s in self.summaries:
            for into, values in (
                (dropped_rows, s["dropped"]),
                (unreadable, s["unreadable"]),
                (missing, s["missing"]),
            ):
                for key, value in values.items():
                    into[key] = into.get(key, 0) + value
        dropped_rows.setdefault("empty", 0)
        dropped_rows.setdefault("missing_target", 0)
        warnings: dict = {}
        for item in self.warnings:
            by_reference.merge_warnings(warnings, item)
        report = dict(self.file_report)
        report.update(
            rows_out=split.rows,
            dropped_rows=dropped_rows,
            duplicate_rows=int(split.rows - self.n_distinct),
            missing_values=missing,
            unreadable_treated_as_missing=unreadable,
            cluster={
                "workers": len(self.workers),
                "partitions": len(self.files),
                "rows_sampled_for_column_kinds": self.sample.num_rows,
                "validation_rows": self.n_valid,
                "validation_rows_scored": len(held.y),
                "reference_rows": len(reference.matrix),
                "reading_warnings": warnings,
            },
        )
        return report


def spread_offsets(engine: OnCluster, prepared, kinds, target, repeated: pd.Series):
    """Per partition: copies before it of each repeated content whose copies are separate
    observations (trainer/fit/rows.py `observations`), so keys match a single-machine split."""
    if not len(repeated):
        return [None] * len(prepared)
    client = engine.client
    values = engine._gather(
        client.map(
            parts.repeated_values,
            prepared,
            kinds=kinds,
            target=target,
            repeated_index=repeated.index.to_numpy(),
            pure=False,
        ),
        "Finding repeated rows",
    )
    frame = pd.concat([v for v in values if len(v)]).drop_duplicates("_content")
    wanted = {name: frame[name].unique() for name in frame.columns if name != "_content"}
    totals_parts = engine._gather(
        client.map(
            parts.value_totals, prepared, kinds=kinds, target=target, wanted=wanted, pure=False
        ),
        "Counting shared values",
    )
    spread = np.ones(len(frame), dtype=bool)
    copies = repeated.reindex(frame["_content"].to_numpy()).to_numpy()
    for name in wanted:
        total = pd.concat([t[name] for t in totals_parts]).groupby(level=0).sum()
        rows_with_value = total.reindex(frame[name].to_numpy()).to_numpy()
        # Shared by another distinct row exactly when more rows hold it than this row's copies.
        spread &= rows_with_value > copies
    spread_contents = frame["_content"].to_numpy()[spread]
    if not len(spread_contents):
        return [None] * len(prepared)
    here = engine._gather(
        client.map(parts.repeated_here, prepared, repeated_index=spread_contents, pure=False),
        "Counting copies",
    )
    offsets, running = [], pd.Series(0, index=spread_contents, dtype="int64")
    for counted in here:
        offsets.append(running.copy())
        running = running.add(counted, fill_value=0).astype("int64")
    return offsets
