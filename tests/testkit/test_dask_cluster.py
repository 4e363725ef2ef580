"""The test helper testkit/dask_cluster.py: a real scheduler and two workers on pinned loopback
ports, tasks running on both, a killed worker gone from the scheduler and back on its ports."""

from __future__ import annotations

import os
import time

import psutil

from testkit.dask_cluster import cluster_fixture
from testkit.stack import ROOT

PORT_BASE = 18700  # 18700-18707: scheduler, its HTTP port, worker/nanny/HTTP of each worker

dask = cluster_fixture(name="dask", scope="module", n_workers=2, port_base=PORT_BASE)


def where() -> dict:
    """Run on a worker: which worker, from which directory, and where `trainer` comes from."""
    from distributed import get_worker

    import trainer

    return {"worker": get_worker().address, "cwd": os.getcwd(), "trainer": trainer.__file__}


def test_the_scheduler_sees_both_workers_on_pinned_loopback_ports_only(dask):
    workers = dask.scheduler_workers()
    assert sorted(workers) == ["tcp://127.0.0.1:18702", "tcp://127.0.0.1:18705"], dask.logs()
    assert sorted(info["name"] for info in workers.values()) == ["worker-0", "worker-1"]
    assert {info["nthreads"] for info in workers.values()} == {1}
    assert {info["memory_limit"] for info in workers.values()} == {2**30}
    sockets = dask.listening()
    assert {ip for _, _, ip, _ in sockets} == {"127.0.0.1"}, sockets
    assert {kind for _, kind, _, _ in sockets} == {"tcp"}, sockets
    assert {port for _, _, _, port in sockets} == set(range(PORT_BASE, PORT_BASE + 8)), sockets


def test_tasks_run_on_both_workers_and_import_the_repository(dask):
    with dask.client() as client:
        futures = [
            client.submit(where, pure=False, workers=[address]) for address in dask.worker_addresses
        ]
        answers = client.gather(futures, errors="raise")
        assert client.submit(sum, range(10)).result(timeout=30) == 45
    assert [answer["worker"] for answer in answers] == dask.worker_addresses
    assert {answer["cwd"] for answer in answers} == {ROOT}
    assert {answer["trainer"] for answer in answers} == {
        os.path.join(ROOT, "trainer", "__init__.py")
    }


def test_a_killed_worker_dies_leaves_the_scheduler_and_comes_back(dask):
    victim = dask.worker_address(1)
    processes = dask._members("worker-1")  # the nanny and its worker process
    assert len(processes) >= 2
    dask.kill_worker(1)
    for process in processes:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    deadline = time.monotonic() + 10
    while victim in dask.scheduler_workers():
        assert time.monotonic() < deadline, "the scheduler still lists the killed worker"
        time.sleep(0.1)
    assert list(dask.scheduler_workers()) == [dask.worker_address(0)]

    dask.start_worker(1)
    assert sorted(dask.scheduler_workers()) == sorted(dask.worker_addresses)
    dask.restart()
    assert sorted(dask.scheduler_workers()) == sorted(dask.worker_addresses)
