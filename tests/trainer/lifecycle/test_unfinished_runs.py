"""A run cut off by a killed trainer is marked KILLED, with the reason, at the next start; a
run a live trainer is logging at that moment is not (trainer/lifecycle/unfinished_runs.py).

A stack of this module's own: the test SIGKILLs its trainer. A second trainer shares its
tracking server and its state directory (as the old processes of a trainer upgraded in place
do) and is held still with SIGSTOP while its run is RUNNING, so that run is live and unfinished
while the first trainer restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from testkit.servers import free_port
from testkit.stack import ROOT, LocalStack, post_csv
from trainer.lifecycle import unfinished_runs

CHECKED = "unfinished runs checked"  # the line each start logs once, from one worker


@dataclass
class Pair:
    """The stack, and a second trainer (port, process, log) sharing its MLflow and state."""

    stack: LocalStack
    port: int
    process: subprocess.Popen
    log: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("sluice-unfinished"))
    stack = LocalStack(
        home=home,
        # Two workers: the check runs once per start, not once per worker.
        extra_env={"TRAINER_WORKERS": "2", "TRAINER_WARM_UP": "false", "TRAIN_MAX_ROUNDS": "20"},
    )
    port = free_port()
    log = os.path.join(home, "second-trainer.log")
    second = second_trainer(stack, port, log)  # it waits for MLflow as the stack starts
    try:
        stack.start()
        yield Pair(stack, port, second, log)
    finally:
        second.terminate()
        try:
            second.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
        stack.stop()


def table(rows: int, seed: int) -> bytes:
    """A CSV whose run MLflow logs (params, dataset, model) for a second or so."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows).round(4) for i in range(8)})
    frame["colour"] = rng.choice(["red", "green", "blue"], size=rows)
    frame["label"] = np.where(frame["x0"] + rng.normal(size=rows) > 0, "yes", "no")
    return frame.to_csv(index=False).encode()


def wait_for(what, check, timeout=60.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def running_run(client: MlflowClient, model: str, request: threading.Thread):
    """The RUNNING run of `model`'s experiment, polled while its dev request is under way."""
    while request.is_alive():
        experiment = client.get_experiment_by_name(f"sluice/{model}")
        if experiment is not None:
            runs = client.search_runs(
                [experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=1
            )
            if runs:
                return runs[0]
        time.sleep(0.02)
    raise AssertionError(f"the dev request of {model!r} ended before its run was seen RUNNING")


def in_background(url: str, data: bytes, **params) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def send():
        try:
            result["response"] = post_csv(url, data, phase="dev", **params)
        except requests.RequestException as err:
            result["error"] = err

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, result


def log_count(path: str, line: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read().count(line)


def gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def second_trainer(stack: LocalStack, port: int, log_path: str) -> subprocess.Popen:
    """Another trainer on the same tracking server and state directory, in its own group."""
    env = {
        **stack.env,
        "MLFLOW_TRACKING_URI": stack.tracking_uri,
        "TRAINER_STATE_DIR": os.path.join(stack.home, "trainer"),
        "SLUICE_INTERNAL_TOKEN_FILE": os.path.join(stack.home, "internal.token"),
        "PYTHONPATH": ROOT,
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                os.path.join(ROOT, ".venv", "bin", "gunicorn"),
                *("--chdir", ROOT, "--no-control-socket"),
                *("--config", "python:sluice_common.web.gunicorn_conf"),
                *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"),
                *("--graceful-timeout", "5"),
                "trainer:create_app()",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.stack
def test_a_killed_trainers_run_is_marked_at_the_next_start_and_a_live_one_is_not(pair):
    local, b = pair.stack, pair.process
    client = MlflowClient(local.tracking_uri)
    trainer_log = os.path.join(local.home, "logs", "trainer.log")
    wait_for("the first start's check", lambda: log_count(trainer_log, CHECKED) >= 1)
    wait_for("the second trainer's check", lambda: log_count(pair.log, CHECKED) >= 1)

    # A run of another trainer (another state directory, same tracking server): never judged.
    other = client.create_run(
        client.create_experiment("sluice/other-trainer"),
        tags={"sluice.owner": "0123456789abcdef/fedcba9876543210"},
    ).info.run_id

    # The first trainer is SIGKILLed (master and workers) while its run is RUNNING.
    a_request, _ = in_background(local.analyze_url, table(5000, 1), model="cut-off")
    cut_off = running_run(client, "cut-off", a_request)
    pgid = local.pid("trainer")
    os.killpg(pgid, signal.SIGKILL)
    wait_for("the killed trainer to be gone", lambda: gone(pgid), timeout=10, every=0.05)
    assert client.get_run(cut_off.info.run_id).info.status == "RUNNING"

    # The second trainer is held still while its own run is RUNNING: alive, unfinished.
    b_request, b_result = in_background(
        f"http://127.0.0.1:{pair.port}/ml", table(5000, 2), model="live"
    )
    live = running_run(client, "live", b_request)
    os.killpg(b.pid, signal.SIGSTOP)
    try:
        local.start()  # starts only the trainer, whose check runs in the background
        wait_for("the restart's check", lambda: log_count(trainer_log, CHECKED) >= 2)

        marked = client.get_run(cut_off.info.run_id)
        assert marked.info.status == "KILLED"
        assert marked.info.end_time is not None
        reason = marked.data.tags["sluice.interrupted"]
        assert reason.startswith("the trainer stopped before this run finished")
        assert "when the trainer started again" in reason
        still = client.get_run(live.info.run_id)
        assert still.info.status == "RUNNING"
        assert "sluice.interrupted" not in still.data.tags
        assert client.get_run(other).info.status == "RUNNING"
        # One check per start, from one of the two workers.
        assert log_count(trainer_log, CHECKED) == 2
    finally:
        os.killpg(b.pid, signal.SIGCONT)
        client.set_terminated(other, status="FINISHED")

    b_request.join(timeout=300)
    assert "response" in b_result, b_result.get("error", "no answer after 300 s")
    assert b_result["response"].status_code == 200, b_result["response"].text
    finished = client.get_run(live.info.run_id)
    assert finished.info.status == "FINISHED"
    assert "sluice.interrupted" not in finished.data.tags


CLAIM = """
import sys, time
from trainer.lifecycle import unfinished_runs
print(unfinished_runs.owner_tags(sys.argv[1])["sluice.owner"], flush=True)
time.sleep(600)
"""


def test_an_owner_is_alive_exactly_while_its_process_lives(tmp_path):
    state = str(tmp_path)
    child = subprocess.Popen(
        [os.path.join(ROOT, ".venv", "bin", "python"), "-c", CLAIM, state],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        owner = child.stdout.readline().strip()
        trainer, _, token = owner.partition("/")
        assert trainer == unfinished_runs.trainer_id(state)  # one id per state directory
        assert unfinished_runs.owner_alive(state, owner)
        mine = unfinished_runs.owner_tags(state)["sluice.owner"]
        assert mine != owner and unfinished_runs.owner_alive(state, mine)
        # Every owner alive: a worker starting again in this start has nothing to check.
        assert not unfinished_runs._dead_owner_files(state)
    finally:
        child.kill()
        child.wait()
    assert not unfinished_runs.owner_alive(state, owner)  # SIGKILL drops the lock
    # A worker that died (killed out of memory, respawned by gunicorn) leaves its file free:
    # the next worker to start checks again, in the same start.
    assert unfinished_runs._dead_owner_files(state)
    unfinished_runs._remove_dead_owner_files(state)
    assert not unfinished_runs._dead_owner_files(state)
    left = os.listdir(os.path.join(state, "run-owners"))
    assert f"{token}.lock" not in left and left == [mine.partition("/")[2] + ".lock"]
    assert not unfinished_runs.owner_alive(state, owner)  # file gone: still dead
    assert unfinished_runs.owner_alive(state, mine)
    # A value Sluice did not write is never judged dead (nor read as a path).
    assert unfinished_runs.owner_alive(state, f"{trainer}/../../etc/passwd")
