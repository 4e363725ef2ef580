"""An example Airflow DAG: retrain a Sluice model from its labelled prod rows, wait for the job,
and check the promotion gate's decision (docs/retraining.md).

Every task is a plain function of this module, calling Sluice's public port with the standard
library only, so the functions run (and are tested) without Airflow; the DAG itself is built
only where Airflow is installed. Settings, from the environment of the Airflow workers:
SLUICE_URL (the public port, default http://127.0.0.1:8050), SLUICE_API_TOKEN (sent as a
bearer token when set) and SLUICE_MODEL (default "default").

Copy this file into Airflow's dags/ folder. Training a first version is `train(csv_path)`,
usually a one-off; the DAG runs the retrain every day.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime

FINISHED = ("succeeded", "failed", "cancelled")


class SluiceError(RuntimeError):
    """Sluice answered with an error (its code and message), or a job did not succeed."""


def _base(base_url: str | None) -> str:
    return (base_url or os.environ.get("SLUICE_URL") or "http://127.0.0.1:8050").rstrip("/")


def _call(method: str, url: str, body: bytes | None = None, content_type: str | None = None):
    """(status, JSON answer) of one request; SluiceError on an error answer."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    token = os.environ.get("SLUICE_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            error = json.loads(err.read()).get("error", {})
        except ValueError:
            error = {}
        raise SluiceError(
            f"{method} {url}: {err.code} {error.get('code', '')}: {error.get('message', '')}"
        ) from err


def train(csv_path: str, model: str | None = None, base_url: str | None = None) -> dict:
    """Train a version on a CSV file (phase=dev); the dev answer (a job's, when queued)."""
    model = model or os.environ.get("SLUICE_MODEL", "default")
    boundary = uuid.uuid4().hex
    with open(csv_path, "rb") as handle:
        data = handle.read()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="data_file"; '
            f'filename="{os.path.basename(csv_path)}"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    query = urllib.parse.urlencode({"phase": "dev", "model": model})
    status, answer = _call(
        "POST",
        f"{_base(base_url)}/analyze?{query}",
        body,
        f"multipart/form-data; boundary={boundary}",
    )
    if status == 202:
        return wait_for_job(answer["location"], base_url)
    return answer


def retrain(model: str | None = None, base_url: str | None = None) -> str:
    """Start a retrain of the model; the job's location (/jobs/<id>)."""
    model = model or os.environ.get("SLUICE_MODEL", "default")
    name = urllib.parse.quote(model, safe="")
    _, answer = _call("POST", f"{_base(base_url)}/models/{name}/retrain")
    return answer["location"]


def wait_for_job(
    location: str, base_url: str | None = None, timeout: float = 3600, poll: float = 2.0
) -> dict:
    """Follow a job until it finishes; its answer. SluiceError when it failed or was
    cancelled, TimeoutError when it runs past `timeout` seconds (the job keeps running)."""
    deadline = time.monotonic() + timeout
    while True:
        _, job = _call("GET", f"{_base(base_url)}{location}")
        if job["state"] in FINISHED:
            if job["state"] != "succeeded":
                error = job.get("error", {}).get("error", job.get("error", {}))
                raise SluiceError(f"job {location} {job['state']}: {error}")
            return job["answer"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {location} still {job['state']} after {timeout:.0f} s")
        time.sleep(poll)


def check_decision(answer: dict, require_promotion: bool = False) -> dict:
    """What the gate decided about the retrained version, in a few fields; with
    `require_promotion`, SluiceError when the version was not promoted (the task fails, and
    Airflow shows why)."""
    summary = {
        "model": answer["model"],
        "version": answer["version"],
        "promoted": answer["promoted"],
        "reason": answer["reason"],
        "champion_version": answer["champion_version"],
        "rows": answer.get("data", {}).get("rows"),
    }
    if require_promotion and not answer["promoted"]:
        raise SluiceError(f"v{answer['version']} was not promoted: {answer['reason']}")
    return summary


try:  # Airflow is needed only to build the DAG, not to run or test the functions above.
    from airflow import DAG
    from airflow.operators.python import PythonOperator
except ImportError:
    DAG = None

if DAG is not None:
    with DAG(
        dag_id="sluice_retrain",
        schedule="@daily",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["sluice"],
    ) as dag:
        start = PythonOperator(task_id="retrain", python_callable=retrain)
        wait = PythonOperator(
            task_id="wait_for_job",
            python_callable=wait_for_job,
            op_kwargs={"location": "{{ ti.xcom_pull(task_ids='retrain') }}"},
        )
        decide = PythonOperator(
            task_id="check_decision",
            python_callable=lambda ti: check_decision(ti.xcom_pull(task_ids="wait_for_job")),
        )
        start >> wait >> decide
