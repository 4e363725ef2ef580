"""What a shadow challenger costs a prod request: one stack, the same champion, blocks of
requests with and without a challenger scoring the same rows in the background.

    .venv/bin/python -m bench.shadow            # 8 blocks a side: 2 x 100k-row batches, 50 rows
    .venv/bin/python -m bench.shadow --quick    # 4 blocks a side, 20k-row batches

v1 is the champion, v2 (other rows, promote=never) the challenger, started (PUT
/models/bench_shadow/challenger) and ended (DELETE) between blocks ordered A-B, B-A. A block
sends single rows one after another, then two batches back to back (the second runs while the
challenger scores the first), then waits for the challenger to finish. Each on block is
compared with the off block next to it (the machine's load of that moment falls on both): the
medians of those differences are the result. The issue's budget: single-row p50 must not
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
SETTLE_SECONDS = 5.0


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


def measure(workdir: str, batch_rows: int, blocks: int, singles: int) -> dict:
    """Start the stack, train both versions, measure in alternating blocks, stop."""
    stack = LocalStack(home=os.path.join(workdir, "stack"), extra_env={"MONITORING_ENABLED": "1"})
    measured, shadowed = [], []
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
        for block in range(2 * blocks):
            side = ("on", "off")[(block + block // 2) % 2]  # on, off, off, on, on, off, ...
            if (side == "on") != running:
                if running:  # what the challenger did in the blocks just measured
                    shadowed.append(_shadowed(stack))
                _challenger(stack, side == "on")
                running = side == "on"
            log(f"block {block + 1}/{2 * blocks}: challenger {side}")
            # Single rows first (the challenger scores them meanwhile), then two batches back
            # to back (the second runs while it scores the first); then, on either side, a
            # pause for the challenger to finish, so no block pays for the one before.
            rows = _block(single, singles)
            measured.append((side, _block(batch, 2), rows))
            time.sleep(SETTLE_SECONDS)
        if running:
            shadowed.append(_shadowed(stack))
        batch.close()
        single.close()
    finally:
        stack.stop()
    return _summary(measured, shadowed, batch_rows)


def _summary(measured: list, shadowed: list, batch_rows: int) -> dict:
    """Overall medians, and the median over adjacent on/off block pairs (the blocks run
    A-B, B-A, so each pair shares the machine's load of its moment)."""
    ms = 1000

    def side(name: str, index: int) -> list[float]:
        return [t for s, *values in measured if s == name for t in values[index]]

    pairs = [sorted(measured[i : i + 2], key=lambda b: b[0]) for i in range(0, len(measured), 2)]
    single_added = [
        (statistics.median(on[2]) - statistics.median(off[2])) * ms for off, on in pairs
    ]
    batch_ratio = [statistics.median(off[1]) / statistics.median(on[1]) for off, on in pairs]
    on_single, off_single = side("on", 1), side("off", 1)
    on_batch, off_batch = side("on", 0), side("off", 0)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "single": {
            "on_p50_ms": statistics.median(on_single) * ms,
            "off_p50_ms": statistics.median(off_single) * ms,
            "added_ms_paired_median": statistics.median(single_added),
            "added_ms_per_pair": single_added,
            "requests_per_side": len(on_single),
        },
        "batch": {
            "rows": batch_rows,
            "on_rows_per_s": batch_rows / statistics.median(on_batch),
            "off_rows_per_s": batch_rows / statistics.median(off_batch),
            "on_over_off_paired_median": statistics.median(batch_ratio),
            "batches_per_side": len(on_batch),
        },
        "challenger_batches": shadowed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer requests")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="sluice-bench-shadow-")
    try:
        if args.quick:
            result = measure(workdir, 20_000, 4, 50)
        else:
            result = measure(workdir, 100_000, 8, 50)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as handle:
        handle.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    single, batch = result["single"], result["batch"]
    print(
        f"single row p50 (ms): with shadow {single['on_p50_ms']:.2f}, without "
        f"{single['off_p50_ms']:.2f} (paired blocks: {single['added_ms_paired_median']:+.3f} ms)"
    )
    print(
        f"batch {batch['rows']:,} rows (rows/s): with shadow {batch['on_rows_per_s']:,.0f}, "
        f"without {batch['off_rows_per_s']:,.0f} (paired blocks: with/without "
        f"{batch['on_over_off_paired_median']:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
