"""Fixtures of the console's tests: a stand-in trainer and preprocess apps that call it."""

from __future__ import annotations

import pytest

from preprocess import create_app
from tests.preprocess.console_standin import StandInTrainer


@pytest.fixture(scope="module")
def trainer():
    stand_in = StandInTrainer()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def make_client(trainer, tmp_path):
    """A console client of a preprocess app with `config` (the stand-in as its trainer)."""
    trainer.requests.clear()

    def make(**config):
        app = create_app(
            {
                "TRAINER_URL": trainer.url,
                "SLUICE_INTERNAL_TOKEN": "internal",
                "ADMISSION_DIR": str(tmp_path / "slots"),
                "CONSOLE_RESULTS_DIR": str(tmp_path / "results"),
                **config,
            }
        )
        return app.test_client()

    return make
