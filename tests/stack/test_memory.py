"""Flat memory: many dev runs leave the trainer's memory and state directory where they were."""

from __future__ import annotations

import os

import pytest

from testkit.procmem import group_rss
from testkit.stack import LocalStack, post_csv
from tests.datasets import iris, to_csv

RUNS = 40
WARMUP = 10
# What 30 more runs may add: allocator noise, not a model or a download kept per run (each
# model here is ~1 MB loaded; keeping them all would add well over this).
MARGIN_MB = 60


@pytest.fixture(scope="module")
def lone(tmp_path_factory):
    local = LocalStack(home=str(tmp_path_factory.mktemp("sluice-memory")))
    local.start()
    yield local
    local.stop()


def test_many_dev_runs_keep_the_trainer_flat(lone):
    body = to_csv(iris())
    query = to_csv(iris().drop(columns="target").head(3))
    trainer_group = lone.pid("trainer")
    samples = []
    for run in range(RUNS):
        promote = "always" if run % 2 else "auto"
        dev = post_csv(lone.analyze_url, body, phase="dev", model="flat", promote=promote)
        assert dev.status_code == 200, dev.text
        served = post_csv(lone.analyze_url, query, phase="prod", model="flat")
        assert served.status_code == 200, served.text
        if run + 1 in (WARMUP, RUNS):
            samples.append(group_rss({"trainer": trainer_group})["trainer"])
    grown = (samples[1] - samples[0]) / 2**20
    print(f"trainer RSS after {WARMUP} and {RUNS} dev runs: {[s // 2**20 for s in samples]} MiB")
    assert grown < MARGIN_MB, f"trainer grew {grown:.0f} MiB over {RUNS - WARMUP} dev runs"
    models = os.path.join(lone.home, "trainer", "models")
    copies = [
        os.path.join(folder, version)
        for folder in os.listdir(models)
        if not folder.startswith(".")
        for version in os.listdir(os.path.join(models, folder))
    ]
    assert len(copies) <= 3, copies  # the champion, the newest challenger, the last served
