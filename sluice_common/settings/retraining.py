"""The trainer's retraining settings (docs/retraining.md), declared."""

from __future__ import annotations

from sluice_common.settings import Setting


def _retraining(name, type_, default, meaning, **more) -> Setting:
    return Setting(name, type_, default, meaning, ("trainer",), "Retraining", **more)


RETRAINING_SETTINGS = [
    _retraining(
        "TRAINING_ROWS_MAX_MB",
        float,
        256.0,
        (
            "the largest training table (MB of Arrow in memory) a version keeps in the artifact "
            "store for retraining; larger ones are not kept, and the version and dev answer say "
            "so (0: none kept)"
        ),
        env_example=True,
    ),
    _retraining(
        "PROD_ROWS_KEPT",
        int,
        1_000_000,
        (
            "prod rows whose cells (the columns the champion reads) are kept so that labels "
            "sent to /feedback can retrain; beyond it the oldest batches' cells go (0: none kept)"
        ),
        env_example=True,
    ),
    _retraining(
        "RETRAIN_AFTER_LABELS",
        int,
        0,
        "retrain a model when this many labels arrived since its last retrain (0: off)",
        env_example=True,
    ),
    _retraining(
        "RETRAIN_ON_ALERT",
        bool,
        False,
        (
            "retrain a model when its monitoring status is `alert` as labels arrive or "
            "/monitoring is read, if labels arrived since its last retrain"
        ),
        env_example=True,
    ),
]
