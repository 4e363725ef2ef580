"""What monitoring costs a prod request: two stacks side by side, monitoring on and off.

    .venv/bin/python -m bench.monitoring            # 100k-row batches x 6 pairs, 400 single pairs
    .venv/bin/python -m bench.monitoring --quick    # 100k x 3, 200 single pairs

Both stacks train the same model on the same rows (same seed), then take the same requests,
interleaved A-B, B-A, so the machine's noise falls on both alike. Budget (the monitoring
issue): single-row p50 at most 0.3 ms more, 100k-row batch throughput at most 5% less.
Writes bench/results/monitoring.json; `bench.run` runs it too and adds its rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime

import orjson

from bench.data import query_csv, train_csv
from bench.loadgen import Client, analyze_target, closed_loop
from testkit.stack import ROOT, LocalStack

MODEL = "bench_monitoring"
RESULTS = os.path.join(ROOT, "bench", "results", "monitoring.json")
BATCH_ROWS = 100_000
SINGLE_BUDGET_MS = 0.3
BATCH_BUDGET = 0.05


def log(message: str) -> None:
    print(f"[bench.monitoring] {message}", file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _interleaved(on: Client, off: Client, pairs: int) -> tuple[list[float], list[float]]:
    times = {"on": [], "off": []}
    for i in range(pairs):
        for side, client in (
            (("on", on), ("off", off)) if i % 2 == 0 else (("off", off), ("on", on))
        ):
            seconds, status, body = client.timed()
            if status != 200:
                raise RuntimeError(f"monitoring {side}: HTTP {status}: {body[:300]!r}")
            times[side].append(seconds)
    return times["on"], times["off"]


def measure(workdir: str, batch_pairs: int, single_pairs: int, dev_rows: int = 20_000) -> dict:
    """Start both stacks, train, measure, stop; the results."""
    stacks = {
        "on": LocalStack(home=os.path.join(workdir, "on"), extra_env={"MONITORING_ENABLED": "1"}),
        "off": LocalStack(home=os.path.join(workdir, "off"), extra_env={"MONITORING_ENABLED": "0"}),
    }
    train, batch, single = train_csv(dev_rows), query_csv(BATCH_ROWS), query_csv(1, seed=11)
    started = []
    try:
        for side, stack in stacks.items():
            log(f"starting the stack with monitoring {side}")
            stack.start()
            started.append(stack)
            dev = Client(analyze_target(stack.analyze_url, train, phase="dev", model=MODEL))
            _, status, body = dev.timed()
            dev.close()
            if status != 200:
                raise RuntimeError(f"dev on the {side} stack: HTTP {status}: {body[:300]!r}")
        clients = {
            kind: {
                side: Client(analyze_target(stack.analyze_url, data, phase="prod", model=MODEL))
                for side, stack in stacks.items()
            }
            for kind, data in (("batch", batch), ("single", single))
        }
        for side in stacks:
            warm = closed_loop(clients["single"][side].target, 2, 40, 20.0)
            if warm.errors:
                raise RuntimeError(f"{side}: {warm.errors} errors while warming up")
            clients["batch"][side].timed()
        log(f"{BATCH_ROWS:,}-row batches, {batch_pairs} interleaved pairs")
        batch_on, batch_off = _interleaved(
            clients["batch"]["on"], clients["batch"]["off"], batch_pairs
        )
        log(f"single rows, {single_pairs} interleaved pairs")
        single_on, single_off = _interleaved(
            clients["single"]["on"], clients["single"]["off"], single_pairs
        )
        for sides in clients.values():
            for client in sides.values():
                client.close()
    finally:
        for stack in started:
            stack.stop()
    on_rate, off_rate = BATCH_ROWS / _median(batch_on), BATCH_ROWS / _median(batch_off)
    p50_on, p50_off = _median(single_on) * 1000, _median(single_off) * 1000
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "batch": {
            "rows": BATCH_ROWS,
            "on_seconds": batch_on,
            "off_seconds": batch_off,
            "on_rows_per_s": on_rate,
            "off_rows_per_s": off_rate,
            "drop": 1 - on_rate / off_rate,
            "within_budget": 1 - on_rate / off_rate <= BATCH_BUDGET,
        },
        "single": {
            "on_p50_ms": p50_on,
            "off_p50_ms": p50_off,
            "added_ms": p50_on - p50_off,
            "within_budget": p50_on - p50_off <= SINGLE_BUDGET_MS,
            "on_seconds": single_on,
            "off_seconds": single_off,
        },
    }


def table_rows(result: dict) -> list[list[str]]:
    """Rows for bench.run's table: measure, on, off, ratio, target, verdict."""
    batch, single = result["batch"], result["single"]
    return [
        [
            f"7 monitoring on/off: batch {batch['rows']:,} rows (rows/s)",
            f"{batch['on_rows_per_s']:,.0f}",
            f"{batch['off_rows_per_s']:,.0f}",
            f"-{batch['drop']:.1%}",
            f"<= {BATCH_BUDGET:.0%} drop",
            "PASS" if batch["within_budget"] else "FAIL",
        ],
        [
            "7 monitoring on/off: single row p50 (ms)",
            f"{single['on_p50_ms']:.2f}",
            f"{single['off_p50_ms']:.2f}",
            f"+{single['added_ms']:.3f} ms",
            f"<= +{SINGLE_BUDGET_MS} ms",
            "PASS" if single["within_budget"] else "FAIL",
        ],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer pairs")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="sluice-bench-monitoring-")
    try:
        result = measure(workdir, 3 if args.quick else 6, 200 if args.quick else 400)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as handle:
        handle.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    for row in table_rows(result):
        print(" | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
