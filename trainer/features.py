"""Decide how each input column becomes features (pure; fitted on training rows only)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from pandas.tseries.api import guess_datetime_format

from trainer.sluice_model import DATE_PARTS, TIME_PARTS, canonical_text, text_keys

ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|index)$|^(id|uuid|guid)([_\s.-]|$)", re.I)
ID_UNIQUE_SHARE = 0.95
MIN_ROWS_FOR_ID = 20
DATE_SHARE = 0.95
# XGBoost refuses feature names with [ ] or <; the spec keeps the real column names.
_XGB_UNSAFE = str.maketrans({"[": "(", "]": ")", "<": "‹"})


def _looks_like_id(values: pd.Series, name: str, numeric: bool) -> bool:
    present = values.dropna()
    if len(present) < MIN_ROWS_FOR_ID:
        return False
    unique = present.nunique()
    if not numeric:
        return unique >= ID_UNIQUE_SHARE * len(present)
    if unique < len(present):
        return False
    as_float = present.to_numpy(dtype="float64")
    if not np.all(np.mod(as_float, 1) == 0):
        return False
    steps = np.diff(np.sort(as_float))
    return bool(ID_NAME.search(name)) or bool(np.all(steps == 1))


def _date_format(values: pd.Series) -> str | None:
    """The strftime format of a text column of dates, or None when it is not one."""
    sample = values.dropna().astype("object").iloc[:1000]
    if sample.empty or sample.map(lambda v: any(ch.isdigit() for ch in str(v))).mean() < 0.9:
        return None
    fmt = guess_datetime_format(str(sample.iloc[0]))
    if fmt is None:
        return None
    parsed = pd.to_datetime(sample, format=fmt, errors="coerce", utc=True)
    return fmt if parsed.notna().mean() >= DATE_SHARE else None


def _date_spec(name: str, values: pd.Series, fmt: str) -> dict:
    parsed = pd.to_datetime(values.dropna().astype("object"), format=fmt, errors="coerce", utc=True)
    has_time = bool(((parsed.dt.hour != 0) | (parsed.dt.minute != 0)).any())
    parts = list(DATE_PARTS) + (list(TIME_PARTS) if has_time else [])
    return {"name": name, "kind": "datetime", "date_format": fmt, "parts": parts}


def _category_counts(values: pd.Series) -> dict[str, int]:
    """How often each category key occurs (keys as the served model computes them)."""
    keys = text_keys(values)
    if keys is not None:  # Arrow's kernels: ~10x faster on large text columns
        counted = pc.value_counts(keys.drop_null())
        return dict(
            zip(
                counted.field("values").to_pylist(),
                counted.field("counts").to_pylist(),
                strict=True,
            )
        )
    return canonical_text(values).value_counts(dropna=True).to_dict()


def _categories(values: pd.Series, max_categories: int) -> tuple[list[str], int]:
    """Most frequent categories first (ties by text); how many rarer ones were left out."""
    counts = _category_counts(values)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [str(key) for key, _ in ordered[:max_categories]]
    return kept, max(0, len(ordered) - max_categories)


def fit_feature_spec(frame: pd.DataFrame, target: str, max_categories: int = 1000) -> dict:
    """How every non-target column is used or why it is dropped."""
    inputs, dropped = [], []
    for name in frame.columns:
        if name == target:
            continue
        values = frame[name]
        numeric = pd.api.types.is_numeric_dtype(values.dtype)
        present = int(values.notna().sum())
        if present == 0:
            dropped.append({"name": name, "reason": "all values missing"})
        elif values.nunique(dropna=True) <= 1:
            dropped.append({"name": name, "reason": "constant: a single distinct value"})
        elif numeric:
            if _looks_like_id(values, name, numeric=True):
                dropped.append({"name": name, "reason": "id-like: unique integers in every row"})
            else:
                inputs.append({"name": name, "kind": "numeric"})
        elif (fmt := _date_format(values)) is not None:
            inputs.append(_date_spec(name, values, fmt))
        elif _looks_like_id(values, name, numeric=False):
            unique = values.nunique(dropna=True)
            dropped.append(
                {"name": name, "reason": f"id-like: {unique} distinct values in {present} rows"}
            )
        else:
            categories, left_out = _categories(values, max_categories)
            item = {"name": name, "kind": "categorical", "categories": categories}
            if left_out:
                item["rare_categories_as_missing"] = left_out
            inputs.append(item)
    feature_names = []
    for item in inputs:
        if item["kind"] == "datetime":
            names = [f"{item['name']}__{part}" for part in item["parts"]]
        else:
            names = [item["name"]]
        for name in names:
            safe = name.translate(_XGB_UNSAFE)
            while safe in feature_names:
                safe += "_"
            feature_names.append(safe)
    return {"inputs": inputs, "dropped": dropped, "feature_names": feature_names}


def feature_types(spec: dict) -> list[str]:
    """XGBoost feature types, 'c' for categorical and 'q' for numeric, per matrix column."""
    types = []
    for item in spec["inputs"]:
        if item["kind"] == "categorical":
            types.append("c")
        elif item["kind"] == "datetime":
            types += ["q"] * len(item["parts"])
        else:
            types.append("q")
    return types
