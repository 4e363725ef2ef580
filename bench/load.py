"""Bounded load test of the prod path: many requests at concurrency 16 on loopback.

    .venv/bin/python -m bench.load [--requests 2000] [--concurrency 16] [--max-seconds 300]

Starts a local stack of its own (temporary SLUICE_HOME, free loopback ports), trains two
models, then sends prod requests for both models from `concurrency` threads until the request
count or the time bound is reached. An error is any non-200 answer, a connection failure, or
an answer whose model, version or predictions differ from the reference for that model.
Prints errors (goal 0), throughput and p50/p99 latency; writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

import numpy as np
import orjson

from bench.data import query_csv, train_csv
from bench.loadgen import Client, analyze_target
from testkit.stack import LocalStack, post_csv

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def run(requests_total: int, concurrency: int, max_seconds: float) -> dict:
    """Run the load test on a fresh local stack; the summary as a dict."""
    with tempfile.TemporaryDirectory(prefix="sluice-load-") as home:
        stack = LocalStack(home=home)
        stack.start()
        try:
            targets, expected = [], {}
            for name, rows in (("load-a", 3), ("load-b", 1)):
                dev = post_csv(stack.analyze_url, train_csv(5000), phase="dev", model=name)
                assert dev.status_code == 200, dev.text
                query = query_csv(rows, seed=rows)
                reference = post_csv(stack.analyze_url, query, phase="prod", model=name).json()
                expected[name] = (reference["version"], reference["predictions"])
                targets.append(analyze_target(stack.analyze_url, query, phase="prod", model=name))
            return _load(targets, expected, requests_total, concurrency, max_seconds)
        finally:
            stack.stop()


def _load(targets, expected, requests_total, concurrency, max_seconds) -> dict:
    lock = threading.Lock()
    issued, errors, latencies, examples = [0], [0], [], []
    deadline = time.perf_counter() + max_seconds

    def worker(index: int) -> None:
        clients = [Client(t, timeout=60) for t in targets]
        try:
            while True:
                with lock:
                    if issued[0] >= requests_total or time.perf_counter() > deadline:
                        return
                    turn = issued[0]
                    issued[0] += 1
                client = clients[(turn + index) % len(clients)]
                name = dict(_params(client))["model"]
                ok, seconds = False, 0.0
                try:
                    seconds, status, body = client.timed()
                    answer = orjson.loads(body)
                    ok = (
                        status == 200
                        and (answer["version"], answer["predictions"]) == (expected[name])
                    )
                except (OSError, ValueError, KeyError) as err:
                    body = str(err).encode()
                with lock:
                    latencies.append(seconds)
                    if not ok:
                        errors[0] += 1
                        if len(examples) < 3:
                            examples.append(body[:300].decode(errors="replace"))
        finally:
            for client in clients:
                client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 60)
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "requests": issued[0],
        "errors": errors[0],
        "error_examples": examples,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests_per_second": round((issued[0] - errors[0]) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def _params(client: Client) -> list[tuple[str, str]]:
    query = client.target.path.split("?", 1)[1]
    return [tuple(part.split("=", 1)) for part in query.split("&")]


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    summary = run(args.requests, args.concurrency, args.max_seconds)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "load.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    for key, value in summary.items():
        print(f"{key:>20}: {value}")
    if summary["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
