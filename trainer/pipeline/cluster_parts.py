"""What a Dask worker does to one partition (one input file): pure functions of the partition
and the rules fitted on the trainer. They call the same rules as a single-machine run
(fit/rows.py, fit/features.py, the model's cell rules); only the sums cross partitions.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb
from dask.sizeof import sizeof

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.fit import rows as rowsets
from trainer.fit.features import clean_table, level_counts
from trainer.fit.target import labels_of
from trainer.model import sluice_cells as cells
from trainer.model.sluice_model import SluiceModel, feature_matrix, load_rules
from trainer.monitoring.monitor import scored_counts
from trainer.monitoring.profile import Compiled
from trainer.sources import files as datasource
from trainer.sources.by_reference import check_key, output_columns


@dataclass
class Part:
    """One file's cleaned cells, held on a worker."""

    name: str
    table: pa.Table
    report: dict


def _table_size(value) -> int:
    return value.table.nbytes + sum(
        getattr(value, name).nbytes
        for name in ("y", "content", "keys")
        if getattr(value, name, None) is not None
    )


@dataclass
class Prepared:
    """A partition's training rows: cells, labels, content hashes and (later) row keys."""

    table: pa.Table
    y: np.ndarray
    content: np.ndarray
    dropped: dict
    unreadable: dict
    missing: dict
    keys: np.ndarray | None = None


def load(item, settings) -> Part:
    """Read and clean one file, as an upload's cells are cleaned."""
    table, report = datasource.read_cells(item, settings)
    return Part(item.name, clean_table(table), report)


def describe(part: Part) -> dict:
    return {
        "name": part.name,
        "rows": part.table.num_rows,
        "columns": part.table.column_names,
        "report": part.report,
    }


def aligned(part: Part, columns: list[str]) -> pa.Table:
    return datasource.align(part.table, columns, part.name)


def _with_target(table: pa.Table, target: str) -> np.ndarray:
    """Rows kept before the target is read: not empty, target present."""
    empty = rowsets.empty_rows(table)
    return ~empty & ~rowsets.is_null(table.column(target))


def sample(part: Part, columns: list[str], target: str, rows: int) -> pa.Table:
    """Up to `rows` evenly spaced rows with a target (for deciding column kinds)."""
    table = aligned(part, columns)
    table = rowsets.keep_rows(table, _with_target(table, target))
    if table.num_rows > rows:
        step = table.num_rows / rows
        table = rowsets.take_rows(table, (np.arange(rows) * step).astype("int64"))
    return table


def target_levels(part: Part, columns: list[str], target: str) -> dict[str, int]:
    """The target's labels and their counts (classification over every row)."""
    return level_counts(aligned(part, columns).column(target).combine_chunks())


def prepare(part: Part, columns, target: str, target_spec: dict, kinds) -> Prepared:
    """Drop what a single-machine run drops (counted), read the labels and hash each row's
    read cells; counts of unreadable and missing cells."""
    table = aligned(part, columns)
    empty = rowsets.empty_rows(table)
    no_target = rowsets.is_null(table.column(target)) & ~empty
    table = rowsets.keep_rows(table, ~empty & ~no_target)
    y, readable = labels_of(target_spec, table.column(target).combine_chunks())
    dropped = {"empty": int(empty.sum()), "missing_target": int(no_target.sum())}
    if not readable.all():
        dropped["unreadable_target"] = int((~readable).sum())
        table = rowsets.keep_rows(table, readable)
        y = y[readable]
    unreadable = {}
    for kind in kinds:
        column = table.column(kind.name).combine_chunks()
        if kind.kind == "numeric" and not pa.types.is_floating(column.type):
            fmt = cells.NumberFormat.from_dict(kind.detail.get("number_format"))
            count = cells.read_numbers(column, fmt).unreadable
        elif kind.kind == "datetime":
            count = cells.read_date_cells(column, kind.detail["date_formats"]).unreadable
        else:
            count = 0
        if count:
            unreadable[kind.name] = int(count)
    read = rowsets.read_cells(table, kinds, target, y)
    content = rowsets.content_hashes(read)
    return Prepared(table, y, content, dropped, unreadable, rowsets.null_counts(table))


def prepared_summary(prepared: Prepared, task: str, n_classes: int) -> dict:
    return {
        "rows": prepared.table.num_rows,
        "dropped": prepared.dropped,
        "unreadable": prepared.unreadable,
        "missing": prepared.missing,
    }


def content_counts(prepared: Prepared) -> pd.Series:
    return pd.Series(prepared.content).value_counts(sort=False)


def add_counts(*series: pd.Series) -> pd.Series:
    """Counts summed (a step of the tree that sums content counts over partitions)."""
    return pd.concat(series).groupby(level=0, sort=False).sum()


def repeated(counts: pd.Series) -> tuple[pd.Series, int]:
    """The contents that occur more than once, with their counts, and the distinct count."""
    return counts[counts > 1], int(len(counts))


def _value_hashes(prepared: Prepared, kinds, target: str) -> pd.DataFrame:
    read = rowsets.read_cells(prepared.table, kinds, target, prepared.y)
    return pd.DataFrame(
        {
            name: pd.util.hash_array(np.asarray(values), categorize=False)
            for name, values in read.items()
            if name != target
        }
    )


def repeated_values(prepared: Prepared, kinds, target: str, repeated_index) -> pd.DataFrame:
    """One row of value hashes per repeated content found here (for `observations`)."""
    mask = np.isin(prepared.content, repeated_index)
    if not mask.any():
        return pd.DataFrame()
    hashed = _value_hashes(prepared, kinds, target)[mask]
    hashed.insert(0, "_content", prepared.content[mask])
    return hashed.drop_duplicates("_content")


def value_totals(prepared: Prepared, kinds, target: str, wanted: dict) -> dict[str, pd.Series]:
    """Rows per value, for the values of repeated rows only."""
    hashed = _value_hashes(prepared, kinds, target)
    totals = {}
    for name, values in wanted.items():
        column = hashed[name].to_numpy()
        picked = column[np.isin(column, values)]
        totals[name] = pd.Series(picked).value_counts(sort=False)
    return totals


def repeated_here(prepared: Prepared, repeated_index) -> pd.Series:
    mask = np.isin(prepared.content, repeated_index)
    return pd.Series(prepared.content[mask]).value_counts(sort=False)


def assign_keys(prepared: Prepared, spread_offsets: pd.Series | None) -> Prepared:
    """Each row's key: its copy number counts from the copies in earlier partitions
    (`spread_offsets`: content -> copies before this partition, only for contents whose copies
    are separate observations)."""
    occurrence = np.zeros(len(prepared.content), dtype="int64")
    if spread_offsets is not None and len(spread_offsets):
        mask = np.isin(prepared.content, spread_offsets.index.to_numpy())
        if mask.any():
            picked = pd.Series(prepared.content[mask])
            local = picked.groupby(picked, sort=False).cumcount().to_numpy()
            before = spread_offsets.reindex(picked.to_numpy()).to_numpy()
            occurrence[mask] = local + before
    prepared.keys = rowsets.keys_of(prepared.content, occurrence)
    return prepared


def train_count(prepared: Prepared, fraction: float) -> int:
    """This partition's training rows (keys at or above the validation fraction)."""
    return int((prepared.keys >= fraction).sum())


def training_levels(prepared: Prepared, names: list[str], fraction: float) -> dict:
    """Level counts of the categorical columns over this partition's training rows."""
    train = pa.array(np.flatnonzero(prepared.keys >= fraction))
    return {
        name: level_counts(prepared.table.column(name).combine_chunks().take(train))
        for name in names
    }


def split_rows(keys: np.ndarray, fraction: float, stop_fraction: float):
    """Training, early-stopping and validation rows by key (fit/booster.py's inner_split)."""
    held = keys < fraction
    stop = ~held & (keys < fraction + stop_fraction * (1 - fraction))
    return ~held & ~stop, stop, held


def matrices(prepared: Prepared, spec: dict, fraction, stop_fraction, valid_share, fit_share):
    """The feature matrix split into fit / stop / validation rows, plus evenly keyed samples
    of validation rows (cells too, to score other models on) and of fit rows (for the
    monitoring reference); the training rows' label sums for the baseline."""
    matrix, warnings = feature_matrix(prepared.table, spec, cells)
    keys = prepared.keys
    fit, stop, held = split_rows(keys, fraction, stop_fraction)
    y = prepared.y
    valid_pick = held & (keys < fraction * valid_share)
    train_rows = fit | stop
    fit_pick = train_rows & ((keys - fraction) < (1 - fraction) * fit_share)
    n_classes = len(spec.get("classes") or [])
    if spec["task"] == "regression":
        label_sum = [float(y[train_rows].sum()), int(train_rows.sum())]
    else:
        label_sum = np.bincount(y[train_rows].astype("int64"), minlength=n_classes).tolist()
    frame = lambda m: pd.DataFrame(m, columns=[f"f{i}" for i in range(m.shape[1])])  # noqa: E731
    return {
        "fit": (frame(matrix[fit]), pd.Series(y[fit])),
        "stop": (frame(matrix[stop]), pd.Series(y[stop])),
        "counts": {
            "fit": int(fit.sum()),
            "stop": int(stop.sum()),
            "valid": int(held.sum()),
            "label_sum": label_sum,
        },
        "valid_sample": {
            "table": rowsets.take_rows(prepared.table, np.flatnonzero(valid_pick)),
            "matrix": matrix[valid_pick],
            "y": y[valid_pick],
            "keys": keys[valid_pick],
        },
        "fit_sample": {
            "table": rowsets.take_rows(prepared.table, np.flatnonzero(fit_pick)),
            "matrix": matrix[fit_pick],
        },
        "warnings": warnings,
    }


def training_rows(result: dict, position: int):
    """Fit and stop rows together (the refit of small data), made only when asked for."""
    fit, stop = result["fit"][position], result["stop"][position]
    return pd.concat([fit, stop], ignore_index=True)


def pick(result: dict, *path):
    for name in path:
        result = result[name]
    return result


# -- prod ------------------------------------------------------------------------------------

_MODELS: dict[str, object] = {}


@dataclass(frozen=True)
class ModelPayload:
    """A model version as it travels to the workers: its own booster, spec, cell rules and
    monitoring profile (the worker runs the version's logged rules, not its own copy)."""

    digest: str
    booster: bytes
    spec: dict
    rules_source: bytes
    profile: dict | None


def rules_source(rules) -> bytes:
    """The source of a model's cell rules. A version loaded from the registry ran them from a
    temporary copy that is gone; their module is named by their digest (sluice_model
    .load_rules), so the copy still on disk, or this trainer's own file, is checked against it."""
    wanted = rules.__name__.rsplit("_", 1)[-1]
    for path in (getattr(rules, "__file__", None), cells.__file__):
        try:
            with open(path, "rb") as handle:
                source = handle.read()
        except (OSError, TypeError):
            continue
        mine = not rules.__name__.startswith("sluice_cells_")  # trainer.model.sluice_cells itself
        if mine or hashlib.sha256(source).hexdigest()[:16] == wanted:
            return source
    raise ApiError(
        error_codes.RULES_UNAVAILABLE,
        "The champion's cell rules are not available to send to the cluster (a version from an "
        "older Sluice); retrain it, or score without DASK_SCHEDULER_ADDRESS.",
    )


def payload_of(model) -> ModelPayload:
    booster = bytes(model.booster.save_raw("ubj"))
    rules = rules_source(model.rules)
    digest = hashlib.sha256(booster + rules).hexdigest()
    return ModelPayload(digest, booster, model.spec, rules, model.profile)


def model_of(payload: ModelPayload):
    """The SluiceModel of a payload, built once per worker process."""
    model = _MODELS.get(payload.digest)
    if model is None:
        folder = os.path.join(tempfile.gettempdir(), "sluice-worker-rules")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, hashlib.sha256(payload.rules_source).hexdigest() + ".py")
        if not os.path.exists(path):
            with open(path + f".{os.getpid()}", "wb") as handle:
                handle.write(payload.rules_source)
            os.replace(path + f".{os.getpid()}", path)
        booster = xgb.Booster()
        booster.load_model(bytearray(payload.booster))
        booster.set_param({"nthread": 1})
        model = SluiceModel(booster, payload.spec, load_rules(path))
        model.profile = payload.profile
        if len(_MODELS) > 8:
            _MODELS.clear()
        _MODELS[payload.digest] = model
    return model


def score_file(item, settings, payload: ModelPayload, options, columns, batch_id) -> dict:
    """Read, score and count one file: its output rows, warnings and monitoring counts."""
    model = model_of(payload)
    table, report = datasource.read_cells(item, settings)
    check_key(options, table.column_names, model.required_columns)
    missing = [n for n in model.required_columns if n not in table.column_names]
    if missing:
        raise ApiError(
            error_codes.MISSING_COLUMNS,
            f"{item.name[:200]!r} lacks columns the model needs: {', '.join(map(repr, missing))}.",
            missing_columns=missing,
        )
    if columns is not None:
        table = datasource.align(table, columns, item.name)
    scored = model.score_frame(table)
    result = {
        "name": item.name,
        "rows": table.num_rows,
        "columns": table.column_names,
        "report": report,
        "warnings": scored.warnings,
        "ignored": scored.ignored_columns,
        "output": output_columns(model, scored, item.name, table, options, batch_id),
    }
    if batch_id is not None:
        compiled = Compiled(model.profile) if model.profile is not None else None
        result["counts"], result["kept"] = scored_counts(
            model.profile, compiled, scored, table.num_rows
        )
    return result


# Dask sizes unknown objects at a few bytes, so it would never spill partitions to disk.
sizeof.register(Part)(_table_size)
sizeof.register(Prepared)(_table_size)
