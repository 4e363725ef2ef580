"""The knobs of a dev run (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    """Knobs for a training run; defaults suit most tabular data."""

    seed: int = 42
    validation_fraction: float = 0.2
    early_stopping_fraction: float = 0.15
    learning_rate: float = 0.1
    max_depth: int = 6
    max_rounds: int = 1000
    early_stopping_rounds: int = 100
    # The refit on every training row (trainer/fit/booster.py::refit_rounds) up to this many
    # training rows: on bench.quality's real tables (263-4,870 rows) it lowered the loss on 4
    # of 6; from 16k rows on (bench.floor_data, bench.data) it changed nothing beyond the
    # noise and cost ~2/3 of the early-stopped fit again.
    refit_max_rows: int = 10_000
    max_categories: int = 1000
    min_category_rows: int = 5
    nthread: int = 0
