"""Warm a trainer worker at start, so the first dev and prod answers are as fast as later ones.

Without it the first dev run of a worker paid ~1 s more than the next: MLflow builds a map of
every installed package the first time it logs a model (~0.6 s) and imports GitPython for a
run's context tags on the first run (~0.25 s), and the first training and scoring touch code
paths (XGBoost, the cell rules, the bootstrap) for the first time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from trainer.lifecycle import tracking_health

log = logging.getLogger(__name__)


def warm_frame(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """A small table with every kind of column the trainer reads, as text cells."""
    rng = np.random.default_rng(seed)
    number = rng.normal(size=rows)
    return pd.DataFrame(
        {
            "number": [f"{v:.3f}" for v in number],
            "category": rng.choice(["a", "b", "c"], size=rows),
            "date": [f"2024-01-{1 + i % 28:02d}" for i in range(rows)],
            "label": np.where(number > 0, "yes", "no"),
        }
    )


def warm_up(training_config) -> float:
    """Train and score a tiny model in process and build MLflow's package map; seconds taken.
    A failure here is logged and never stops the worker (requests then pay the cost)."""
    started = time.perf_counter()
    try:
        # Inside the try: an import that fails here is logged like any other warm-up failure.
        import mlflow.pyfunc  # noqa: F401 - imported on the first model log otherwise
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        from trainer.fit.metrics import PRIMARY_METRIC
        from trainer.lifecycle.promotion import GateConfig, compare
        from trainer.pipeline.training import train_model

        _init_packages_to_modules_map()  # private to MLflow; cached for the process after this
        resolve_tags()  # a run's context tags: imports GitPython and looks for a repository
        frame = warm_frame()
        trained = train_model(frame, "label", "auto", replace(training_config, max_rounds=5))
        trained.model.score_frame(frame.drop(columns="label"))
        validation = trained.validation
        compare(
            PRIMARY_METRIC[trained.task],
            validation.losses,
            validation.baseline_losses,
            GateConfig(resamples=50),
        )
    except Exception:  # noqa: BLE001 - warming is an optimisation, never a reason to fail
        log.exception("warm-up failed; the first requests will be slower")
    return time.perf_counter() - started


def warm_tracking(attempts: int = 60) -> threading.Thread:
    """In the background, sign in to the tracking server once it answers: its first check of a
    password is a PBKDF2 hash, and the first calls open connections. Never blocks the start."""

    def run():
        from mlflow import MlflowClient

        for _ in range(attempts):
            try:
                if tracking_health.reachable():  # its /health probe: quiet while the server starts
                    MlflowClient().search_experiments(max_results=1)
                    return
            except Exception as err:  # noqa: BLE001 - not up yet (local mode starts it alongside)
                if tracking_health.refuses_account(err):
                    log.error(
                        "the MLflow tracking server refuses the trainer's account: check "
                        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (dev answers 503)"
                    )
                    return
            time.sleep(1)

    thread = threading.Thread(target=run, name="warm-tracking", daemon=True)
    thread.start()
    return thread
