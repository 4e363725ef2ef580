"""Speed at the floor (issue #24): Sluice against the cost of its necessary work, side by side.

    .venv/bin/python -m bench.floor            # full: 100k standard rows, ~10 min on 2 idle cores
    .venv/bin/python -m bench.floor --quick    # smoke: 20k rows, fewer pairs, ~4 min

One local stack (temp SLUICE_HOME, free loopback ports) and `mlflow models serve` of the same
champion, as `bench.run` starts them. For each table of `bench/floor_data.py`: dev end to end
against plain `xgboost.train` on the same rows (bench/floor_ref.py), the prod batch against the
champion booster's own `inplace_predict` (and `mlflow models serve` for `standard`), and single
rows against `mlflow models serve`. Sides alternate (A-B, B-A) and medians are reported. Prints
the table, writes bench/results/floor.json and floor.md (git-ignored); see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import orjson

from bench import floor_ref, floor_table
from bench.floor_data import TARGET, query_csv, train_csv
from bench.loadgen import Client, analyze_target, closed_loop, invocations_target
from bench.run import (
    check_rows,
    expect_ok,
    interleaved,
    log,
    percentiles,
    start_serve,
    stop_group,
    write_json,
)
from testkit.stack import ROOT, LocalStack

RESULTS = os.path.join(ROOT, "bench", "results", "floor.json")


@dataclass(frozen=True)
class Plan:
    """Rows and repetitions of one run: {shape: (rows, dev pairs, batch rounds)}."""

    mode: str
    shapes: dict
    single_pairs: int
    step_reps: int


def make_plan(quick: bool) -> Plan:
    """The full plan, or the quick smoke plan."""
    if quick:
        shapes = {"standard": (20_000, 2, 3), "wide": (5_000, 1, 3), "text_heavy": (10_000, 1, 3)}
        return Plan("quick", shapes, 300, 2)
    shapes = {"standard": (100_000, 3, 5), "wide": (10_000, 2, 4), "text_heavy": (20_000, 2, 4)}
    return Plan("full", shapes, 1000, 3)


def model_name(shape: str) -> str:
    """The registered model a shape trains."""
    return f"floor_{shape}"


def sluice_dev(stack: LocalStack, csv: bytes, model: str) -> dict:
    """One dev request through /analyze (multipart), wall clock, and what the answer reports."""
    client = Client(
        analyze_target(stack.analyze_url, csv, phase="dev", model=model, target=TARGET),
        timeout=3600,
    )
    try:
        seconds, status, body = client.timed()
    finally:
        client.close()
    expect_ok(status, body, f"dev {model}")
    training = orjson.loads(body)["training"]
    return {
        "seconds": seconds,
        "booster_seconds": training["booster_seconds"],
        "rounds": training["rounds"],
        "rows_train": training["rows_train"],
        "rows_validation": training["rows_validation"],
        "stage_seconds": training.get("stage_seconds", {}),
    }


def measure_dev(stack: LocalStack, shape: str, rows: int, pairs: int, nthread: int) -> dict:
    """Sluice dev against plain xgboost.train on the same CSV, alternating which goes first."""
    csv = train_csv(rows, shape)
    sluice, plain = [], []
    for i in range(pairs):
        order = ("sluice", "plain") if i % 2 == 0 else ("plain", "sluice")
        for side in order:
            if side == "sluice":
                sluice.append(sluice_dev(stack, csv, model_name(shape)))
                log(f"  {shape} dev Sluice {sluice[-1]['seconds']:.2f} s")
            else:
                plain.append(asdict(floor_ref.plain_dev(csv, TARGET, nthread)))
                log(f"  {shape} dev xgboost.train {plain[-1]['train_seconds']:.2f} s")
    # OpenMP's thread team stalls when other processes take the cores (bench/README.md): one
    # run on one thread shows how much of the reference's time that is.
    one = floor_ref.plain_dev(csv, TARGET, 1).train_seconds
    log(f"  {shape} dev xgboost.train on 1 thread {one:.2f} s")
    return {"rows": rows, "sluice": sluice, "plain": plain, "plain_one_thread_seconds": one}


def measure_batch(stack, shape, rows, rounds, nthread, serve=None, step_reps=3) -> dict:
    """Prod batch: Sluice's whole path, the champion booster's inplace_predict and (given)
    mlflow serve, each round in a rotated order."""
    csv = query_csv(rows, shape)
    _, model = floor_ref.load_champion(stack.tracking_uri, model_name(shape))
    booster, matrix = floor_ref.booster_reference(model, csv, nthread)
    sluice = Client(analyze_target(stack.analyze_url, csv, phase="prod", model=model_name(shape)))
    clients = {"sluice": sluice}
    if serve is not None:
        clients["serve"] = Client(invocations_target(serve.url, csv))
    _, status, body = sluice.timed()  # warm up, and check it is the same work
    expect_ok(status, body, f"prod {shape}")
    check_rows("sluice", body, rows)
    differ = floor_ref.agreement(booster, matrix, model.classes, orjson.loads(body)["predictions"])
    if "serve" in clients:
        _, status, body = clients["serve"].timed()
        expect_ok(status, body, "mlflow serve")
        check_rows("mlflow serve", body, rows)
    floor_ref.timed_predict(booster, matrix)
    times = {"sluice": [], "booster": [], "serve": []}
    sides = ["sluice", "booster", *(["serve"] if serve is not None else [])]
    for i in range(rounds):
        for side in sides[i % len(sides) :] + sides[: i % len(sides)]:
            if side == "booster":
                times[side].append(floor_ref.timed_predict(booster, matrix))
                continue
            seconds, status, body = clients[side].timed()
            expect_ok(status, body, side)
            times[side].append(seconds)
    for client in clients.values():
        client.close()
    log(
        f"  {shape} batch: Sluice {floor_table.median(times['sluice']):.3f} s, inplace_predict "
        f"{floor_table.median(times['booster']):.3f} s; {differ} predictions differ"
    )
    return {
        "rows": rows,
        "sluice_seconds": times["sluice"],
        "booster_seconds": times["booster"],
        "serve_seconds": times["serve"],
        "predictions_differ": differ,
        "steps": floor_ref.prod_steps(csv, model, step_reps),
    }


def measure_single(stack: LocalStack, serve, pairs: int) -> dict:
    """Single-row latencies, interleaved pairs on kept-alive connections (as bench.run)."""
    csv = query_csv(1, "standard", seed=11)
    a = analyze_target(stack.analyze_url, csv, phase="prod", model=model_name("standard"))
    b = invocations_target(serve.url, csv)
    for target in (a, b):
        warm = closed_loop(target, 4, 40, 20.0)
        if warm.errors:
            raise RuntimeError(f"{target.name}: {warm.errors} errors while warming up")
    ca, cb = Client(a), Client(b)
    try:
        a_lat, b_lat = interleaved(ca, cb, pairs)
    finally:
        ca.close()
        cb.close()
    return {"sluice": percentiles(a_lat), "serve": percentiles(b_lat)}


def run(plan: Plan, workdir: str, results: dict) -> None:
    """Start the stack, measure every shape of the plan, stop everything; fill `results`."""
    nthread = floor_ref.train_threads()
    results["meta"].update(plan=asdict(plan), train_threads=nthread)
    results["shapes"] = {shape: {} for shape in plan.shapes}
    stack = LocalStack(home=os.path.join(workdir, "home"), extra_env={"CHAMPION_POLL_SECONDS": "5"})
    serve = None
    try:
        log("starting the stack (scripts/local.sh start)")
        stack.start()
        # mlflow serve and the in-process references sign in to MLflow as the trainer does.
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
            stack.mlflow_account
        )
        sluice_dev(stack, train_csv(2_000, "standard", seed=5), "floor_warm")
        for shape, (rows, pairs, _) in plan.shapes.items():
            log(f"dev {shape}, {rows:,} rows, {pairs} pair(s)")
            results["shapes"][shape]["dev"] = measure_dev(stack, shape, rows, pairs, nthread)
        serve, _ = start_serve(
            stack.tracking_uri, model_name("standard"), os.path.join(workdir, "serve.log")
        )
        for shape, (rows, _, rounds) in plan.shapes.items():
            log(f"prod batch {shape}, {rows:,} rows, {rounds} rounds")
            results["shapes"][shape]["batch"] = measure_batch(
                stack,
                shape,
                rows,
                rounds,
                nthread,
                serve if shape == "standard" else None,
                plan.step_reps,
            )
        log(f"single row, {plan.single_pairs} interleaved pairs")
        results["single"] = measure_single(stack, serve, plan.single_pairs)
    finally:
        if serve is not None:
            stop_group(serve)
        stack.stop()


def git_commit() -> str:
    """HEAD of the checkout the bench runs from."""
    done = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print the table; write floor.json and floor.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rows and pairs (~4 min)")
    parser.add_argument("--out", default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (service logs)")
    parser.add_argument("--table-from", metavar="JSON", help="print the table of an earlier run")
    args = parser.parse_args(argv)
    if args.table_from:
        with open(args.table_from, "rb") as handle:
            results = orjson.loads(handle.read())
        rows = floor_table.build_rows(results)
        print(floor_table.text_table(rows, results["meta"]))
        print(floor_table.markdown_table(rows, results["meta"]))
        return 0
    plan = make_plan(args.quick)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results: dict = {
        "meta": {
            "command": f".venv/bin/python -m bench.floor {argv_text}".strip(),
            "mode": plan.mode,
            "git_commit": git_commit(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "loadavg_start": os.getloadavg(),
        }
    }
    workdir = tempfile.mkdtemp(prefix="sluice-floor-")
    failed = True
    try:
        run(plan, workdir, results)
        failed = False
    finally:
        results["meta"]["loadavg_end"] = os.getloadavg()
        results["meta"]["wall_seconds"] = time.perf_counter() - started
        if failed:
            write_json(results | {"error": "run failed; partial results"}, args.out)
            log(f"partial results in {args.out}; logs kept in {workdir}")
        elif args.keep:
            log(f"service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = floor_table.build_rows(results)
    results["table"] = rows
    write_json(results, args.out)
    with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as handle:
        handle.write(floor_table.markdown_table(rows, results["meta"]) + "\n")
    print(floor_table.text_table(rows, results["meta"]))
    print(f"JSON in {os.path.relpath(args.out)}, Markdown beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
