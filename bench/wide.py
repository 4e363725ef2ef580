"""What a column costs: dev uploads of 10 rows and 1,000 to 20,000 columns, end to end.

    .venv/bin/python -m bench.wide            # widths 1,000 / 5,000 / 20,000, 2 runs each
    .venv/bin/python -m bench.wide --quick    # 1,000 / 5,000, 1 run each

One local stack of its own (temp SLUICE_HOME, free loopback ports). Each width is a CSV of
10 rows of rounded floats and a binary target, posted as multipart to `/analyze?phase=dev`
(what `client/request.py` sends); the reference, measured in the same run on the same bytes,
is what any Python user pays for that table: `pandas.read_csv` plus one round of
`xgboost.train` on the float matrix. Printed per width: Sluice's seconds, the answer's stage
times (train: typing, keys, spec, fit, profile; log_run: MLflow), the reference's seconds,
milliseconds per column for both, and the ratio. Goal (the wide-upload issue): 20,000
columns answered in under 15 s on this machine, well under 1 ms a column.
Writes bench/results/wide.json.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import xgboost as xgb

from bench.loadgen import Client, analyze_target
from testkit.stack import ROOT, LocalStack

RESULTS = os.path.join(ROOT, "bench", "results", "wide.json")
ROWS = 10
GOAL_SECONDS = 15.0  # at 20,000 columns


def log(message: str) -> None:
    print(f"[bench.wide] {message}", file=sys.stderr, flush=True)


def wide_csv(columns: int, rows: int = ROWS, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    names = [f"feature_{i:05d}" for i in range(columns - 1)]
    frame = pd.DataFrame(rng.normal(size=(rows, columns - 1)).round(3), columns=names)
    frame["target"] = np.arange(rows) % 2
    return frame.to_csv(index=False).encode()


def reference_seconds(csv: bytes) -> float:
    """pandas' reader and one boosting round on the same bytes."""
    started = time.perf_counter()
    frame = pd.read_csv(io.BytesIO(csv))
    y = frame.pop("target").to_numpy()
    matrix = xgb.DMatrix(frame.to_numpy(dtype="float32"), label=y)
    xgb.train({"objective": "binary:logistic", "nthread": 2}, matrix, num_boost_round=1)
    return time.perf_counter() - started


def measure(widths: list[int], runs: int, workdir: str) -> list[dict]:
    stack = LocalStack(home=os.path.join(workdir, "home"))
    log("starting a stack")
    stack.start()
    results = []
    try:
        for width in widths:
            csv = wide_csv(width)
            for run in range(runs):
                client = Client(
                    analyze_target(stack.analyze_url, csv, phase="dev", model=f"wide{width}")
                )
                seconds, status, body = client.timed()
                client.close()
                if status != 200:
                    raise RuntimeError(f"{width} columns: HTTP {status}: {body[:300]!r}")
                stages = orjson.loads(body)["training"]["stage_seconds"]
                reference = reference_seconds(csv)
                log(f"{width:,} columns, run {run + 1}: {seconds:.2f} s (ref. {reference:.2f} s)")
                results.append(
                    {
                        "columns": width,
                        "rows": ROWS,
                        "bytes": len(csv),
                        "seconds": seconds,
                        "stages": stages,
                        "reference_seconds": reference,
                    }
                )
    finally:
        stack.stop()
    return results


def table(results: list[dict]) -> list[str]:
    """Best run per width; the marginal cost of a column is between this width and the last."""
    lines = [
        "| columns | Sluice s | train s | log_run s | ms/column | marginal ms/column "
        "| reference s | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    last = None
    for width in sorted({r["columns"] for r in results}):
        runs = [r for r in results if r["columns"] == width]
        best = min(runs, key=lambda r: r["seconds"])
        reference = min(r["reference_seconds"] for r in runs)
        marginal = (
            "" if last is None else f"{1000 * (best['seconds'] - last[1]) / (width - last[0]):.2f}"
        )
        lines.append(
            f"| {width:,} | {best['seconds']:.2f} | {best['stages'].get('train', 0):.2f} | "
            f"{best['stages'].get('log_run', 0):.2f} | {1000 * best['seconds'] / width:.2f} | "
            f"{marginal} | {reference:.2f} | {best['seconds'] / reference:.1f}x |"
        )
        last = (width, best["seconds"])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 columns, 1 run")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    widths = [1_000, 5_000] if args.quick else [1_000, 5_000, 20_000]
    workdir = tempfile.mkdtemp(prefix="sluice-bench-wide-")
    try:
        results = measure(widths, 1 if args.quick else 2, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as handle:
        record = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "runs": results}
        handle.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    print(f"command: python -m bench.wide{' --quick' if args.quick else ''}")
    print("\n".join(table(results)))
    widest = [r for r in results if r["columns"] == 20_000]
    if widest:
        best = min(r["seconds"] for r in widest)
        verdict = "PASS" if best < GOAL_SECONDS else "FAIL"
        print(f"20,000 columns: {best:.2f} s, goal < {GOAL_SECONDS:g} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
