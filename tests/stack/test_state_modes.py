"""Private state, and a start that waits for a service still stopping, on a stack of this
module's own.

The stack is started under a umask of 022 (a login shell's), in a SLUICE_HOME where an older
Sluice left files readable by others and with a symbolic link out of it, which must not be
followed. Its graceful timeout is short, so the stopping trainer is gone in seconds.
"""

from __future__ import annotations

import os
import signal
import stat
import time

import pandas as pd
import pytest
import requests

from testkit.stack import LocalStack, post_csv
from tests.datasets import shop, to_csv

GRACEFUL_SECONDS = 5
MODEL = "private-state"


def start_as_a_login_shell(stack: LocalStack):
    """`scripts/local.sh start` under umask 022: without a mask of its own, its files would be
    readable by everyone."""
    previous = os.umask(0o022)
    try:
        return stack.run("start")
    finally:
        os.umask(previous)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    base = tmp_path_factory.mktemp("state-modes")
    home = base / "home"
    # What an older Sluice left behind: a log and its folder readable by everyone.
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "old.log").write_text("an old line\n")
    outside = base / "outside.txt"  # not Sluice's: a link to it must not be followed
    outside.write_text("not Sluice's\n")
    (home / "link-out").symlink_to(outside)
    for path, mode in ((home, 0o755), (home / "logs", 0o755), (home / "logs" / "old.log", 0o644)):
        path.chmod(mode)
    outside.chmod(0o644)
    stack = LocalStack(home=str(home), extra_env={"GRACEFUL_TIMEOUT": str(GRACEFUL_SECONDS)})
    done = start_as_a_login_shell(stack)
    assert done.returncode == 0, f"start failed:\n{done.stdout}\n{done.stderr}"
    yield stack, outside
    stack.stop()


def readable_by_others(root: str) -> list[str]:
    """Every file and directory under `root` (links not followed) with group or other bits."""
    found = []
    paths = [root] + [
        os.path.join(folder, name) for folder, dirs, files in os.walk(root) for name in dirs + files
    ]
    for path in paths:
        info = os.lstat(path)
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o077:
            found.append(f"{oct(stat.S_IMODE(info.st_mode))} {os.path.relpath(path, root)}")
    return sorted(found)


def finished_job(stack: LocalStack, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = requests.get(f"{stack.url('preprocess')}/jobs/{job_id}", timeout=30).json()
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_everything_the_stack_keeps_is_for_its_account_only(local):
    stack, outside = local
    home = stack.home
    # A model (MLflow's database and artifacts, the trainer's local copy), predictions and
    # labels (monitoring.db and its WAL), a job (its spooled upload), logs.
    dev = post_csv(stack.analyze_url, to_csv(shop(600, 1)), phase="dev", model=MODEL)
    assert dev.status_code == 200, dev.text
    frame = shop(200, 2)
    prod = post_csv(
        stack.analyze_url, to_csv(frame.drop(columns="bought")), phase="prod", model=MODEL
    )
    assert prod.status_code == 200, prod.text
    labels = pd.DataFrame(
        {"batch_id": prod.json()["batch_id"], "row": range(200), "bought": frame["bought"]}
    )
    answer = post_csv(f"{stack.url('preprocess')}/feedback", to_csv(labels), model=MODEL)
    assert answer.status_code == 200 and answer.json()["new"] == 200, answer.text
    queued = post_csv(
        stack.analyze_url,
        to_csv(frame.drop(columns="bought")),
        phase="prod",
        model=MODEL,
        **{"async": "true"},
    )
    assert queued.status_code == 202, queued.text
    assert finished_job(stack, queued.json()["job_id"])["state"] == "succeeded"

    kept = {
        os.path.relpath(os.path.join(folder, name), home)
        for folder, _, files in os.walk(home)
        for name in files
    }
    for path in ("mlflow.db", "logs/trainer.log", "run/trainer.pid", "trainer/monitoring.db"):
        assert path in kept, sorted(kept)
    assert any(path.startswith("trainer/models/") for path in kept), sorted(kept)
    assert any(path.startswith("artifacts/") for path in kept), sorted(kept)
    assert os.path.isdir(os.path.join(home, "trainer", "job-bodies"))

    offenders = readable_by_others(home)
    assert not offenders, "readable by others:\n" + "\n".join(offenders)
    # The older install's files were made private; the file outside, behind a link, was not.
    assert stat.S_IMODE(os.stat(os.path.join(home, "logs", "old.log")).st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert os.path.islink(os.path.join(home, "link-out"))


def workers_of(master: int) -> list[int]:
    """The processes whose parent is `master` (gunicorn's workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if int(handle.read().rsplit(")", 1)[1].split()[1]) == master:
                    found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


def status(stack: LocalStack) -> str:
    done = stack.run("status")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_start_while_the_trainer_is_stopping_waits_for_it_then_starts_it(local):
    stack, _ = local
    master = stack.pid("trainer")
    assert master is not None and "trainer: running" in status(stack)
    # A worker that does not finish before the graceful timeout (a long request in flight): the
    # master has stopped serving at once, and exits only once it has killed that worker.
    workers = workers_of(master)
    assert workers
    for worker in workers:
        os.kill(worker, signal.SIGSTOP)
    os.killpg(master, signal.SIGTERM)
    told = time.monotonic()
    deadline = told + 5
    while f"trainer: stopping (pid {master})" not in status(stack):
        assert time.monotonic() < deadline, status(stack)
        time.sleep(0.1)

    done = start_as_a_login_shell(stack)
    assert done.returncode == 0, f"start failed:\n{done.stdout}\n{done.stderr}"
    assert f"trainer (pid {master}) is stopping; waiting for it" in done.stderr
    assert "started trainer " in done.stdout, done.stdout
    # It waited for the old master to exit (after the graceful timeout), and killed nothing.
    assert time.monotonic() - told >= GRACEFUL_SECONDS - 0.5
    assert "killing" not in done.stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(master, 0)
    now = stack.pid("trainer")
    assert now not in (None, master)
    assert f"trainer: running (pid {now})" in status(stack)
    assert stack.healthy("trainer")
    health = requests.get(f"{stack.url('preprocess')}/health", timeout=10).json()
    assert health["trainer"]["reachable"] is True, health
