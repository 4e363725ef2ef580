"""The reference profile of a model version and the counts of a batch (pure numpy).

One counting rule, `batch_counts`, makes both the reference (the training rows) and every
prod batch's counts, from the feature matrix the booster sees. Counts are plain integers, so
they add up across batches, workers and replicas (`merge_counts`).

Per monitored column (a numeric input, a categorical input, each part of a date input):
- numeric: counts in right-closed bins between decile edges of the training values, counts on
  a finer quantile grid (for a KS-style distance), missing cells, values outside the training
  range;
- categorical: counts of the most frequent training levels, of all other known levels, of
  levels the model never saw, and missing cells.
The prediction has its own: predicted classes, or the regression output binned like a numeric
column (edges from the validation predictions); a classifier's score (the probability of the
second class, or the top probability for more classes) is binned like a numeric column too,
so a shift in confidence shows even when the predicted classes barely move.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from trainer.monitoring.quality import loss_summary

PROFILE_VERSION = 1
NUMERIC_BINS = 10  # deciles: the usual PSI binning
GRID_POINTS = 50  # quantiles of the KS-style grid
TOP_LEVELS = 30  # categorical levels kept by name; the rest count together
# Beyond this many columns, the most important ones (the booster's total gain) are monitored:
# the profile stays tens of KB and a batch's counts cost well under a millisecond.
MAX_COLUMNS = 100
OTHER_LEVELS = "other levels"
UNSEEN = "unseen"
# With a rare-level group, the model reads rare training levels and new ones alike (neither is
# among its kept levels), so they share one bin.
RARE_OR_UNSEEN = "rare or unseen"


def monitored_columns(spec: dict) -> list[tuple[str, str, int, dict]]:
    """(name, kind, matrix column, spec item) per monitored column; date parts are numeric
    and named `<column>.<part>` (with `_` added until the name is unique: an upload may have
    its own column of that name)."""
    columns, position = [], 0
    for item in spec["inputs"]:
        if item["kind"] == "datetime":
            for part in item["parts"]:
                columns.append((f"{item['name']}.{part}", "numeric", position, item))
                position += 1
        else:
            columns.append((item["name"], item["kind"], position, item))
            position += 1
    inputs = {item["name"] for item in spec["inputs"] if item["kind"] != "datetime"}
    used, unique = set(), []
    for name, kind, position, item in columns:
        if item["kind"] == "datetime":
            while name in used or name in inputs:
                name += "_"
        used.add(name)
        unique.append((name, kind, position, item))
    return unique


def _numeric_part(values: np.ndarray) -> dict:
    """Decile edges and the finer grid of a column's present training values.

    The grid holds every decile edge, a point just below the minimum and the maximum, so one
    pass of a batch over the grid gives the decile bins (sums of grid bins), the KS-style
    distance, and the values outside the training range (the grid's first and last bins).
    """
    present = values[~np.isnan(values)]
    if not len(present):
        return {"kind": "numeric", "edges": [], "grid": [], "min": None, "max": None}
    points = np.arange(1, GRID_POINTS) / GRID_POINTS
    quantiles = np.quantile(present.astype("float64"), points).astype(values.dtype)
    step = GRID_POINTS // NUMERIC_BINS
    edges = np.unique(quantiles[step - 1 :: step])
    low, high = present.min(), present.max()
    below = np.nextafter(low, np.array(-np.inf, dtype=values.dtype))
    grid = np.unique(np.concatenate([[below], quantiles, [high]]))
    return {
        "kind": "numeric",
        "edges": [float(edge) for edge in edges],
        "grid": [float(point) for point in grid],
        "min": float(low),
        "max": float(high),
    }


def _categorical_part(codes: np.ndarray, levels: list[str], has_other: bool) -> dict:
    """Top training levels by frequency; every other code (rare levels' group too) maps to
    OTHER_LEVELS. `bin_of_code[code]` is the bin of a code."""
    n_codes = len(levels) + (1 if has_other else 0)
    present = codes[~np.isnan(codes)].astype("int64")
    frequency = np.bincount(present, minlength=n_codes)
    top = [int(code) for code in np.argsort(-frequency, kind="stable")[:TOP_LEVELS]]
    top = [code for code in top if code < len(levels)]  # the rare group is not a level
    bin_of_code = np.full(n_codes, len(top), dtype="int64")
    bin_of_code[top] = np.arange(len(top))
    bins = [levels[code] for code in top]
    if len(top) < n_codes:
        bins.append(OTHER_LEVELS)
    return {
        "kind": "categorical",
        "bins": bins + [RARE_OR_UNSEEN if has_other else UNSEEN],
        "bin_of_code": bin_of_code.tolist(),
        "other_code": len(levels) if has_other else None,
    }


def build_profile(
    spec: dict,
    train_matrix: np.ndarray,
    valid_predictions: np.ndarray,
    valid_proba: np.ndarray | None,
    metrics: dict,
    primary: str,
    gain: dict[int, float] | None = None,
    train_warnings: dict | None = None,
    valid_losses: np.ndarray | None = None,
) -> dict:
    """The reference profile of a model: its training rows' counts per monitored column,
    its validation predictions' counts, and the validation metrics as the baseline.

    `gain` is each matrix column's total gain in the booster (to choose which columns to
    monitor when there are more than MAX_COLUMNS); `train_warnings` what the model reported
    reading the training rows (its counts of levels outside its kept ones), so the reference
    is counted exactly as a batch of those rows would be; `valid_losses` the validation rows'
    per-row losses (log loss, or squared error), whose spread gives the baseline's standard
    error (without them, live quality falls back on the live rows' spread)."""
    columns = monitored_columns(spec)
    skipped = []
    if len(columns) > MAX_COLUMNS:
        gain = gain or {}
        ranked = sorted(columns, key=lambda c: (-gain.get(c[2], 0.0), c[2]))
        kept = {c[2] for c in ranked[:MAX_COLUMNS]}
        skipped = [c[0] for c in columns if c[2] not in kept]
        columns = [c for c in columns if c[2] in kept]
    features = []
    for name, kind, position, item in columns:
        values = train_matrix[:, position]
        if kind == "numeric":
            part = _numeric_part(values)
        else:
            part = _categorical_part(values, item["categories"], bool(item.get("other")))
        features.append({"name": name, "column": position, **part})
    classes = spec.get("classes")
    if classes is None:
        prediction = _numeric_part(np.asarray(valid_predictions, dtype="float64"))
    else:
        prediction = {
            "kind": "categorical",
            "bins": [str(c) for c in classes] + [UNSEEN],
            "bin_of_code": list(range(len(classes))),
            "other_code": None,
        }
    scores = prediction_scores(classes, valid_proba)
    profile = {
        "profile_version": PROFILE_VERSION,
        "task": spec["task"],
        "target": spec["target"],
        "classes": classes,
        "target_number_format": spec.get("target_number_format"),
        "features": features,
        "prediction": prediction,
        "prediction_score": None if scores is None else _numeric_part(scores),
        "baseline": dict(metrics),
        # The baseline loss's mean, per-row standard deviation and row count: its own noise.
        "baseline_loss": None if valid_losses is None else loss_summary(spec["task"], valid_losses),
        "primary": primary,
        "rows": int(len(train_matrix)),
        "validation_rows": int(len(valid_predictions)),
        "not_monitored": {"count": len(skipped), "columns": skipped[:50]},
    }
    profile["reference"] = batch_counts(
        profile,
        train_matrix,
        train_warnings or {},
        _prediction_values(profile, valid_predictions, valid_proba),
        scores=scores,
    )
    return profile


class Compiled:
    """A profile's grids and lookups as numpy arrays (and lists, for a few rows), built once
    per loaded version."""

    def __init__(self, profile: dict):
        self.features = []
        for part in profile["features"]:
            self.features.append((part["name"], part["column"], _compile(part)))
        self.prediction = _compile(profile["prediction"], np.float64)
        self.few = [(n, c, _as_lists(part)) for n, c, part in self.features]
        self.few_prediction = _as_lists(self.prediction)
        score = profile.get("prediction_score")
        self.score = None if score is None else _compile(score, np.float64)
        self.few_score = None if score is None else _as_lists(self.score)


def _as_lists(part: tuple) -> tuple:
    return tuple(item.tolist() if isinstance(item, np.ndarray) else item for item in part)


def _compile(part: dict, dtype=np.float32) -> tuple:
    if part["kind"] == "numeric":
        # In the values' own type (searchsorted across types is slower). Grid points of a
        # float32 column are float32 values, so nothing is rounded.
        return ("numeric", np.asarray(part["grid"], dtype=dtype))
    lookup = np.asarray(part["bin_of_code"] + [len(part["bins"])], dtype="int64")
    return ("categorical", lookup, len(part["bins"]), part["other_code"])


def _count_numeric_few(values: list[float], grid: list[float]) -> dict:
    """`_count_numeric` for a few rows, in plain Python (numpy's per-call cost would be most
    of a single-row request): the same bins, bisect instead of sorting."""
    on_grid = [0] * (len(grid) + 1)
    n_missing = 0
    for value in values:
        if value != value:
            n_missing += 1
        else:
            on_grid[bisect_left(grid, value)] += 1
    return {"grid": on_grid, "missing": n_missing}


def _count_categorical_few(codes: list[float], lookup: list[int], n_bins, other_code, unseen):
    """`_count_categorical` for a few rows, in plain Python."""
    counts = [0] * (n_bins + 1)
    for code in codes:
        counts[lookup[-1] if code != code else lookup[int(code)]] += 1
    n_missing = counts[-1]
    if other_code is None:
        n_missing -= unseen
    else:
        counts[lookup[other_code]] -= unseen
    counts[n_bins - 1] += unseen
    return {"bins": counts[:-1], "missing": n_missing}


def _count_numeric(values: np.ndarray, grid: np.ndarray) -> dict:
    """Counts on the grid: bin j holds values in (grid[j-1], grid[j]]; the last, values
    above the maximum. Missing cells are counted apart.

    By sorting the values and placing the grid among them: a binary search of every value
    in the grid is ~10x slower for large batches."""
    ordered = np.sort(values)  # NaN last
    has_missing = len(ordered) and np.isnan(ordered[-1])
    n_missing = int(np.count_nonzero(np.isnan(ordered))) if has_missing else 0
    at_or_below = np.searchsorted(ordered, grid, side="right")
    on_grid = np.diff(at_or_below, prepend=0, append=len(values) - n_missing)
    return {"grid": on_grid.tolist(), "missing": n_missing}


def numeric_bins(part: dict, counts: dict) -> list[int]:
    """Decile-bin counts from grid counts (every decile edge is a grid point)."""
    grid, edges = part["grid"], part["edges"]
    if not grid:
        return [sum(counts["grid"])]
    to_decile = np.searchsorted(edges, grid + [np.inf])
    summed = np.bincount(to_decile, weights=counts["grid"], minlength=len(edges) + 1)
    return [int(round(value)) for value in summed]


def out_of_range(counts: dict) -> int:
    """Values below the training minimum or above its maximum (every present value, for a
    column that had none in training)."""
    grid = counts["grid"]
    return int(grid[0] + grid[-1]) if len(grid) > 1 else int(sum(grid))


def _count_categorical(codes: np.ndarray, lookup, n_bins, other_code, unseen: int) -> dict:
    """Codes are the model's (NaN: missing, or unseen when the model has no rare group);
    `unseen` is how many cells were levels the model never saw, as the model counted them."""
    missing = np.isnan(codes)
    index = np.where(missing, len(lookup) - 1, codes).astype("int64")
    counts = np.bincount(lookup[index], minlength=n_bins + 1)
    n_missing = int(counts[-1])
    if other_code is None:
        n_missing -= unseen  # unseen cells became missing codes
    else:
        counts[lookup[other_code]] -= unseen  # unseen cells took the rare group's code
    counts[n_bins - 1] += unseen
    return {"bins": counts[:-1].tolist(), "missing": n_missing}


def prediction_scores(classes, proba) -> np.ndarray | None:
    """A classifier's score per row: P(second class) for two classes, else the top
    probability; None for regression."""
    if classes is None or proba is None:
        return None
    proba = np.asarray(proba, dtype="float64")
    return proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)


def _prediction_values(profile: dict, predictions, proba) -> np.ndarray:
    """What the prediction counts are made of: class indexes, or regression outputs."""
    if profile["classes"] is None:
        return np.asarray(predictions, dtype="float64")
    return np.argmax(proba, axis=1).astype("float64")


CONTIGUOUS_ROWS = 2048
FEW_ROWS = 16  # up to here, counted in plain Python (the same bins)
# The model's per-column counts of levels it could not read as one of its kept levels. The
# first key is the old name of the second (versions trained before the rename still emit it):
# both mean levels not kept at training, unseen or rare, read as the "other" level.
UNSEEN_KEYS = (
    "unseen_categories_treated_as_rare",
    "rare_or_unseen_categories_read_as_other",
    "unseen_categories_treated_as_missing",
)


def batch_counts(
    profile: dict,
    matrix: np.ndarray,
    warnings: dict,
    prediction_values: np.ndarray,
    compiled: Compiled | None = None,
    scores: np.ndarray | None = None,
) -> dict:
    """Additive counts of one batch, per monitored column and for the prediction.

    `warnings` are the model's per-column counts of what it could not read as trained (its
    count of unseen levels is the only one used here)."""
    compiled = compiled or Compiled(profile)
    unseen = {}
    for key in UNSEEN_KEYS:
        unseen.update(warnings.get(key, {}))
    if len(matrix) <= FEW_ROWS:
        counts = _few_counts(compiled, matrix, unseen, prediction_values)
        if compiled.few_score is not None and scores is not None:
            values = np.asarray(scores, dtype="float64").tolist()
            counts["prediction_score"] = _count_numeric_few(values, compiled.few_score[1])
        return counts
    features = {}
    if len(matrix) >= CONTIGUOUS_ROWS:
        # One copy of the monitored columns, each contiguous: every pass below reads a column.
        columns = np.ascontiguousarray(matrix[:, [c for _, c, _ in compiled.features]].T)
    else:
        columns = None
    for i, (name, column, part) in enumerate(compiled.features):
        values = matrix[:, column] if columns is None else columns[i]
        if part[0] == "numeric":
            features[name] = _count_numeric(values, *part[1:])
        else:
            features[name] = _count_categorical(values, *part[1:], unseen.get(name, 0))
    prediction = compiled.prediction
    if prediction[0] == "numeric":
        predicted = _count_numeric(prediction_values, *prediction[1:])
    else:
        predicted = _count_categorical(prediction_values, *prediction[1:], 0)
    counts = {"rows": int(len(matrix)), "features": features, "prediction": predicted}
    if compiled.score is not None and scores is not None:
        counts["prediction_score"] = _count_numeric(
            np.asarray(scores, dtype="float64"), compiled.score[1]
        )
    return counts


def _few_counts(compiled: Compiled, matrix, unseen: dict, prediction_values) -> dict:
    rows = matrix.tolist()
    features = {}
    for name, column, part in compiled.few:
        values = [row[column] for row in rows]
        if part[0] == "numeric":
            features[name] = _count_numeric_few(values, part[1])
        else:
            features[name] = _count_categorical_few(values, *part[1:], unseen.get(name, 0))
    prediction = compiled.few_prediction
    values = np.asarray(prediction_values, dtype="float64").tolist()
    if prediction[0] == "numeric":
        predicted = _count_numeric_few(values, prediction[1])
    else:
        predicted = _count_categorical_few(values, *prediction[1:], 0)
    return {"rows": len(rows), "features": features, "prediction": predicted}


def merge_counts(total: dict | None, counts: dict) -> dict:
    """`total` plus `counts` (a new dict when total is None; else total, updated)."""
    if total is None:
        return _copy(counts)
    total["rows"] += counts["rows"]
    for name, part in counts["features"].items():
        mine = total["features"].get(name)
        if mine is None:
            total["features"][name] = _copy(part)
        else:
            _add(mine, part)
    for key in ("prediction", "prediction_score"):
        if not counts.get(key):
            continue
        if total.get(key) is None:
            total[key] = _copy(counts[key])
        else:
            _add(total[key], counts[key])
    return total


def _copy(value):
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


def _add(mine: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, list):
            current = mine.get(key)
            if current is None:
                mine[key] = list(value)
                continue
            if len(current) != len(value):
                raise ValueError(f"counts of different shapes for {key!r}")
            mine[key] = [a + b for a, b in zip(current, value, strict=True)]
        else:
            mine[key] = mine.get(key, 0) + value
