"""The XGBoost booster: its parameters, and the fit with early stopping then a refit (pure)."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from trainer.fit.config import TrainingConfig

# Column subsampling only for wide matrices: with few columns, 0.8 of them leaves trees that
# cannot see two columns together (2 columns: one per tree), so interactions go unlearned.
COLSAMPLE_MIN_COLUMNS = 10


def booster_params(task: str, n_classes: int, config: TrainingConfig, n_columns: int) -> dict:
    """XGBoost parameters for the task and the matrix width."""
    params = {
        "tree_method": "hist",
        "eta": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": 1,
        "subsample": 0.8,
        "colsample_bytree": 0.8 if n_columns >= COLSAMPLE_MIN_COLUMNS else 1.0,
        "max_cat_to_onehot": 4,
        "seed": config.seed,
        "nthread": config.nthread,
    }
    if task == "regression":
        params.update(objective="reg:squarederror", eval_metric="rmse")
    elif n_classes == 2:
        params.update(objective="binary:logistic", eval_metric="logloss")
    else:
        params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=n_classes)
    return params


def inner_split(keys: np.ndarray, validation: float, fraction: float):
    """Early-stopping rows among the training rows (keys at or above `validation`): the next
    `fraction` of the key range. Decided by the same keys as the split, so copies of a record
    are never on both sides of early stopping either (it would never stop)."""
    stop = keys < validation + fraction * (1 - validation)
    if stop.all() or not stop.any():  # a few rows: the lowest keys, at least one each side
        count = min(len(keys) - 1, max(1, round(fraction * len(keys))))
        stop = np.zeros(len(keys), dtype=bool)
        stop[np.argsort(keys, kind="stable")[:count]] = True
    return np.flatnonzero(~stop), np.flatnonzero(stop)


class RoundProgress(xgb.callback.TrainingCallback):
    """Reports each boosting round to `on_round(done, planned)`; a true answer stops
    training (a cancelled job)."""

    def __init__(self, on_round, planned: int):
        super().__init__()
        self.on_round = on_round
        self.planned = planned

    def after_iteration(self, model, epoch, evals_log) -> bool:
        return bool(self.on_round(epoch + 1, self.planned))


def fit(params, matrix, y, types, names, rounds, valid=None, early_stopping=None, on_round=None):
    # Feature names go on the booster after training, not on the matrices: XGBoost checks a
    # matrix's names against the booster's on every round, converting each name from C, which
    # made a 20,000-column upload spend most of its training time there.
    def dmatrix(x, label):
        return xgb.DMatrix(x, label=label, feature_types=types, enable_categorical=True)

    evals = [(dmatrix(*valid), "valid")] if valid is not None else []
    booster = xgb.train(
        params,
        dmatrix(matrix, y),
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping if evals else None,
        verbose_eval=False,
        callbacks=[RoundProgress(on_round, rounds)] if on_round else None,
    )
    booster.feature_names = names
    return booster


def refit_rounds(best_rounds: int, n_train: int, config: TrainingConfig) -> int | None:
    """Rounds of a refit on every training row, or None to keep the early-stopped booster.

    Small data (at most `refit_max_rows` training rows): every training row counts, so refit
    on all of them with the rounds found, scaled for the larger sample. Above it, the 15% of
    rows early stopping watched add nothing measurable, and a refit would train twice."""
    if n_train > config.refit_max_rows:
        return None
    return max(1, round(best_rounds / (1 - config.early_stopping_fraction)))


def boost(train, n_train: int, config: TrainingConfig):
    """The booster, its rounds and whether it was refit: early stopping, then a refit or the
    best rounds kept.

    `train(rows, rounds, early_stopping)` trains on the fit rows with the stop rows watched
    (rows="fit"), or on every training row (rows="train"), in memory or on a cluster."""
    booster = train("fit", config.max_rounds, config.early_stopping_rounds)
    best_rounds = booster.best_iteration + 1
    rounds = refit_rounds(best_rounds, n_train, config)
    if rounds is None:
        return booster[:best_rounds], best_rounds, False
    return train("train", rounds, None), rounds, True
