"""The served model: fitted feature handling + XGBoost booster as one MLflow pyfunc.

This file is logged with every model ("models from code"), with the cell rules
(sluice_cells.py), the booster (XGBoost's own UBJSON) and the feature spec (JSON) as
artifacts. Nothing is pickled. It imports only numpy, pandas, pyarrow, xgboost and mlflow, so
`mlflow models serve` and `mlflow.pyfunc.load_model` run it without the Sluice packages.

The model is the typing authority: it reads raw cells (text as written, or values typed by
pandas or JSON) with the rules fitted at training time, and never infers types from a batch.
A row's features therefore depend on that row alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from types import ModuleType

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb

BOOSTER_ARTIFACT = "booster"
SPEC_ARTIFACT = "feature_spec"
RULES_ARTIFACT = "cell_rules"
# The monitoring reference of this version (JSON): the training data as the model sees it.
PROFILE_ARTIFACT = "monitoring_profile"
# Up to this many rows, cells are read one by one in plain Python: Arrow's and pandas'
# per-call overheads (~0.1 ms) would dominate a single-row request.
SMALL_ROWS = 64
# From this many rows a batch is scored on every core (when use_threads() was called).
PARALLEL_ROWS = 10_000


class MissingColumnsError(ValueError):
    """Input lacks columns the model needs."""

    def __init__(self, columns: list[str]):
        super().__init__(f"missing required columns: {', '.join(columns)}")
        self.columns = columns


@dataclass
class Scored:
    """Model outputs for a batch, plus what was noticed about the input."""

    predictions: np.ndarray  # labels (object) for classification, floats for regression
    probabilities: np.ndarray | None  # (n_rows, n_classes) for classification
    ignored_columns: list[str] = field(default_factory=list)
    warnings: dict = field(default_factory=dict)
    matrix: np.ndarray | None = None  # the feature matrix scored (for monitoring counts)
    # Per input column with flagged rows: (warning kind, bool mask over rows) of the cells the
    # model could not read as trained (FLAG_KINDS).
    flags: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)


def load_rules(path: str) -> ModuleType:
    """The cell rules logged with a model version, loaded under a name of their own (their
    digest), so versions with different rules never share a module."""
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    name = f"sluice_cells_{digest}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


def table_rows(data) -> int:
    """Rows of a DataFrame, an Arrow table or a dict of column lists."""
    if isinstance(data, dict):
        return len(next(iter(data.values()))) if data else 0
    if isinstance(data, pa.Table):
        return data.num_rows
    return len(data)


def column_names(data) -> list[str]:
    """Column names of a DataFrame, an Arrow table or a dict of column lists."""
    if isinstance(data, pa.Table):
        return list(data.column_names)
    return [str(name) for name in data.keys()]


# Object columns whose cells Arrow converts without changing any of them.
_ONE_TYPE = frozenset({"string", "empty", "floating", "integer", "mixed-integer-float", "boolean"})


def column_values(data, name: str, small: bool) -> list | pa.Array:
    """One column as the cell readers take it: a list of cells for a few rows, else an Arrow
    array (a list when pandas holds mixed Python objects that Arrow cannot type)."""
    if isinstance(data, dict):
        values = data[name]
        return list(values) if small or not isinstance(values, pa.Array) else values
    if isinstance(data, pa.Table):
        column = data.column(name)
        return column.to_pylist() if small else column.combine_chunks()
    series = data[name]
    if small:
        return series.tolist()
    # Arrow would coerce mixed Python objects (False beside 0.0 becomes 0.0): such columns
    # are read cell by cell, as small batches are.
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) not in _ONE_TYPE:
        return series.tolist()
    try:
        values = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return series.tolist()
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


# Warning kinds that flag a row: the cell was present and the model could not read it as
# trained, so it took the missing-value branch. Cells read the same way by another route
# (numbers_read_with_other_grouping, dates_read_in_another_format) do not flag, and neither do
# levels read as "other": rare training levels were trained as "other", and the spec cannot
# tell them from unseen ones (flagging them would mark every row of a long-tailed column).
FLAG_KINDS = (
    "not_numeric_treated_as_missing",
    "unseen_categories_treated_as_missing",
    "unreadable_dates_treated_as_missing",
)


def feature_matrix(data, spec: dict, rules: ModuleType) -> tuple[np.ndarray, dict]:
    """The float32 matrix the booster was trained on, reading input columns by name, and
    per-column counts of cells that could not be read as the spec says."""
    matrix, counts, _ = read_features(data, spec, rules)
    return matrix, counts


def read_features(data, spec: dict, rules: ModuleType) -> tuple[np.ndarray, dict, dict]:
    """`feature_matrix`, plus the rows to flag: {column: (kind, mask)} for the columns with
    cells in FLAG_KINDS."""
    names = set(column_names(data))
    missing = [item["name"] for item in spec["inputs"] if item["name"] not in names]
    if missing:
        raise MissingColumnsError(missing)
    n_rows = table_rows(data)
    small = n_rows <= SMALL_ROWS
    matrix = np.empty((n_rows, len(spec["feature_names"])), dtype=np.float32)
    counts: dict[str, dict[str, int]] = {}
    flags: dict[str, tuple[str, np.ndarray]] = {}
    position = 0

    def note(kind: str, name: str, count: int) -> None:
        if count:
            counts.setdefault(kind, {})[name] = count

    def flag(kind: str, name: str, count: int, rows: np.ndarray) -> None:
        """Count a kind of FLAG_KINDS, and keep its rows."""
        note(kind, name, count)
        if count:
            flags[name] = (kind, rows)

    with np.errstate(over="ignore"):  # beyond float32 becomes inf, then missing (below)
        for item in spec["inputs"]:
            name = item["name"]
            values = column_values(data, name, small)
            if item["kind"] == "numeric":
                fmt = rules.NumberFormat.from_dict(item.get("number_format"))
                numbers = rules.read_numbers(values, fmt)
                flag(
                    "not_numeric_treated_as_missing",
                    name,
                    numbers.unreadable,
                    numbers.unreadable_rows,
                )
                note("numbers_read_with_other_grouping", name, numbers.regrouped)
                matrix[:, position] = numbers.values
                position += 1
            elif item["kind"] == "categorical":
                index = _category_index(item)
                other = len(item["categories"]) if item.get("other") else None
                read = rules.read_categories(values, index, other)
                column, unseen, rows = read.codes, read.unseen, read.unseen_rows
                if other is None:
                    flag("unseen_categories_treated_as_missing", name, unseen, rows)
                else:
                    note("rare_or_unseen_categories_read_as_other", name, unseen)
                matrix[:, position] = column
                position += 1
            else:
                dates = rules.read_date_cells(values, item["date_formats"])
                note("dates_read_in_another_format", name, dates.other_format)
                flag(
                    "unreadable_dates_treated_as_missing",
                    name,
                    dates.unreadable,
                    dates.unreadable_rows,
                )
                for column in rules.date_parts(dates.stamps, item["parts"]):
                    matrix[:, position] = column
                    position += 1
    # Finite numbers beyond float32's range carry no usable signal.
    matrix[np.isinf(matrix)] = np.nan
    return matrix, counts, flags


_INDEXES: dict[int, tuple[list, dict]] = {}
_INDEXES_MAX = 4096  # bounded: a long-lived trainer loads many versions over its life


def _category_index(item: dict) -> dict[str, int]:
    """Level -> code for a categorical input, built once per spec item."""
    categories = item["categories"]
    entry = _INDEXES.get(id(categories))
    if entry is None or entry[0] is not categories:
        if len(_INDEXES) >= _INDEXES_MAX:
            _INDEXES.pop(next(iter(_INDEXES)))  # the oldest
        entry = _INDEXES[id(categories)] = (categories, {c: i for i, c in enumerate(categories)})
    return entry[1]


class SluiceModel(mlflow.pyfunc.PythonModel):
    """Feature handling and booster in one servable model."""

    def __init__(self, booster: xgb.Booster | None = None, spec: dict | None = None, rules=None):
        self.booster = booster
        self.spec = spec
        self.rules = rules
        self.profile: dict | None = None
        self._parallel_booster: xgb.Booster | None = None

    def use_threads(self, small: int = 1, large: int = 0) -> None:
        """Score small batches on `small` OpenMP threads and large ones on `large` (0: all).

        One thread suits single rows served side by side (waking a thread team costs more than
        the prediction); a large batch is faster on every core.
        """
        parallel = self.booster.copy()
        parallel.set_param({"nthread": large})
        self.booster.set_param({"nthread": small})
        self._parallel_booster = parallel

    def load_context(self, context) -> None:
        """Load the booster, feature spec and cell rules from the model's artifacts."""
        booster = xgb.Booster()
        booster.load_model(context.artifacts[BOOSTER_ARTIFACT])
        with open(context.artifacts[SPEC_ARTIFACT], encoding="utf-8") as handle:
            self.spec = json.load(handle)
        self.rules = load_rules(context.artifacts[RULES_ARTIFACT])
        self.profile = None
        if PROFILE_ARTIFACT in context.artifacts:
            with open(context.artifacts[PROFILE_ARTIFACT], encoding="utf-8") as handle:
                self.profile = json.load(handle)
        self.booster = booster
        self._parallel_booster = None

    @property
    def classes(self) -> list[str] | None:
        """Class labels in the order of probability columns (None for regression)."""
        return self.spec.get("classes")

    @property
    def required_columns(self) -> list[str]:
        """Input columns the model reads."""
        return [item["name"] for item in self.spec["inputs"]]

    def score_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and class probabilities for a prepared feature matrix."""
        booster = self.booster
        if self._parallel_booster is not None and len(matrix) >= PARALLEL_ROWS:
            booster = self._parallel_booster
        raw = booster.inplace_predict(matrix)
        classes = self.classes
        if classes is None:
            return raw.astype("float64"), None
        if raw.ndim == 1:  # binary: probability of the second class
            proba = np.column_stack([1.0 - raw, raw])
        else:
            proba = raw
        labels = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
        return labels, proba

    def score_frame(self, data) -> Scored:
        """Score raw cells (a DataFrame, an Arrow table or a dict of column lists) whose
        columns are matched by name; extra columns are ignored."""
        matrix, warnings, flags = read_features(data, self.spec, self.rules)
        predictions, proba = self.score_matrix(matrix)
        required = set(self.required_columns)
        ignored = [name for name in column_names(data) if name not in required]
        return Scored(predictions, proba, ignored, warnings, matrix, flags)

    def predict(self, context, model_input, params=None):
        """pyfunc entry point: predictions, or class probabilities with params={"proba": True}."""
        data = model_input
        if not isinstance(data, (pd.DataFrame, pa.Table, dict)):
            data = pd.DataFrame(data)
        scored = self.score_frame(data)
        if params and params.get("proba") and scored.probabilities is not None:
            return pd.DataFrame(scored.probabilities, columns=[str(c) for c in self.classes])
        return scored.predictions  # a flat array: the scoring server answers a flat list


# Models-from-code: MLflow runs this file at load time and serves the object set here.
mlflow.models.set_model(SluiceModel())
