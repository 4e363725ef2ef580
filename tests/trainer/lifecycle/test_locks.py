"""The promotion lock: one holder per model name across threads and processes, and no lock
file left behind (a request naming an unknown model must not leave one)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

from trainer.lifecycle.locks import lock_path, promotion_lock, sweep

ROUNDS = 40
THREADS = 3
PROCESSES = 2


def _increment(state_dir: str, counter: str, rounds: int) -> None:
    """Read, pause, write back +1 under the lock: two holders at once lose an increment."""
    for _ in range(rounds):
        with promotion_lock(state_dir, "shared"):
            with open(counter, encoding="utf-8") as handle:
                value = int(handle.read())
            time.sleep(0.0005)
            with open(counter, "w", encoding="utf-8") as handle:
                handle.write(str(value + 1))


def _threads(state_dir: str, counter: str) -> None:
    workers = [
        threading.Thread(target=_increment, args=(state_dir, counter, ROUNDS))
        for _ in range(THREADS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_one_holder_at_a_time_across_threads_and_processes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_threads, args=(str(tmp_path), str(counter)))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert int(counter.read_text()) == ROUNDS * THREADS * PROCESSES
    assert os.listdir(tmp_path / "locks") == []


def test_names_that_never_become_models_leave_no_lock_file(tmp_path):
    for n in range(500):
        with promotion_lock(str(tmp_path), f"ghost{n}"):
            assert len(os.listdir(tmp_path / "locks")) == 1  # the one held
    assert os.listdir(tmp_path / "locks") == []


def test_a_failure_under_the_lock_releases_it_and_removes_the_file(tmp_path):
    try:
        with promotion_lock(str(tmp_path), "m"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert os.listdir(tmp_path / "locks") == []
    taken = threading.Event()

    def take() -> None:
        with promotion_lock(str(tmp_path), "m"):
            taken.set()

    worker = threading.Thread(target=take)
    worker.start()
    worker.join(timeout=10)
    assert taken.is_set()


def test_the_sweep_removes_lock_files_left_behind_but_not_a_held_one(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    for n in range(50):  # as earlier trainers left them: one per name ever locked
        (locks / f"{n:040x}.lock").touch()
    assert sweep(str(tmp_path)) == 50 and os.listdir(locks) == []
    assert sweep(str(tmp_path / "never-made")) == 0
    with promotion_lock(str(tmp_path), "busy"):
        (locks / "left.lock").touch()
        assert sweep(str(tmp_path)) == 1
        assert os.listdir(locks) == [os.path.basename(lock_path(str(tmp_path), "busy"))]
    assert os.listdir(locks) == []
