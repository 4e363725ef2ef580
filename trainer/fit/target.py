"""The target column read once at training time: task, labels or values (pure; no Flask)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.choices import TASKS
from sluice_common.errors import ApiError
from trainer.fit.features import Distinct, distinct_of, fit_number_format
from trainer.model import sluice_cells as cells

MAX_CLASSES = 200


@dataclass
class Target:
    """The target column read as labels (classification) or numbers (regression)."""

    task: str
    reason: str
    y: np.ndarray  # class codes or values, per kept row
    classes: list[str] | None
    number_format: dict | None
    keep: np.ndarray  # rows whose target was read


def _first_unreadable(distinct: Distinct, result: dict) -> str:
    bad = np.flatnonzero(result["bad"])
    return str(distinct.values[int(bad[0])].as_py()) if len(bad) else ""


def read_target(column: pa.Array, name: str, requested: str, prefer_comma: bool) -> Target:
    """Classification or regression (with the reason), and the target read accordingly.

    A target is numeric when one number convention reads at least 95% of its values, as for
    feature columns; the rows whose target it cannot read are dropped and counted. A numeric
    target with few distinct integers, every value readable, is a set of classes. Classes
    of one row each (a date or an id picked as the target) are refused.
    """
    read = _read_target(column, name, requested, prefer_comma)
    if read.task == "classification":
        check_repeated_classes(read.y, name)
    return read


def check_repeated_classes(codes: np.ndarray, name: str) -> None:
    """Refuse a target in which every class has a single row: no class can be learned, and
    such a target is almost always the wrong column (a date, an id, free text)."""
    counts = np.bincount(codes.astype("int64")) if len(codes) else np.zeros(0, "int64")
    if len(counts) and counts.max() <= 1:
        raise ApiError(
            error_codes.NO_REPEATED_CLASSES,
            f"The target {name!r} has {len(codes)} rows and {len(codes)} distinct values: "
            "every class has a single row, so no class can be learned (is it a date, an id "
            "or free text?). Name the column to predict with target=NAME (without it the "
            "target is the column named 'target', else the last column).",
            rows=int(len(codes)),
            distinct_values=int(len(codes)),
        )


def _read_target(column: pa.Array, name: str, requested: str, prefer_comma: bool) -> Target:
    if requested not in TASKS:
        raise ApiError(
            error_codes.INVALID_TASK, f"task must be one of {', '.join(TASKS)}; got {requested!r}."
        )
    distinct = distinct_of(column)
    number = fit_number_format(distinct, prefer_comma, share=0.0)
    all_numeric = number is not None and number["unreadable"] == 0
    mostly_numeric = number is not None and number["unreadable"] <= 0.05 * distinct.total
    n_distinct = len(distinct.counts)
    if requested == "regression" and not mostly_numeric:
        example = _first_unreadable(distinct, number) if number else ""
        raise ApiError(
            error_codes.TARGET_NOT_NUMERIC,
            f"Regression needs a numeric target; {name!r} has values like {example!r}. "
            "Use task=classification or pick another target.",
        )
    if requested == "regression" or (requested == "auto" and mostly_numeric):
        fmt = number["format"]
        values = cells.read_numbers(column, fmt).values
        # XGBoost keeps labels as float32: beyond its range a target cannot be learned.
        values[np.abs(values) > np.finfo(np.float32).max] = np.nan
        read = values[~np.isnan(values)]
        n_distinct = len(np.unique(read))  # 1 and 1.0 are one value
        if requested == "auto":
            integral = bool(np.all(np.mod(read, 1) == 0))
            few = n_distinct <= 2 or (n_distinct <= 20 and n_distinct * 5 <= len(read))
            if integral and few:
                if not all_numeric:  # codes with some text among them: all of it labels
                    return classes_of(
                        column, name, f"target has text values ({len(distinct.counts)} distinct)"
                    )
                return classes_of(column, name, f"integer target with {n_distinct} distinct values")
            reason = (
                f"integer target with {n_distinct} distinct values (too many for classes)"
                if integral
                else "target has continuous numeric values"
            )
        else:
            reason = "requested with task=regression"
        keep = ~np.isnan(values)
        return Target("regression", reason, values[keep], None, fmt.to_dict(), keep)
    if requested == "classification":
        return classes_of(column, name, "requested with task=classification")
    if number is not None and n_distinct > 20 and number["unreadable"] <= 0.5 * distinct.total:
        # Mostly numbers among text: as classes, nearly every value would be a class of its
        # own (a 150-class model of one row each), and too few are numbers for regression.
        share = 1 - number["unreadable"] / distinct.total
        raise ApiError(
            error_codes.AMBIGUOUS_TARGET,
            f"{name!r} is {share:.0%} numbers and the rest text (such as "
            f"{_first_unreadable(distinct, number)!r}): clean the column so that its values "
            "are numbers (at least 95%) or labels, or set task=classification to keep every "
            "distinct value as a class.",
        )
    return classes_of(column, name, f"target has text values ({n_distinct} distinct)")


def classes_of(column: pa.Array, name: str, reason: str) -> Target:
    """The classes rule: labels as category keys (text as written, numbers written one way),
    at least two and at most MAX_CLASSES of them; codes by label order (numbers first)."""
    labels = cells.category_keys(column)
    positions, distinct = pd.factorize(labels)  # missing labels (None) at -1
    present = sorted((key for key in distinct if key is not None), key=_label_order)
    if len(present) < 2:
        raise ApiError(
            error_codes.SINGLE_CLASS,
            f"The target {name!r} has a single value ({present[0]!r}); "
            "classification needs at least two classes.",
        )
    if len(present) > MAX_CLASSES:
        raise ApiError(
            error_codes.TOO_MANY_CLASSES,
            f"The target has {len(present)} distinct values; at most {MAX_CLASSES} classes are "
            "supported. Use task=regression for a numeric target.",
        )
    index = {label: code for code, label in enumerate(present)}
    # Each distinct label looked up once; the last entry is the missing labels' (-1).
    codes = np.array([index.get(label, -1) for label in distinct] + [-1], dtype="float64")
    codes = codes[positions]
    keep = codes >= 0
    return Target("classification", reason, codes[keep], present, None, keep)


def _label_order(label: str):
    """Numeric labels sort by value, text labels as text (numbers first)."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def labels_of(spec: dict, column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A target column read the way a model reads its target: class codes (or values), and
    which rows were readable (known class, or a number in the target's format)."""
    if spec["task"] == "regression":
        fmt = cells.NumberFormat.from_dict(spec.get("target_number_format"))
        values = cells.read_numbers(column, fmt).values
        # XGBoost keeps labels as float32: beyond its range a target cannot be learned.
        values[np.abs(values) > np.finfo(np.float32).max] = np.nan
        return values, ~np.isnan(values)
    index = {label: code for code, label in enumerate(spec["classes"])}
    distinct, positions = cells.distinct_cells(column)
    codes = np.array(
        [index.get(cells.category_key(value), -1) for value in distinct] + [-1], dtype="float64"
    )[positions]
    return codes, codes >= 0
