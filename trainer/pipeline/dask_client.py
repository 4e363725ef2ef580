"""This process's client of a Dask scheduler, and what the cluster's failures answer."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from distributed import Client

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.pipeline import cluster_parts as parts
from trainer.pipeline import shipping

_clients: dict[str, object] = {}
_clients_guard = threading.Lock()


def public_address(address: str) -> str:
    """The scheduler's address without any credentials in it."""
    parts_ = urlsplit(address)
    return f"{parts_.scheme}://{parts_.hostname}:{parts_.port}" if parts_.hostname else address


def client_for(address: str, timeout: float = 20.0):
    """This process's client of the scheduler (made once, remade when it was closed), the
    cluster holding this trainer's code (trainer/pipeline/shipping.py)."""
    with _clients_guard:
        client = _clients.get(address)
        try:
            if client is None or client.status != "running":
                # xgboost.dask looks the client up as the default one.
                client = Client(address, timeout=timeout, set_as_default=True)
                _clients[address] = client
            shipping.ship(client)  # before any graph: a stock cluster cannot import Sluice
        except (OSError, TimeoutError, ValueError) as err:
            raise ApiError(
                error_codes.CLUSTER_UNAVAILABLE,
                f"The Dask scheduler at {public_address(address)} did not answer ({err}); the "
                "operator must check DASK_SCHEDULER_ADDRESS and the cluster.",
            ) from err
        return client


def workers_of(client) -> set[str]:
    """The workers the scheduler has now, asked each time (the client's cached scheduler
    info is refreshed in the background without its worker list, and can read empty)."""
    try:
        return set(client.nthreads())
    except (OSError, TimeoutError) as err:
        raise ApiError(
            error_codes.CLUSTER_UNAVAILABLE,
            f"The Dask scheduler stopped answering ({type(err).__name__}); nothing was "
            "registered. Send the request again once the cluster is back.",
        ) from err


def gather(client, futures, context, what: str, workers: set[str] | None = None):
    """Results of futures, with progress and cancellation; a clear failure when the cluster
    loses what they need (a task whose worker died is retried by Dask first)."""
    checked = time.monotonic()
    while True:
        not_done = [f for f in futures if not f.done()]
        if not not_done:
            break
        time.sleep(0.05 if time.monotonic() - checked < 1 else 0.2)
        try:
            context.check()
        except BaseException:
            client.cancel(list(not_done))
            raise
        if not workers_of(client):
            client.cancel(list(not_done))
            raise lost(what, "no worker is left")
    errors = [f for f in futures if f.status == "error"]
    if errors:
        err = errors[0].exception()
        if isinstance(err, ApiError):
            raise err
        if type(err).__name__ == "KilledWorker":
            raise lost(what, "a worker died repeatedly running it")
        raise ApiError(
            error_codes.CLUSTER_TASK_FAILED, f"{what} failed on the cluster: {str(err)[:300]}"
        ) from err
    if any(f.status == "cancelled" for f in futures):
        raise lost(what, "its tasks were cancelled (a worker or the scheduler restarted)")
    return client.gather(list(futures))


def lost(what: str, why: str) -> ApiError:
    return ApiError(
        error_codes.CLUSTER_WORKER_LOST,
        f"{what} stopped: {why}. Nothing was registered; send the request again once the "
        "cluster is whole.",
    )


def tree_sum(client, futures):
    """Sum pandas count series over partitions on the workers, two at a time."""
    level = list(futures)
    while len(level) > 1:
        level = [
            client.submit(parts.add_counts, *level[i : i + 4], pure=False)
            for i in range(0, len(level), 4)
        ]
    return level[0]
