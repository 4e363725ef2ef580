"""The challenger against the champion: schema change, fairness, and the paired comparison on
rows neither model was trained on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from trainer.fit.metrics import row_losses
from trainer.lifecycle.promotion import (
    GateConfig,
    compare,
    schema_difference,
    schema_of,
    split_mismatch,
)
from trainer.pipeline.stages import TrainedModel

# Warnings that mean a model could not read a cell (unseen levels are not: a challenger may
# fairly know levels the champion never saw).
UNREADABLE_WARNINGS = ("not_numeric_treated_as_missing", "unreadable_dates_treated_as_missing")


def _unreadable(warnings: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in UNREADABLE_WARNINGS:
        for name, count in warnings.get(kind, {}).items():
            counts[name] = counts.get(name, 0) + count
    return counts


def champion_comparison(
    trained: TrainedModel, champion, metric: str, gate: GateConfig
) -> tuple[str | None, str | None, object]:
    """Schema change, unfairness, and the paired comparison on the rows neither model was
    trained on (the challenger's validation rows that the champion's split also held out).

    The comparison is computed whenever the champion predicts the same target, task and
    classes and can score those rows, so a schema change is refused with the numbers too.
    """
    ours, theirs_schema = schema_of(trained.spec), schema_of(champion.spec)
    schema_change = schema_difference(ours, theirs_schema)
    unfair = split_mismatch(trained.spec.get("split"), champion.spec.get("split"))
    validation = trained.validation
    needed = set(champion.required_columns)
    # Scores compare only for the same target, task and classes (in the same order): a
    # champion predicting another column, or other classes, has no loss on these labels.
    same_question = all(ours[key] == theirs_schema[key] for key in ("target", "task", "classes"))
    if unfair is not None or not same_question or not needed <= set(validation.table.column_names):
        return schema_change, unfair, None
    shared = validation.keys < float(champion.spec["split"]["fraction"])
    rows = np.flatnonzero(shared)
    table = validation.table.take(pa.array(rows, type=pa.int64()))
    scored = champion.score_frame(table)
    theirs = row_losses(trained.task, validation.y[rows], scored.predictions, scored.probabilities)
    comparison = compare(metric, validation.losses[rows], theirs, gate)
    if schema_change is None:
        # Cells the champion cannot read but the challenger can (say, a re-export with other
        # number formats) would make the champion lose for the file's sake, not the model's.
        theirs_bad = _unreadable(scored.warnings)
        ours_bad = _unreadable(trained.model.score_frame(table).warnings)
        excess = {
            n: c - ours_bad.get(n, 0) for n, c in theirs_bad.items() if c > ours_bad.get(n, 0)
        }
        if sum(excess.values()) > max(1, 0.01 * len(rows)):
            names = ", ".join(f"{name!r} ({count})" for name, count in sorted(excess.items()))
            unfair = (
                f"it cannot read cells of the comparison rows that the challenger reads "
                f"({names}): the upload writes values another way than the champion's did"
            )
    return schema_change, unfair, comparison
