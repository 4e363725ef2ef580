"""The served model: fitted feature handling + XGBoost booster as one MLflow pyfunc.

This file is logged with every model ("models from code") and must stay self-contained:
it imports only numpy, pandas, xgboost and mlflow, so `mlflow models serve` and
`mlflow.pyfunc.load_model` run it without the Sluice packages. Nothing in it is pickled:
the booster is XGBoost's own UBJSON and the feature spec is JSON.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb

BOOSTER_ARTIFACT = "booster"
SPEC_ARTIFACT = "feature_spec"
# Currency signs, % and thousands separators around numbers (as in sluice_common.cleaning;
# copied because this file must stay self-contained).
NUMBER_NOISE = r"^[\$€£¥]|%$|(?<=\d)[,'_ ](?=\d{3}(?:\D|$))"
NOISE = re.compile(NUMBER_NOISE)
# What pd.to_numeric reads (as in sluice_common.cleaning): sign, decimal/exponent, inf.
NUMBER = re.compile(
    r"[ \t\n\r\f\v]*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity)[ \t\n\r\f\v]*",
    re.IGNORECASE | re.ASCII,
)
WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
# Up to this many rows, scoring converts cells in plain Python: pandas' per-call overhead
# (~0.1 ms) would dominate a single-row request.
SMALL_ROWS = 64
# From this many rows a batch is scored on every core (when use_threads() was called).
PARALLEL_ROWS = 10_000
DATE_PARTS = ("year", "month", "day", "weekday", "dayofyear", "days_since_epoch")
TIME_PARTS = ("hour", "minute")


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


def canonical_text(values: pd.Series) -> pd.Series:
    """Category keys: text stripped, numbers written one way ("1", "1.0", 1.0 -> "1")."""
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_object_dtype(values.dtype):
        # Booleans count as the numbers 1 and 0, as pd.to_numeric reads them in bool columns.
        values = values.astype("object").map(
            lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v
        )
    present = values.notna().to_numpy(dtype=bool)
    is_text = pd.api.types.is_string_dtype(values.dtype)
    if is_text and not pd.api.types.is_object_dtype(values.dtype) and len(values) >= 1024:
        # Vectorised strip, and to_numeric only where a digit (or 'inf') could make a number:
        # the per-cell lambda and to_numeric on words cost ~0.2 s per 100k cells (and the
        # regex ~0.2 ms per call, hence not for small batches).
        text = values.str.strip(WHITESPACE).to_numpy(dtype=object, na_value=None)
        maybe = values.str.contains(r"\d|inf", case=False, regex=True)
        maybe = maybe.fillna(False).to_numpy(dtype=bool)
    else:
        text = values.astype("object").to_numpy(dtype=object, copy=True)
        text[~present] = None
        if not pd.api.types.is_numeric_dtype(values.dtype):
            text = np.array(
                [v.strip(WHITESPACE) if isinstance(v, str) else v for v in text], dtype=object
            )
        maybe = present
    numbers = np.full(len(values), np.nan)
    if maybe.any():
        subset = values.iloc[np.flatnonzero(maybe)]
        numbers[maybe] = pd.to_numeric(subset, errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
    is_number = ~np.isnan(numbers)
    if is_number.any():
        nums = numbers[is_number]
        with np.errstate(invalid="ignore"):  # inf % 1 is NaN: not integral, as wanted
            integral = (np.mod(nums, 1) == 0) & (np.abs(nums) < 1e15)
        formatted = np.where(
            integral,
            np.char.mod("%d", np.where(integral, nums, 0).astype("int64")),
            nums.astype(str),
        )
        text[is_number] = formatted
    return pd.Series(text, index=values.index, dtype=object)


def _as_float(values: pd.Series) -> tuple[np.ndarray, int]:
    """Numeric values as float64, non-numbers as NaN, and how many present values failed."""
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan), 0
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    retry = (numbers.isna() & values.notna()).to_numpy()
    if retry.any():
        text = values[retry].astype(str).str.strip(WHITESPACE)
        text = text.str.replace(NUMBER_NOISE, "", regex=True)
        numbers[retry] = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64")
    numbers = numbers.to_numpy(dtype="float64", na_value=np.nan)
    failed = int(values.notna().sum() - np.count_nonzero(~np.isnan(numbers)))
    return numbers, failed


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(value) -> float:
    """pd.to_numeric(errors="coerce") of one value: NaN when it is not a number."""
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str) and NUMBER.fullmatch(value):
        return float(value)
    return math.nan


def _as_float_small(cells: list) -> tuple[np.ndarray, int]:
    """`_as_float` for a few values, in plain Python."""
    out, failed = np.empty(len(cells), dtype="float64"), 0
    for i, value in enumerate(cells):
        if _missing(value):
            out[i] = math.nan
            continue
        number = _number(value)
        if math.isnan(number) and not isinstance(value, float):
            text = NOISE.sub("", str(value).strip(WHITESPACE))
            number = float(text) if NUMBER.fullmatch(text) else math.nan
        failed += math.isnan(number)
        out[i] = number
    return out, failed


def _key(value) -> str | None:
    """`canonical_text` of one value."""
    if _missing(value):
        return None
    number = _number(value)
    if not math.isnan(number):
        if number % 1 == 0 and abs(number) < 1e15:
            return str(int(number))
        return str(np.float64(number))
    return value.strip(WHITESPACE) if isinstance(value, str) else value


_DERIVED: dict[tuple[int, str], tuple[list, object]] = {}


def _derived(categories: list[str], kind: str, build):
    """`build(categories)`, computed once per categories list (kept out of the logged spec)."""
    key = (id(categories), kind)
    entry = _DERIVED.get(key)
    if entry is None or entry[0] is not categories:
        entry = _DERIVED[key] = (categories, build(categories))
    return entry[1]


def text_keys(values: pd.Series) -> pa.Array | None:
    """`canonical_text` of a text column as an Arrow array, computed in C++ kernels; None when
    the column is not Arrow-backed text or a value reads as a number (use canonical_text)."""
    if not pd.api.types.is_string_dtype(values.dtype) or pd.api.types.is_object_dtype(values.dtype):
        return None
    trimmed = pc.utf8_trim(pa.array(values), WHITESPACE)
    numeric = pc.match_substring_regex(trimmed, f"^(?:{NUMBER.pattern})$", ignore_case=True)
    if pc.any(numeric).as_py():
        return None
    return trimmed


def _arrow_codes(values: pd.Series, categories: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Category codes (NaN where unknown) and presence for a large text column, in Arrow's
    C++ kernels; None when text_keys cannot be used (those take the exact pandas path)."""
    trimmed = text_keys(values)
    if trimmed is None:
        return None
    value_set = _derived(categories, "arrow", lambda cats: pa.array(cats, pa.string()))
    codes = pc.index_in(trimmed, value_set=value_set).to_numpy(zero_copy_only=False)
    present = pc.is_valid(trimmed).to_numpy(zero_copy_only=False)
    return codes.astype("float64"), present


def _category_index(categories: list[str]) -> dict[str, int]:
    """Category -> code, built once per categories list (kept out of the logged spec)."""
    return _derived(categories, "index", lambda cats: {c: i for i, c in enumerate(cats)})


def _date_columns(values: pd.Series, spec: dict) -> list[np.ndarray]:
    """Date parts as float columns; computed on datetime64 directly (pandas' .dt accessor
    costs ~0.2 ms a part, which dominates small batches)."""
    # utc=True: offsets may differ row to row; naive times are taken as UTC, as they were.
    cells = values if isinstance(values, list) else values.astype("object")
    parsed = pd.to_datetime(
        np.asarray(cells, dtype=object),
        format=spec.get("date_format"),
        errors="coerce",
        utc=True,
    ).tz_localize(None)
    stamps = parsed.to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(stamps)
    days = stamps.astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    day_count = days.astype("int64")
    minutes = (stamps - days).astype("timedelta64[m]").astype("int64")
    computed = {
        "year": stamps.astype("datetime64[Y]").astype("int64") + 1970,
        "month": months.astype("int64") % 12 + 1,
        "day": (days - months).astype("int64") + 1,
        "weekday": (day_count + 3) % 7,  # 1970-01-01 was a Thursday; Monday is 0
        "dayofyear": (days - stamps.astype("datetime64[Y]")).astype("int64") + 1,
        "hour": minutes // 60,
        "minute": minutes % 60,
        "days_since_epoch": stamps.astype("datetime64[s]").astype("int64") / 86400.0,
    }
    return [np.where(missing, np.nan, computed[part].astype("float64")) for part in spec["parts"]]


def table_rows(frame: pd.DataFrame | dict[str, list]) -> int:
    """Rows of a DataFrame or of a dict of column lists."""
    if isinstance(frame, dict):
        return len(next(iter(frame.values()))) if frame else 0
    return len(frame)


def feature_matrix(frame: pd.DataFrame | dict[str, list], spec: dict) -> tuple[np.ndarray, dict]:
    """The float32 matrix the booster was trained on, matching input columns by name.

    `frame` is a DataFrame or, for a few rows, a dict of column name -> list of cells (no
    DataFrame to build: pandas' per-call overhead dominates a single-row request).
    """
    inputs = spec["inputs"]
    missing = [item["name"] for item in inputs if item["name"] not in frame]
    if missing:
        raise MissingColumnsError(missing)
    n_rows = table_rows(frame)
    small = n_rows <= SMALL_ROWS
    if isinstance(frame, dict) and not small:
        frame = pd.DataFrame(frame)
    matrix = np.empty((n_rows, len(spec["feature_names"])), dtype=np.float32)
    coerced, unseen = {}, {}
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, then missing (below)
        _fill(matrix, frame, inputs, small, coerced, unseen)
    # Infinities, and finite numbers beyond float32's range, carry no usable signal.
    matrix[np.isinf(matrix)] = np.nan
    warnings = {}
    if coerced:
        warnings["not_numeric_treated_as_missing"] = coerced
    if unseen:
        warnings["unseen_categories_treated_as_missing"] = unseen
    return matrix, warnings


def _fill(matrix, frame, inputs, small, coerced, unseen) -> None:
    """Write each input's feature columns into the matrix, counting what was not usable."""
    position = 0
    for item in inputs:
        values = frame[item["name"]]
        if small and not isinstance(values, list):
            values = values.tolist()
        if item["kind"] == "numeric":
            column, failed = _as_float_small(values) if small else _as_float(values)
            if failed:
                coerced[item["name"]] = failed
            matrix[:, position] = column
            position += 1
        elif item["kind"] == "categorical":
            if small:
                index = _category_index(item["categories"])
                keys = [_key(value) for value in values]
                codes = np.array([index.get(key, -1) for key in keys], dtype="int64")
                present = np.array([key is not None for key in keys], dtype=bool)
            else:
                fast = _arrow_codes(values, item["categories"])
                if fast is not None:
                    codes, present = fast
                    codes = np.where(np.isnan(codes), -1, codes)
                else:
                    keys = canonical_text(values)
                    codes = pd.Categorical(keys, categories=item["categories"]).codes
                    present = keys.notna().to_numpy()
            n_unseen = int(np.count_nonzero(present & (codes < 0)))
            if n_unseen:
                unseen[item["name"]] = n_unseen
            matrix[:, position] = np.where(codes < 0, np.nan, codes)
            position += 1
        else:
            for column in _date_columns(values, item):
                matrix[:, position] = column
                position += 1


class SluiceModel(mlflow.pyfunc.PythonModel):
    """Feature handling and booster in one servable model."""

    def __init__(self, booster: xgb.Booster | None = None, spec: dict | None = None):
        self.booster = booster
        self.spec = spec
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
        """Load the booster and feature spec from the model's artifacts."""
        booster = xgb.Booster()
        booster.load_model(context.artifacts[BOOSTER_ARTIFACT])
        with open(context.artifacts[SPEC_ARTIFACT], encoding="utf-8") as handle:
            self.spec = json.load(handle)
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

    # score_frame takes a dict of column lists too (models logged before this took DataFrames).
    accepts_columns = True

    def score_frame(self, frame: pd.DataFrame | dict[str, list]) -> Scored:
        """Score a DataFrame (or a dict of column lists) whose columns are matched by name;
        extra columns are ignored."""
        matrix, warnings = feature_matrix(frame, self.spec)
        predictions, proba = self.score_matrix(matrix)
        required = set(self.required_columns)
        ignored = [c for c in frame.keys() if c not in required]
        return Scored(predictions, proba, ignored, warnings)

    def predict(self, context, model_input, params=None):
        """pyfunc entry point: predictions, or class probabilities with params={"proba": True}."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scored = self.score_frame(frame)
        if params and params.get("proba") and scored.probabilities is not None:
            return pd.DataFrame(scored.probabilities, columns=[str(c) for c in self.classes])
        return scored.predictions  # a flat array: the scoring server answers a flat list


# Models-from-code: MLflow runs this file at load time and serves the object set here.
mlflow.models.set_model(SluiceModel())
