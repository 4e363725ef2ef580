"""What a shadow challenger costs a prod request: one stack, the same champion, blocks of
requests with and without a challenger scoring the same rows in the background.

    .venv/bin/python -m bench.shadow            # 100k-row batches x 6 per side, 400 single rows
    .venv/bin/python -m bench.shadow --quick    # 20k x 4, 200

v1 is the champion, v2 (other rows, promote=never) the challenger. The challenger is started
(PUT /models/bench_shadow/challenger) and ended (DELETE) between blocks ordered A-B, B-A, so
the machine's noise falls on both sides alike. The issue's budget: single-row p50 must not
move beyond the noise. Writes bench/results/shadow.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime

import orjson
import requests

from bench.data import query_csv, train_csv
from bench.loadgen import Client, analyze_target, closed_loop
from testkit.stack import ROOT, LocalStack

MODEL = "bench_shadow"
RESULTS = os.path.join(ROOT, "bench", "results", "shadow.json")
BLOCKS = 4  # per side


def log(message: str) -> None:
    print(f"[bench.shadow] {message}", file=sys.stderr, flush=True)


def _challenger(stack: LocalStack, on: bool) -> None:
    """Start or end the shadow challenger (through the trainer: no token in a local stack)."""
    url = f"{stack.url('trainer')}/models/{MODEL}/challenger"
    if on:
        answer = requests.put(url, json={"version": "2", "mode": "shadow"}, timeout=120)
    else:
        answer = requests.delete(url, timeout=120)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"challenger {'PUT' if on else 'DELETE'}: {answer.text[:300]}")


def _shadowed(stack: LocalStack) -> dict:
    """The running challenge's batches: shadowed, skipped, rows."""
    url = f"{stack.url('trainer')}/models/{MODEL}/challenger"
    return requests.get(url, timeout=120).json()["batches"]


def _train(stack: LocalStack, rows: int) -> None:
    for seed, promote in ((1, "always"), (2, "never")):
        client = Client(
            analyze_target(
                stack.analyze_url,
                train_csv(rows, seed=seed),
                phase="dev",
                model=MODEL,
                promote=promote,
            )
        )
        _, status, body = client.timed()
        client.close()
        if status != 200:
            raise RuntimeError(f"dev: HTTP {status}: {body[:300]!r}")


def _block(client: Client, count: int) -> list[float]:
    times = []
    for _ in range(count):
        seconds, status, body = client.timed()
        if status != 200:
            raise RuntimeError(f"prod: HTTP {status}: {body[:300]!r}")
        times.append(seconds)
    return times


def measure(workdir: str, batch_rows: int, batches: int, singles: int) -> dict:
    """Start the stack, train both versions, measure in alternating blocks, stop."""
    stack = LocalStack(home=os.path.join(workdir, "stack"), extra_env={"MONITORING_ENABLED": "1"})
    times = {side: {"batch": [], "single": [], "shadow": []} for side in ("on", "off")}
    stack.start()
    try:
        _train(stack, 20_000)
        batch = Client(
            analyze_target(stack.analyze_url, query_csv(batch_rows), phase="prod", model=MODEL)
        )
        single = Client(
            analyze_target(stack.analyze_url, query_csv(1, seed=11), phase="prod", model=MODEL)
        )
        warm = closed_loop(single.target, 2, 40, 20.0)
        if warm.errors:
            raise RuntimeError(f"{warm.errors} errors while warming up")
        batch.timed()
        running = False
        for block in range(2 * BLOCKS):
            side = ("on", "off")[(block + block // 2) % 2]  # on, off, off, on, on, off, ...
            if (side == "on") != running:
                if running:  # what the challenger did in the blocks just measured
                    time.sleep(1.0)
                    times["on"]["shadow"].append(_shadowed(stack))
                _challenger(stack, side == "on")
                running = side == "on"
            log(f"block {block + 1}/{2 * BLOCKS}: challenger {side}")
            times[side]["single"] += _block(single, singles // BLOCKS)
            times[side]["batch"] += _block(batch, max(1, batches // BLOCKS))
        if running:
            time.sleep(1.0)
            times["on"]["shadow"].append(_shadowed(stack))
        batch.close()
        single.close()
    finally:
        stack.stop()
    return _summary(times, batch_rows)


def _summary(times: dict, batch_rows: int) -> dict:
    def p50(values):
        return statistics.median(values) * 1000

    on, off = times["on"], times["off"]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "single": {
            "on_p50_ms": p50(on["single"]),
            "off_p50_ms": p50(off["single"]),
            "added_ms": p50(on["single"]) - p50(off["single"]),
            "requests_per_side": len(on["single"]),
        },
        "batch": {
            "rows": batch_rows,
            "on_rows_per_s": batch_rows / statistics.median(on["batch"]),
            "off_rows_per_s": batch_rows / statistics.median(off["batch"]),
            "batches_per_side": len(on["batch"]),
        },
        "challenger_batches": on["shadow"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer requests")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="sluice-bench-shadow-")
    try:
        if args.quick:
            result = measure(workdir, 20_000, 4, 200)
        else:
            result = measure(workdir, 100_000, 6, 400)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as handle:
        handle.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    single, batch = result["single"], result["batch"]
    print(
        f"single row p50 (ms): with shadow {single['on_p50_ms']:.2f}, without "
        f"{single['off_p50_ms']:.2f} ({single['added_ms']:+.3f} ms)"
    )
    print(
        f"batch {batch['rows']:,} rows (rows/s): with shadow {batch['on_rows_per_s']:,.0f}, "
        f"without {batch['off_rows_per_s']:,.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
