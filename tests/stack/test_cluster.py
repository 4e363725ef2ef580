"""Training and batch scoring on a real Dask cluster: a scheduler and two workers started with
distributed's CLI on loopback (testkit/dask_cluster.py), the real local stack pointed at it. The
cluster is a stock one: no Sluice checkout on its path, so Sluice's code travels with the work.

Oracles: the single-machine path on the same files (same rules, another mechanism), the same
rows uploaded synchronously, and pandas reading the files.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import requests

from testkit.dask_cluster import DaskCluster
from testkit.stack import LocalStack, post_csv, wait_job
from trainer.pipeline import cluster, shipping
from trainer.pipeline.training import TrainingConfig, train_model
from trainer.sources import by_reference
from trainer.sources import files as datasource
from trainer.sources.files import DataSettings


class Context:
    """What a job's work is given, outside a job."""

    job_id = "test"
    cancelled = False

    def __init__(self):
        self.stages = []

    def progress(self, **values):
        if "stage" in values:
            self.stages.append(values["stage"])

    report = progress

    def check(self):
        pass


def table(n: int, seed: int, regions) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(regions, n)
    size = np.round(rng.gamma(3, 30, n), 1)
    built = pd.Timestamp("1990-01-01") + pd.to_timedelta(rng.integers(0, 10_000, n), "D")
    price = 1000 + 12 * size + (region == "north") * 300 + rng.normal(0, 80, n)
    frame = pd.DataFrame(
        {
            "listing_id": np.arange(n) + seed * 1_000_000,
            "region": region,
            "size": size.astype(str),
            "built": built.strftime("%Y-%m-%d"),
            "price": np.round(price, 2),
        }
    )
    frame.loc[rng.random(n) < 0.01, "size"] = "about 50"  # unreadable cells, counted
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Four CSV files and a Parquet one; 'east' only in some; whole rows repeated across files."""
    root = tmp_path_factory.mktemp("cluster-data")
    (root / "houses").mkdir()
    (root / "out").mkdir()
    frames = [
        table(3000, 1, ["north", "south", "east"]),
        table(3000, 2, ["north", "south"]),
        table(2000, 3, ["north", "south", "east", "west"]),
    ]
    frames.append(pd.concat([frames[0].iloc[:300], frames[1].iloc[:200]]))  # copies elsewhere
    for index, frame in enumerate(frames):
        frame.to_csv(root / "houses" / f"part-{index}.csv", index=False)
    extra = table(1500, 4, ["south", "west"])
    extra.to_parquet(root / "houses" / "part-4.parquet")
    frames.append(extra)
    return str(root), frames


@pytest.fixture(scope="module")
def dask(files):
    root, _ = files
    with DaskCluster(
        n_workers=2, memory_limit="1GiB", env={"SLUICE_DATA_ROOT": root}, stock=True
    ) as running:
        yield running


@pytest.fixture(scope="module")
def dask_stack(tmp_path_factory, files, dask):
    root, _ = files
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("dask-home")),
        extra_env={"SLUICE_DATA_ROOT": root, "DASK_SCHEDULER_ADDRESS": dask.address},
    )
    local.start()
    yield local
    local.stop()


def test_the_workers_have_no_sluice_code_of_their_own(dask):
    """First in the module: before any job ships Sluice's code to the cluster, the worker
    processes fail to import it; a new interpreter like theirs fails at any time."""

    def fresh_import(name: str) -> str:
        """On a worker: import name in a new interpreter with the worker's executable,
        environment and cwd; its stderr. (Nested: sent by value, tests/ is not there.)"""
        command = [sys.executable, "-c", f"import {name}"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60).stderr

    with dask.client() as client:
        for address in dask.worker_addresses:
            future = client.submit(importlib.import_module, "trainer", workers=[address])
            with pytest.raises(ModuleNotFoundError, match="trainer"):
                future.result(timeout=30)
            for name in ("trainer", "sluice_common"):
                stderr = client.submit(fresh_import, name, workers=[address], pure=False).result(
                    timeout=90
                )
                assert f"No module named '{name}'" in stderr
            assert client.submit(sum, [1, 2], workers=[address]).result(timeout=30) == 3
        with pytest.raises(ModuleNotFoundError, match="trainer"):
            client.run_on_scheduler(importlib.import_module, "trainer")


def test_the_cluster_applies_the_single_machine_rules(files, dask):
    root, frames = files
    settings = DataSettings(root=root)
    found = datasource.resolve_files("houses/", settings)
    assert [f.name for f in found] == [
        f"houses/part-{i}.{'parquet' if i == 4 else 'csv'}" for i in range(5)
    ]
    config = TrainingConfig()
    context = Context()
    on_cluster = cluster.train_on_cluster(
        dask.address, found, settings, "price", "auto", config, context
    )
    assert "training" in context.stages
    whole, _ = by_reference.read_all(found, settings, Context())
    alone = train_model(whole, "price", "auto", config)

    assert on_cluster.spec == alone.spec  # kinds, formats, levels (all four regions), split
    assert on_cluster.n_train == alone.n_train and on_cluster.n_valid == alone.n_valid
    # The same rows held out: copies of a row across files get the keys one machine gives.
    assert np.array_equal(np.sort(on_cluster.validation.keys), np.sort(alone.validation.keys))
    for name in ("rows_in", "rows_out", "dropped_rows", "unreadable_treated_as_missing"):
        assert on_cluster.report[name] == alone.report[name], name
    # Independent counts: pandas over the files as written.
    every = pd.concat(frames).astype(str)
    assert on_cluster.report["duplicate_rows"] == int(every.duplicated().sum()) == 500
    assert on_cluster.report["unreadable_treated_as_missing"] == {
        "size": int((every["size"] == "about 50").sum())
    }
    # Quality within noise of the single-machine model (another booster implementation path).
    assert abs(on_cluster.metrics["rmse"] - alone.metrics["rmse"]) < 0.05 * alone.metrics["rmse"]
    assert on_cluster.metrics["r2"] > 0.9
    assert on_cluster.report["cluster"]["workers"] == 2
    # The code that ran: this trainer's, as it shipped it, on the scheduler and each worker.
    shipped = f"sluice-code-{shipping.bundle()[0]}{os.sep}trainer{os.sep}__init__.py"
    where = lambda: sys.modules["trainer"].__file__  # noqa: E731
    with dask.client() as client:
        places = [client.run_on_scheduler(where), *client.run(where).values()]
    assert len(places) == 3 and all(p.endswith(shipped) for p in places), places


def test_train_and_score_by_reference_on_the_cluster(files, dask_stack, model_name):
    root, frames = files
    base = dask_stack.url("preprocess")
    accepted = requests.post(
        dask_stack.analyze_url,
        params={"phase": "dev", "data_uri": "houses/", "target": "price", "model": model_name},
        timeout=30,
    )
    job = wait_job(base, accepted)
    assert job["state"] == "succeeded", job
    answer = job["answer"]
    assert answer["engine"]["kind"] == "dask" and answer["version"] == "1"
    assert job["progress"]["rounds_done"] >= 1
    assert answer["cleaning"]["rows_in"] == sum(len(f) for f in frames)

    accepted = requests.post(
        dask_stack.analyze_url,
        params={
            "phase": "prod",
            "data_uri": "houses/*.csv",
            "output_uri": "out/prices.csv",
            "key": "listing_id",
            "model": model_name,
        },
        timeout=30,
    )
    job = wait_job(base, accepted)
    assert job["state"] == "succeeded", job
    assert job["answer"]["engine"]["kind"] == "dask"
    written = pd.read_csv(os.path.join(root, "out", "prices.csv"))
    csv_frames = frames[:4]
    assert len(written) == sum(len(f) for f in csv_frames) == job["answer"]["n_rows"]
    for index, frame in enumerate(csv_frames):
        mine = written[written["file"] == f"houses/part-{index}.csv"]
        assert mine["row"].tolist() == list(range(len(frame)))
        assert mine["listing_id"].tolist() == frame["listing_id"].tolist()
    # Scored on a worker as the trainer scores an upload of the same rows.
    upload = csv_frames[2].drop(columns=["price"]).to_csv(index=False).encode()
    sync = post_csv(dask_stack.analyze_url, upload, phase="prod", model=model_name).json()
    mine = written[written["file"] == "houses/part-2.csv"]
    assert np.allclose(mine["prediction"], sync["predictions"], rtol=1e-6)
    monitoring = requests.get(base + "/monitoring", params={"model": model_name}, timeout=30)
    # Every partition is a monitoring batch; the upload is one more.
    assert monitoring.json()["rows_scored"] == len(written) + len(csv_frames[2])
    assert monitoring.json()["batches"] == 4 + 1


def test_a_worker_killed_mid_job_fails_the_job_clearly(files, dask, dask_stack, model_name):
    root, _ = files
    folder = os.path.join(root, "many")
    os.makedirs(folder)
    for index in range(6):
        table(40_000, 30 + index, ["north", "south", "east"]).to_csv(
            os.path.join(folder, f"p{index}.csv"), index=False
        )
    base = dask_stack.url("preprocess")
    accepted = requests.post(
        dask_stack.analyze_url,
        params={"phase": "dev", "data_uri": "many/", "target": "price", "model": model_name},
        timeout=30,
    )
    assert accepted.status_code == 202
    location = base + accepted.headers["Location"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = requests.get(location, timeout=30).json()
        if job["state"] != "queued" and job["progress"].get("stage") in (
            "splitting",
            "fitting features",
            "training",
        ):
            break
        time.sleep(0.2)
    assert job["state"] == "running", job
    dask.kill_worker(1)
    try:
        job = wait_job(base, accepted, timeout=300)  # never hung: finished within the bound
        # Dask recomputes lost partitions on the other worker (a retry), or the job fails
        # with a reason; it never hangs as "running".
        if job["state"] == "failed":
            assert job["error"]["code"] in ("cluster_worker_lost", "cluster_training_failed")
            assert "worker" in job["error"]["message"] or "cluster" in job["error"]["message"]
            prod = post_csv(
                dask_stack.analyze_url,
                b"region,size,built\nnorth,50,2000-01-01\n",
                phase="prod",
                model=model_name,
            )
            assert prod.status_code == 404  # nothing registered
        else:
            assert job["state"] == "succeeded", job
    finally:
        dask.start_worker(1)
