"""Data by reference and jobs on the real local stack, without a cluster: the trainer reads the
files itself. Oracles: the same rows uploaded synchronously, and pandas reading the files."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import requests

from testkit.stack import LocalStack, post_csv, wait_job


def churn(n: int, seed: int, levels=("basic", "plus", "pro")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(list(levels), n)
    tenure = rng.integers(1, 72, n)
    charges = np.round(rng.normal(70, 20, n), 2)
    logit = -1 + 0.04 * (40 - tenure) + (plan == "basic") * 0.8 + 0.01 * (charges - 70)
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + seed * 100_000,
            "plan": plan,
            "tenure": tenure,
            "charges": charges,
            "churned": churned,
        }
    )


@pytest.fixture(scope="module")
def data_root(stack) -> str:
    return stack.env["SLUICE_DATA_ROOT"]


@pytest.fixture(scope="module")
def split_files(data_root):
    """Three CSV files of one table; the last lacks the level 'pro'."""
    folder = os.path.join(data_root, "churn")
    os.makedirs(folder, exist_ok=True)
    frames = [churn(1500, 1), churn(1500, 2), churn(1000, 3, levels=("basic", "plus"))]
    for index, frame in enumerate(frames):
        frame.to_csv(os.path.join(folder, f"part-{index}.csv"), index=False)
    return folder, frames


def test_dev_by_reference_trains_what_an_upload_of_the_same_rows_trains(
    stack, split_files, model_name
):
    folder, frames = split_files
    accepted = requests.post(
        stack.analyze_url,
        params={"phase": "dev", "data_uri": "churn/", "model": model_name, "target": "churned"},
        timeout=30,
    )
    job = wait_job(stack.url("preprocess"), accepted)
    assert job["state"] == "succeeded", job
    assert job["status"] == 200 and "running" in job["seen_states"] | {"running"}
    answer = job["answer"]
    assert answer["engine"] == {"kind": "trainer"}
    assert answer["cleaning"]["rows_in"] == 4000 and answer["cleaning"]["files"] == 3
    assert job["progress"]["rows_read"] == 4000

    whole = pd.concat(frames).to_csv(index=False).encode()
    uploaded = post_csv(
        stack.analyze_url, whole, phase="dev", model=model_name + "-up", target="churned"
    ).json()
    assert answer["metrics"] == uploaded["metrics"]
    assert answer["features"] == uploaded["features"]
    plan = next(f for f in answer["features"]["used"] if f["name"] == "plan")
    assert plan["levels"] == 3  # a level missing from one file is still a level


def test_prod_by_reference_writes_one_keyed_prediction_per_input_row(
    stack, split_files, data_root, model_name
):
    folder, frames = split_files
    trained = requests.post(
        stack.analyze_url,
        params={"phase": "dev", "data_uri": "churn/", "model": model_name, "target": "churned"},
        timeout=30,
    )
    assert wait_job(stack.url("preprocess"), trained)["state"] == "succeeded"
    os.makedirs(os.path.join(data_root, "out"), exist_ok=True)
    accepted = requests.post(
        stack.url("trainer") + "/ml",
        params={
            "phase": "prod",
            "data_uri": "churn/*.csv",
            "output_uri": f"out/{model_name}.parquet",
            "key": "customer_id",
            "model": model_name,
            "proba": "true",
        },
        timeout=30,
    )
    job = wait_job(stack.url("trainer"), accepted)
    assert job["state"] == "succeeded", job
    written = pd.read_parquet(os.path.join(data_root, "out", f"{model_name}.parquet"))
    expected = pd.concat(
        [f.assign(file=f"churn/part-{i}.csv", row=np.arange(len(f))) for i, f in enumerate(frames)]
    )
    assert len(written) == len(expected) == job["answer"]["n_rows"]
    assert written["file"].tolist() == expected["file"].tolist()
    assert written["row"].tolist() == expected["row"].tolist()
    assert written["customer_id"].astype(int).tolist() == expected["customer_id"].tolist()
    # The same rows uploaded: the same predictions (a row's prediction is its own).
    first = frames[0].drop(columns=["churned"]).to_csv(index=False).encode()
    sync = post_csv(stack.analyze_url, first, phase="prod", model=model_name, proba="true").json()
    mine = written[written["file"] == "churn/part-0.csv"]
    assert mine["prediction"].tolist() == sync["predictions"]
    assert np.allclose(mine["proba_yes"], np.asarray(sync["probabilities"])[:, 1], atol=1e-6)
    assert len(set(written["batch_id"])) == 3  # one monitoring batch per file

    again = requests.post(
        stack.analyze_url,
        params={
            "phase": "prod",
            "data_uri": "churn/",
            "output_uri": f"out/{model_name}.parquet",
            "model": model_name,
        },
        timeout=30,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "output_exists"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"phase": "dev", "data_uri": "../"}, 400, "outside_data_root"),
        ({"phase": "dev", "data_uri": "/etc/passwd"}, 400, "outside_data_root"),
        ({"phase": "dev", "data_uri": "churn/../../*"}, 400, "outside_data_root"),
        ({"phase": "dev", "data_uri": "escape/"}, 400, "outside_data_root"),
        ({"phase": "dev", "data_uri": "nothing-here/"}, 404, "no_data_files"),
        ({"phase": "dev", "data_uri": "churn/*.json"}, 404, "no_data_files"),
        ({"phase": "dev", "data_uri": "s3://someone-elses/data/"}, 403, "bucket_not_allowed"),
        ({"phase": "dev", "data_uri": "http://example.com/x.csv"}, 400, "unsupported_data_uri"),
        ({"phase": "prod", "data_uri": "churn/"}, 400, "missing_output_uri"),
        (
            {"phase": "prod", "data_uri": "churn/", "output_uri": "../x.csv"},
            400,
            "outside_data_root",
        ),
        (
            {"phase": "prod", "data_uri": "churn/", "output_uri": "out/x.json"},
            400,
            "invalid_output_uri",
        ),
        (
            {"phase": "prod", "data_uri": "churn/", "output_uri": "no-dir/x.csv"},
            400,
            "invalid_output_uri",
        ),
        ({"phase": "dev", "output_uri": "out/x.csv"}, 400, "output_uri_needs_data_uri"),
        ({"phase": "dev", "data_uri": "churn/", "async": "maybe"}, 400, "invalid_async"),
    ],
)
def test_bad_references_are_refused_at_once(stack, split_files, data_root, params, status, code):
    escape = os.path.join(data_root, "escape")
    if not os.path.lexists(escape):
        os.symlink("/etc", escape)  # a link inside the root that points out of it
    for url in (stack.analyze_url, stack.ml_url):
        answer = requests.post(url, params=params, timeout=30)
        assert answer.status_code == status, (url, answer.text)
        assert answer.json()["error"]["code"] == code


def test_data_uri_and_a_file_together_are_refused(stack, split_files):
    answer = post_csv(stack.analyze_url, b"a,b\n1,2\n", phase="dev", data_uri="churn/")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "data_uri_and_file"


def test_async_upload_is_a_job_with_the_synchronous_answer(stack, model_name):
    frame = churn(1500, 7)  # enough rows for its signal to show beyond the noise
    data = frame.to_csv(index=False).encode()
    accepted = post_csv(stack.analyze_url, data, phase="dev", model=model_name, **{"async": "true"})
    job = wait_job(stack.url("preprocess"), accepted)
    assert job["state"] == "succeeded", job
    assert job["answer"]["version"] == "1" and job["answer"]["promoted"] is True
    listed = requests.get(stack.url("preprocess") + "/jobs", timeout=30).json()["jobs"]
    assert job["job_id"] in [j["job_id"] for j in listed]
    assert all("answer" not in j for j in listed)
    # A prod job with proba=true (its probabilities a numpy array) has the synchronous answer.
    rows = frame.drop(columns="churned").head(40).to_csv(index=False).encode()
    query = dict(phase="prod", model=model_name, proba="true")
    synchronous = post_csv(stack.analyze_url, rows, **query)
    assert synchronous.status_code == 200, synchronous.text
    scored = wait_job(
        stack.url("preprocess"), post_csv(stack.analyze_url, rows, **query, **{"async": "true"})
    )
    assert scored["state"] == "succeeded", scored
    expected, answer = synchronous.json(), scored["answer"]
    assert expected.pop("batch_id") != answer.pop("batch_id")  # each batch is recorded
    assert answer == expected and len(answer["probabilities"]) == 40
    # Parses (so it becomes a job) but cannot be trained: the job fails with the 422.
    too_few = b"x,y\n1,a\n2,b\n"
    bad = post_csv(stack.analyze_url, too_few, phase="dev", model=model_name, **{"async": "1"})
    failed = wait_job(stack.url("preprocess"), bad)
    assert failed["state"] == "failed" and failed["status"] == 422
    assert failed["error"]["code"] == "too_few_rows"


def test_job_ids_are_checked(stack):
    base = stack.url("preprocess")
    assert requests.get(base + "/jobs/nope", timeout=10).json()["error"]["code"] == "invalid_job_id"
    missing = requests.get(base + "/jobs/" + "0" * 32, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    gone = requests.delete(base + "/jobs/" + "0" * 32, timeout=10)
    assert gone.status_code == 404


def test_a_cancelled_job_registers_nothing(stack, data_root, model_name):
    folder = os.path.join(data_root, "big-" + model_name)
    os.makedirs(folder)
    for index in range(4):
        churn(60_000, 10 + index).to_csv(os.path.join(folder, f"p{index}.csv"), index=False)
    accepted = requests.post(
        stack.analyze_url,
        params={"phase": "dev", "data_uri": os.path.basename(folder) + "/", "model": model_name},
        timeout=30,
    )
    job_url = stack.url("preprocess") + accepted.headers["Location"]
    time.sleep(0.5)
    cancel = requests.delete(job_url, timeout=30)
    assert cancel.status_code in (202, 409), cancel.text
    job = wait_job(stack.url("preprocess"), accepted)
    assert job["state"] == "cancelled", job
    assert job["error"]["code"] == "job_cancelled"
    again = requests.delete(job_url, timeout=30)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    prod = post_csv(
        stack.analyze_url, b"plan,tenure,charges\nbasic,3,50\n", phase="prod", model=model_name
    )
    assert prod.status_code == 404  # nothing was registered under the name


def test_jobs_cut_off_by_a_restart_are_failed_with_the_reason(tmp_path):
    root = tmp_path / "data"
    (root / "d").mkdir(parents=True)
    for index in range(4):
        churn(60_000, 20 + index).to_csv(root / "d" / f"p{index}.csv", index=False)
    local = LocalStack(
        home=str(tmp_path / "home"),
        extra_env={"SLUICE_DATA_ROOT": str(root), "JOBS_UPLOAD_MB": "0.01"},
    )
    local.start()
    try:
        accepted = requests.post(
            local.analyze_url, params={"phase": "dev", "data_uri": "d/"}, timeout=30
        )
        assert accepted.status_code == 202
        # An upload above JOBS_UPLOAD_MB is a job too.
        upload = post_csv(
            local.analyze_url,
            churn(2000, 5).to_csv(index=False).encode(),
            phase="dev",
            model="second",
        )
        assert upload.status_code == 202
        time.sleep(1.0)
        # The trainer alone dies (a crash, an OOM kill: a graceful stop lets a job finish).
        trainer = local.pid("trainer")
        os.killpg(trainer, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while local.pid("trainer") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        local.start()
        for answer in (accepted, upload):
            job = requests.get(
                local.url("preprocess") + answer.headers["Location"], timeout=30
            ).json()
            assert job["state"] == "failed", job
            assert job["error"]["code"] == "job_interrupted"
            assert "restarted" in job["error"]["message"]
    finally:
        local.stop()
