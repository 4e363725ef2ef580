"""MLflow runs a stopped trainer left RUNNING: marked KILLED, with the reason, at the next start.

MLflow keeps a run RUNNING until its client ends it, so a trainer killed while logging one
(SIGKILL, out of memory, a power cut) leaves it RUNNING forever. Which runs may be marked:

- Each trainer process tags the runs it starts with `sluice.owner` = "<trainer id>/<token>".
  The trainer id lives in the state directory (one per trainer: its workers and its restarts
  share it); the token is the process's own, and the process holds an exclusive flock on
  `<state dir>/run-owners/<token>.lock` for its whole life. The kernel drops that lock however
  the process ends, so "lock free or file gone" means "owner dead", never a guess from clocks.
- At start, one worker per start (a lock and a marker file hold the start's id) lists this
  trainer's RUNNING runs in `sluice/*` experiments and marks those whose owner is dead.
- Runs of another trainer id (a trainer with another state directory sharing the tracking
  server) and runs without the tag are never touched: nothing here can tell whether their
  process is alive.

KILLED rather than FAILED: in MLflow, FAILED is a run whose code raised (`start_run` ending on
an exception, a project whose command failed), KILLED one stopped from outside (MLflow marks so
the run of a cancelled job or of a Kubernetes job that was killed). A run cut off with its
process says nothing about the data or the model, and filtering FAILED runs for real errors
should not find these.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import socket
import threading
import time
from datetime import UTC, datetime

from mlflow import MlflowClient

from trainer.lifecycle import tracking_health
from trainer.lifecycle.boot import boot_id

log = logging.getLogger(__name__)
OWNER_TAG = "sluice.owner"
PROCESS_TAG = "sluice.process"  # host:pid:start id of the owner, for people reading the UI
INTERRUPTED_TAG = "sluice.interrupted"
MARKED_STATUS = "KILLED"
TRAINER_ID_FILE = "trainer.id"
OWNERS_DIR = "run-owners"
MARKER_FILE = "run-recovery"  # the id of the last start whose check finished
MAX_RUNS = 1000  # runs looked at per start; more are left for the next one
MAX_EXPERIMENTS = 10_000
EXPERIMENT_PREFIX = "sluice/"
_TOKEN = re.compile(r"[0-9a-f]{16}")
_owners: dict[tuple[str, int], str | None] = {}
_handles: list = []  # the owner locks' files, open for the life of the process
_guard = threading.Lock()


def trainer_id(state_dir: str) -> str:
    """This trainer's id, made once into the state directory (workers may race to make it)."""
    path = os.path.join(state_dir, TRAINER_ID_FILE)
    try:
        with open(path, encoding="ascii") as handle:
            value = handle.read().strip()
        if _TOKEN.fullmatch(value):
            return value
    except FileNotFoundError:
        pass
    temp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(temp, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(8) + "\n")
    try:
        os.link(temp, path)  # fails if another worker made it first: theirs stands
    except FileExistsError:
        pass
    finally:
        os.remove(temp)
    with open(path, encoding="ascii") as handle:
        value = handle.read().strip()
    if not _TOKEN.fullmatch(value):
        raise OSError(f"{path} does not hold a trainer id; delete it to make a new one")
    return value


def _claim(state_dir: str) -> str | None:
    """Take this process's owner lock; its owner tag value, or None when the state directory
    cannot hold it (then runs go untagged and are never marked)."""

    try:
        owner_trainer = trainer_id(state_dir)
        folder = os.path.join(state_dir, OWNERS_DIR)
        os.makedirs(folder, exist_ok=True)
        token = secrets.token_hex(8)
        temp = os.path.join(folder, f".{token}.tmp")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        handle = os.fdopen(fd, "w", encoding="ascii")
        # Locked before it gets its name: a checker never sees the file of a live owner unlocked.
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(f"{_process()} {boot_id()}\n")
        handle.flush()
        os.rename(temp, os.path.join(folder, f"{token}.lock"))
    except OSError as err:
        log.warning("runs of this process cannot be recovered if it is killed: %s", err)
        return None
    _handles.append(handle)
    return f"{owner_trainer}/{token}"


def _process() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


def owner_tags(state_dir: str) -> dict[str, str]:
    """The tags that make a run this process's (empty when the owner lock could not be taken).
    The lock is taken on the first call in each process and held until the process ends."""

    key = (os.path.realpath(state_dir), os.getpid())
    with _guard:
        if key not in _owners:
            _owners[key] = _claim(state_dir)
    owner = _owners[key]
    if owner is None:
        return {}
    return {OWNER_TAG: owner, PROCESS_TAG: f"{_process()}:{boot_id()}"}


def owner_alive(state_dir: str, owner: str) -> bool:
    """Whether the process that owns runs tagged `owner` (this trainer's) still lives. A value
    Sluice did not write counts as alive: what cannot be judged is left alone."""
    token = owner.rpartition("/")[2]
    if not _TOKEN.fullmatch(token):
        return True
    try:
        fd = os.open(os.path.join(state_dir, OWNERS_DIR, f"{token}.lock"), os.O_RDWR)
    except FileNotFoundError:
        return False  # removed after its owner died (owners never remove their own)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if it was taken here
    return False


def _dead_owner_files(state_dir: str) -> bool:
    """Whether a lock file of an owner that is gone is left (a worker that died since the
    last check); a look at local files only, no MLflow."""
    folder = os.path.join(state_dir, OWNERS_DIR)
    try:
        names = [name for name in os.listdir(folder) if name.endswith(".lock")]
    except FileNotFoundError:
        return False
    return any(not owner_alive(state_dir, name[: -len(".lock")]) for name in names)


def _remove_dead_owner_files(state_dir: str) -> None:
    """Delete the lock files of owners that are gone (one file per trainer process ever run)."""
    folder = os.path.join(state_dir, OWNERS_DIR)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if name.endswith(".tmp"):  # a process killed between creating and naming it
                if time.time() - os.path.getmtime(path) > 3600:
                    os.remove(path)
                continue
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.remove(path)  # while locked: its owner is dead, and nobody ever re-creates it
        except OSError:
            pass
        finally:
            os.close(fd)


def _experiment_ids(client: MlflowClient) -> list[str]:
    """Ids of Sluice's experiments (`sluice/<model>`), at most MAX_EXPERIMENTS."""
    ids: list[str] = []
    token = None
    while len(ids) < MAX_EXPERIMENTS:
        page = client.search_experiments(
            filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'",
            max_results=1000,
            page_token=token,
        )
        ids += [e.experiment_id for e in page if e.name.startswith(EXPERIMENT_PREFIX)]
        token = page.token
        if not token:
            break
    return ids[:MAX_EXPERIMENTS]


def mark_unfinished(state_dir: str, client: MlflowClient | None = None) -> list[str]:
    """Mark KILLED this trainer's RUNNING runs whose owner process is gone; their ids. At most
    MAX_RUNS RUNNING runs are looked at."""
    client = client or MlflowClient()
    owner_prefix = trainer_id(state_dir) + "/"
    found_at = datetime.now(UTC).isoformat(timespec="seconds")
    query = f"attributes.status = 'RUNNING' AND tags.`{OWNER_TAG}` LIKE '{owner_prefix}%'"
    experiments = _experiment_ids(client)
    marked: list[str] = []
    seen = 0
    for start in range(0, len(experiments), 100):
        token = None
        while seen < MAX_RUNS:
            page = client.search_runs(
                experiments[start : start + 100],
                filter_string=query,
                max_results=min(1000, MAX_RUNS - seen),
                page_token=token,
            )
            seen += len(page)
            for run in page:
                owner = run.data.tags.get(OWNER_TAG, "")
                if not owner.startswith(owner_prefix) or owner_alive(state_dir, owner):
                    continue
                process = run.data.tags.get(PROCESS_TAG, "unknown")
                client.set_tag(
                    run.info.run_id,
                    INTERRUPTED_TAG,
                    "the trainer stopped before this run finished (found RUNNING at "
                    f"{found_at}, when the trainer started again; its process {process} is "
                    "gone)",
                )
                client.set_terminated(run.info.run_id, status=MARKED_STATUS)
                marked.append(run.info.run_id)
            token = page.token
            if not token:
                break
    _remove_dead_owner_files(state_dir)
    return marked


# While MLflow is down: a try every 2 s for two minutes (local mode starts it alongside, which
# takes ~10-40 s), then every 30 s, for 15 minutes in all; then the next start checks.
RETRY_SECONDS = (2.0, 30.0)
RETRY_FAST_FOR = 120.0
RETRY_FOR = 900.0


def mark_in_background(state_dir: str, retry_for: float = RETRY_FOR) -> threading.Thread:
    """Run `mark_unfinished` once per trainer start, and again when a worker starts after
    another died, in a thread: never blocks or fails the start. The first worker of a start
    does it (the others wait on its lock, then see it done); while MLflow is down it retries,
    for `retry_for` seconds at most."""

    start_id = boot_id()

    def run():
        try:
            with open(os.path.join(state_dir, MARKER_FILE), "a+", encoding="ascii") as marker:
                fcntl.flock(marker, fcntl.LOCK_EX)
                marker.seek(0)
                if marker.read().strip() == start_id and not _dead_owner_files(state_dir):
                    # Checked this start, and no worker has died since (a worker killed and
                    # respawned, say out of memory, leaves its lock file free: checked again).
                    return
                _retrying(state_dir, retry_for)
                # Done or given up: once per start either way (the next start checks again).
                marker.seek(0)
                marker.truncate()
                marker.write(start_id + "\n")
                marker.flush()
        except Exception:  # noqa: BLE001 - a check at start is never a reason to stop a worker
            log.exception("could not check for runs cut off by an earlier stop")

    thread = threading.Thread(target=run, name="unfinished-runs", daemon=True)
    thread.start()
    return thread


def _retrying(state_dir: str, retry_for: float) -> bool:
    """Mark, retrying while the tracking server is down; whether it was done."""

    started = time.monotonic()
    while True:
        try:
            if tracking_health.reachable():
                marked = mark_unfinished(state_dir)
                log.info("unfinished runs checked: %d marked %s", len(marked), MARKED_STATUS)
                if marked:
                    log.warning(
                        "%d MLflow run(s) cut off by an earlier stop marked %s: %s",
                        len(marked),
                        MARKED_STATUS,
                        ", ".join(marked),
                    )
                return True
        except Exception as err:  # noqa: BLE001 - retried: MLflow may be starting
            if tracking_health.refuses_account(err):
                log.error("MLflow refused the trainer's account; unfinished runs not checked")
                return False
            log.debug("unfinished runs not checked yet: %s", err)
        waited = time.monotonic() - started
        if waited >= retry_for:
            log.warning(
                "MLflow was not reachable for %.0f s; runs cut off by an earlier stop are "
                "checked at the next start",
                waited,
            )
            return False
        time.sleep(RETRY_SECONDS[waited >= RETRY_FAST_FOR])
