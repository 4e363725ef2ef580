"""The refit rule: small data is refit on every training row, larger data keeps the
early-stopped booster (trained once)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer.fit.booster import boost, refit_rounds
from trainer.fit.config import TrainingConfig


class _Booster(SimpleNamespace):
    def __getitem__(self, rounds: slice):
        return ("kept", rounds.stop)


def _boost(n_train: int, config: TrainingConfig):
    calls = []

    def train(rows, rounds, early_stopping):
        calls.append((rows, rounds, early_stopping))
        return _Booster(best_iteration=33) if rows == "fit" else ("refit", rounds)

    return boost(train, n_train, config), calls


def test_the_default_refits_up_to_ten_thousand_training_rows():
    config = TrainingConfig()
    assert config.refit_max_rows == 10_000
    assert refit_rounds(34, 10_000, config) == 40  # 34 / (1 - 0.15)
    assert refit_rounds(34, 10_001, config) is None


@pytest.mark.parametrize("n_train", [10, 4_000, 10_000])
def test_small_data_is_refit_on_every_training_row(n_train):
    (booster, rounds, refit), calls = _boost(n_train, TrainingConfig())
    assert calls == [("fit", 1000, 100), ("train", 40, None)]
    assert (booster, rounds, refit) == (("refit", 40), 40, True)


@pytest.mark.parametrize("n_train", [10_001, 80_000, 1_000_000])
def test_larger_data_keeps_the_early_stopped_booster_trained_once(n_train):
    (booster, rounds, refit), calls = _boost(n_train, TrainingConfig())
    assert calls == [("fit", 1000, 100)]
    assert (booster, rounds, refit) == (("kept", 34), 34, False)


def test_refit_max_rows_zero_never_refits():
    (_, rounds, refit), calls = _boost(50, TrainingConfig(refit_max_rows=0))
    assert len(calls) == 1 and rounds == 34 and refit is False
