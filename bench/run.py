"""Benchmark the local Sluice stack against `mlflow models serve` on generated data.

    .venv/bin/python -m bench.run            # full run (100k batch, dev at 100k and 1M rows)
    .venv/bin/python -m bench.run --quick    # smoke run: 20k rows, no 1M, fewer repetitions
    .venv/bin/python -m bench.run --skip-1m  # full run without the 1M-row dev request

Prints a table and writes bench/results/latest.json. A and B are interleaved and reported as
medians because the machine is shared; see bench/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import requests

from bench import monitoring as monitoring_bench
from bench.data import TARGET, query_csv, train_csv
from bench.loadgen import Client, analyze_target, closed_loop, invocations_target
from testkit.procmem import PeakSampler, group_processes, group_pss, settled_rss
from testkit.servers import free_port
from testkit.stack import ROOT, LocalStack

GIB = 1024**3
MIB = 1024**2
STACK = ("mlflow", "trainer", "preprocess")
MODEL = "bench"
MODEL_1M = "bench_1m"
RESULTS = os.path.join(ROOT, "bench", "results", "latest.json")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    mode: str
    batch_rows: int
    dev_rows: int
    dev_reps: int
    big_dev_rows: int | None
    batch_reps: int
    single_pairs: int
    conc_rounds: int
    conc_requests: int
    conc_seconds: float
    concurrency: int
    starts: int
    floor_reps: int


def make_plan(quick: bool, skip_1m: bool) -> Plan:
    """The full plan, or the quick smoke plan."""
    if quick:
        return Plan("quick", 20_000, 20_000, 2, None, 3, 100, 1, 400, 6.0, 16, 1, 3)
    return Plan(
        "full", 100_000, 100_000, 3, None if skip_1m else 1_000_000, 5, 300, 2, 2000, 15.0, 16, 3, 5
    )


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def stack_pgids(stack: LocalStack) -> dict[str, int]:
    """Process-group ids of the stack's services (local.sh starts each in its own session)."""
    pgids = {name: stack.pid(name) for name in STACK}
    missing = [name for name, pid in pgids.items() if pid is None]
    if missing:
        raise RuntimeError(f"services not running: {missing}")
    return pgids


def timed_start(stack: LocalStack) -> dict:
    """Seconds `scripts/local.sh start` takes to return healthy (and each service's first
    healthy answer, polled alongside), then the settled idle RSS and PSS of each service."""
    first_healthy: dict[str, float] = {}
    done = threading.Event()
    started = time.perf_counter()

    def poll() -> None:
        while not done.is_set() and len(first_healthy) < len(STACK):
            for name in STACK:
                if name not in first_healthy and stack.healthy(name):
                    first_healthy[name] = time.perf_counter() - started
            done.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        stack.start()
        seconds = time.perf_counter() - started
    finally:
        done.set()
        poller.join(timeout=5)
    pgids = stack_pgids(stack)
    rss = settled_rss(pgids, seconds=3.0)
    return {
        "seconds": seconds,
        "first_healthy": first_healthy,
        "idle_rss": rss,
        "idle_pss": group_pss(pgids),
        "processes": group_processes(pgids),
    }


WARM_DEV_ROWS = 2_000


def warm_start(stack: LocalStack, data: dict) -> dict:
    """Right after a restart: the first prod single-row and dev answers against later ones
    (trainer workers warm up at start; a champion's first use in a process loads it)."""

    def timed(target) -> float:
        client = Client(target, timeout=600)
        try:
            seconds, status, body = client.timed()
        finally:
            client.close()
        expect_ok(status, body, "warm-start request")
        return seconds

    single = analyze_target(stack.analyze_url, data["single"], phase="prod", model=MODEL)
    prod = [timed(single) for _ in range(11)]
    dev = [
        timed(
            analyze_target(
                stack.analyze_url, data["dev_warm"], phase="dev", model=f"warm{i}", target=TARGET
            )
        )
        for i in range(3)
    ]
    log(f"after a restart: first prod {prod[0] * 1000:.1f} ms, first dev {dev[0]:.2f} s")
    return {"prod_seconds": prod, "dev_seconds": dev, "dev_rows": WARM_DEV_ROWS}


def expect_ok(status: int, body: bytes, what: str) -> None:
    """Stop the run with the server's answer when a request failed."""
    if status != 200:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:600]!r}")


def dev_request(stack: LocalStack, csv: bytes, model: str, rows: int) -> dict:
    """One dev request through /analyze, with the stack's memory sampled while it runs."""
    target = analyze_target(stack.analyze_url, csv, phase="dev", model=model, target=TARGET)
    client = Client(target, timeout=3600)
    try:
        with PeakSampler(stack_pgids(stack), stack=STACK) as sampler:
            seconds, status, body = client.timed()
    finally:
        client.close()
    expect_ok(status, body, f"dev {rows} rows")
    answer = orjson.loads(body)
    training = answer["training"]["booster_seconds"]
    log(
        f"dev {rows} rows: {seconds:.2f} s end to end, {training:.2f} s booster training, "
        f"stack peak {sampler.stack_peak / MIB:,.0f} MiB"
    )
    return {
        "rows": rows,
        "seconds": seconds,
        "training_seconds": training,
        "overhead_seconds": seconds - training,
        "rounds": answer["training"]["rounds"],
        "version": answer["version"],
        "promoted": answer["promoted"],
        "metrics": answer["metrics"],
        "peak_rss": sampler.peaks,
        "stack_peak_rss": sampler.stack_peak,
        "samples": sampler.samples,
    }


def start_serve(tracking_uri: str, model: str, log_path: str) -> tuple[subprocess.Popen, float]:
    """`mlflow models serve` for the champion in its own session; seconds until /health."""
    port = free_port()
    env = dict(os.environ)
    env.update(MLFLOW_TRACKING_URI=tracking_uri, PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
    command = [
        os.path.join(VENV_BIN, "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{model}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    started = time.perf_counter()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited {proc.returncode}; see {log_path}")
        try:
            if requests.get(f"{proc.url}/health", timeout=2).ok:
                return proc, time.perf_counter() - started
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_group(proc)
    raise RuntimeError(f"mlflow models serve did not become healthy; see {log_path}")


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def check_rows(name: str, body: bytes, rows: int) -> None:
    """The answer scored every row (Sluice: n_rows; mlflow: the predictions list)."""
    answer = orjson.loads(body)
    got = answer.get("n_rows") if "n_rows" in answer else len(answer["predictions"])
    if got != rows:
        raise RuntimeError(f"{name} answered {got} predictions for {rows} rows")


def interleaved(a: Client, b: Client, pairs: int) -> tuple[list[float], list[float]]:
    """Latencies of A and B, alternating A-B then B-A so drift hits both sides alike."""
    times = {a.target.name: [], b.target.name: []}
    for i in range(pairs):
        for client in (a, b) if i % 2 == 0 else (b, a):
            seconds, status, body = client.timed()
            expect_ok(status, body, client.target.name)
            times[client.target.name].append(seconds)
    return times[a.target.name], times[b.target.name]


def percentiles(latencies: list[float]) -> dict:
    """p50, p90, p99 and mean in milliseconds."""
    ms = np.asarray(latencies) * 1000
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def inprocess_floor(tracking_uri: str, csv: bytes, rows: int, reps: int) -> dict:
    """The champion's own predict time on the parsed rows, and the steps around it."""
    import mlflow
    from mlflow.pyfunc.scoring_server import parse_csv_input

    # mlflow installs its own warning filters on import; ours go in front of them.
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")

    from sluice_common.tables.parsing import parse_csv
    from sluice_common.tables.transport import read_arrow, table_to_arrow
    from trainer.model.sluice_model import feature_matrix

    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    model = pyfunc.unwrap_python_model()
    schema = pyfunc.metadata.get_input_schema()
    steps: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        steps.setdefault(name, []).append(time.perf_counter() - started)
        return out

    for _ in range(reps):
        parsed = timed("parse_csv", parse_csv, csv)
        payload = timed("table_to_arrow", table_to_arrow, parsed.table, {})
        received, _ = timed("read_arrow", read_arrow, payload)
        timed("score_frame", model.score_frame, received)
        matrix, _ = timed("feature_matrix", feature_matrix, received, model.spec, model.rules)
        timed("inplace_predict", model.booster.inplace_predict, matrix)
        # What `mlflow models serve` does in process: read_csv with the schema, then predict.
        raw = timed("pandas_read_csv", parse_csv_input, io.BytesIO(csv), schema)
        timed("pyfunc_predict", pyfunc.predict, raw)
    medians = {name: median(values) for name, values in steps.items()}
    return {"rows": rows, "reps": reps, "median_seconds": medians}


def run(plan: Plan, workdir: str, results: dict) -> dict:
    """Bring the stack up, measure everything in the plan, bring it down; fill `results`."""
    results.update(
        meta={
            "mode": plan.mode,
            "plan": asdict(plan),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": subprocess.run(
                ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
            "mlflow_serve_workers": 1,
        }
    )
    log(f"generating data in {workdir}")
    data = {"query": query_csv(plan.batch_rows), "dev": train_csv(plan.dev_rows)}
    data["single"] = query_csv(1, seed=11)
    data["dev_warm"] = train_csv(WARM_DEV_ROWS, seed=5)
    if plan.big_dev_rows:
        data["dev_big"] = train_csv(plan.big_dev_rows)
    for name, raw in data.items():
        with open(os.path.join(workdir, f"{name}.csv"), "wb") as handle:
            handle.write(raw)

    stack = LocalStack(home=os.path.join(workdir, "home"), extra_env={"CHAMPION_POLL_SECONDS": "5"})
    serve = None
    starts: list[dict] = []
    try:
        log("starting the stack (scripts/local.sh start)")
        starts.append(timed_start(stack))
        log(
            f"healthy after {starts[-1]['seconds']:.2f} s; "
            f"idle {sum(starts[-1]['idle_rss'].values()) / MIB:.0f} MiB"
        )

        # `mlflow models serve` and the in-process floor sign in to MLflow as the trainer does.
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
            stack.mlflow_account
        )
        dev = [dev_request(stack, data["dev"], MODEL, plan.dev_rows) for _ in range(plan.dev_reps)]
        results["dev"] = {"small": dev}

        serve, serve_start = start_serve(
            stack.tracking_uri, MODEL, os.path.join(workdir, "mlflow-serve.log")
        )
        serve_idle = settled_rss({"serve": serve.pid}, seconds=2.0)["serve"]
        serve_pss = group_pss({"serve": serve.pid})["serve"]
        log(f"mlflow models serve healthy after {serve_start:.2f} s")
        results["mlflow_serve"] = {
            "start_seconds": serve_start,
            "idle_rss": serve_idle,
            "idle_pss": serve_pss,
        }

        batch_a = Client(
            analyze_target(stack.analyze_url, data["query"], phase="prod", model=MODEL)
        )
        batch_b = Client(invocations_target(serve.url, data["query"]))
        single_a = analyze_target(stack.analyze_url, data["single"], phase="prod", model=MODEL)
        single_b = invocations_target(serve.url, data["single"])
        log("warming up both sides")
        for client in (batch_a, batch_b):
            _, status, body = client.timed()
            expect_ok(status, body, client.target.name)
            check_rows(client.target.name, body, plan.batch_rows)
        for target in (single_a, single_b):
            warm = closed_loop(target, 4, 40, 20.0)
            if warm.errors:
                raise RuntimeError(f"{target.name}: {warm.errors} errors while warming up")

        log(f"batch of {plan.batch_rows} rows, {plan.batch_reps} interleaved pairs")
        a_times, b_times = interleaved(batch_a, batch_b, plan.batch_reps)
        batch_a.close()
        batch_b.close()
        results["batch"] = {
            "rows": plan.batch_rows,
            "sluice_seconds": a_times,
            "serve_seconds": b_times,
            "sluice_rows_per_s": plan.batch_rows / median(a_times),
            "serve_rows_per_s": plan.batch_rows / median(b_times),
        }

        log(f"single row, {plan.single_pairs} interleaved pairs")
        a, b = Client(single_a), Client(single_b)
        a_lat, b_lat = interleaved(a, b, plan.single_pairs)
        a.close()
        b.close()
        results["single"] = {"sluice": percentiles(a_lat), "serve": percentiles(b_lat)}

        log(f"concurrency {plan.concurrency}, {plan.conc_rounds} round(s) per side")
        rounds = {"sluice": [], "serve": []}
        for i in range(plan.conc_rounds):
            for target in (single_a, single_b) if i % 2 == 0 else (single_b, single_a):
                load = closed_loop(target, plan.concurrency, plan.conc_requests, plan.conc_seconds)
                key = "sluice" if target is single_a else "serve"
                rounds[key].append(asdict(load) | {"per_second": load.per_second})
                log(f"  {target.name}: {load.per_second:.1f} req/s ({load.errors} errors)")
        results["concurrency"] = {
            "concurrency": plan.concurrency,
            "rounds": rounds,
            "sluice_per_s": median([r["per_second"] for r in rounds["sluice"]]),
            "serve_per_s": median([r["per_second"] for r in rounds["serve"]]),
        }

        log("in-process floor: the champion's own predict on the parsed rows")
        results["floor"] = inprocess_floor(
            stack.tracking_uri, data["query"], plan.batch_rows, plan.floor_reps
        )
        stop_group(serve)
        serve = None

        if plan.big_dev_rows:
            results["dev"]["big"] = [
                dev_request(stack, data["dev_big"], MODEL_1M, plan.big_dev_rows)
            ]
        pgids = stack_pgids(stack)
        results["idle_after_work"] = settled_rss(pgids, seconds=3.0)
        results["idle_after_work_pss"] = group_pss(pgids)
        results["processes_after_work"] = group_processes(pgids)

        for _ in range(plan.starts - 1):
            stack.stop()
            # Fresh ports: local.sh refuses a port whose old connections are still in
            # TIME_WAIT (its bind check does not set SO_REUSEADDR), for about a minute.
            stack = LocalStack(home=stack.home, extra_env=stack.extra_env)
            starts.append(timed_start(stack))
            log(f"restart healthy after {starts[-1]['seconds']:.2f} s")
        stack.stop()
        stack = LocalStack(home=stack.home, extra_env=stack.extra_env)
        stack.start()
        results["warm_start"] = warm_start(stack, data)
    finally:
        if serve is not None:
            stop_group(serve)
        stack.stop()
    results["start"] = {
        "seconds": [s["seconds"] for s in starts],
        "idle_rss": [s["idle_rss"] for s in starts],
        "runs": starts,
    }
    results["meta"]["loadavg_end"] = os.getloadavg()
    return results


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def summarise(results: dict) -> tuple[list[list[str]], dict]:
    """Table rows and the pass/fail of every target."""
    rows, targets = [], {}
    batch = results["batch"]
    ratio = batch["sluice_rows_per_s"] / batch["serve_rows_per_s"]
    targets["batch_ratio_ge_1"] = ratio >= 1.0
    rows.append(
        [
            f"1 prod batch {batch['rows']:,} rows (rows/s)",
            f"{batch['sluice_rows_per_s']:,.0f}",
            f"{batch['serve_rows_per_s']:,.0f}",
            f"{ratio:.2f}x",
            ">= 1.0x (aim 1.3x)",
            verdict(ratio >= 1.0) + (" (aim met)" if ratio >= 1.3 else ""),
        ]
    )
    single = results["single"]
    p50 = single["sluice"]["p50_ms"] / single["serve"]["p50_ms"]
    targets["single_p50_le_half"] = p50 <= 0.5
    rows.append(
        [
            "2 prod single row p50 (ms)",
            f"{single['sluice']['p50_ms']:.2f}",
            f"{single['serve']['p50_ms']:.2f}",
            f"{p50:.2f}x",
            "<= 0.5x",
            verdict(p50 <= 0.5),
        ]
    )
    p99 = single["sluice"]["p99_ms"] / single["serve"]["p99_ms"]
    rows.append(
        [
            "2 prod single row p99 (ms)",
            f"{single['sluice']['p99_ms']:.2f}",
            f"{single['serve']['p99_ms']:.2f}",
            f"{p99:.2f}x",
            "(report)",
            "",
        ]
    )
    conc = results["concurrency"]
    ratio = conc["sluice_per_s"] / conc["serve_per_s"]
    targets["concurrency_ge_2x"] = ratio >= 2.0
    rows.append(
        [
            f"3 single rows at concurrency {conc['concurrency']} (req/s)",
            f"{conc['sluice_per_s']:.1f}",
            f"{conc['serve_per_s']:.1f}",
            f"{ratio:.2f}x",
            ">= 2x",
            verdict(ratio >= 2.0),
        ]
    )
    for key in ("small", "big"):
        runs = results["dev"].get(key)
        if not runs:
            continue
        n = runs[0]["rows"]
        e2e = median([r["seconds"] for r in runs])
        train = median([r["training_seconds"] for r in runs])
        overhead = median([r["overhead_seconds"] for r in runs])
        peak = max(r["stack_peak_rss"] for r in runs)
        rows.append(
            [
                f"4 dev {n:,} rows: end to end / training (s)",
                f"{e2e:.2f}",
                f"{train:.2f}",
                "",
                "",
                "",
            ]
        )
        if key == "small":
            targets["dev_overhead_le_0_5s"] = overhead <= 0.5
            rows.append(
                [
                    f"4 dev {n:,} rows: overhead beyond training (s)",
                    f"{overhead:.2f}",
                    "",
                    "",
                    "<= 0.5 s",
                    verdict(overhead <= 0.5),
                ]
            )
        else:
            rows.append(
                [
                    f"4 dev {n:,} rows: overhead beyond training (s)",
                    f"{overhead:.2f}",
                    "",
                    "",
                    "(report)",
                    "",
                ]
            )
        per = {name: max(r["peak_rss"][name] for r in runs) for name in STACK}
        detail = ", ".join(f"{name} {value / MIB:.0f}" for name, value in per.items())
        ok = peak <= 3 * GIB
        if key == "big":
            targets["dev_1m_peak_le_3gib"] = ok
        rows.append(
            [
                f"4 dev {n:,} rows: stack peak RSS (MiB)",
                f"{peak / MIB:,.0f}",
                "",
                "",
                "<= 3 GiB" if key == "big" else "(report)",
                verdict(ok) if key == "big" else "",
            ]
        )
        rows.append([f"  peak per service (MiB): {detail}", "", "", "", "", ""])
    idle = results["start"]["idle_rss"][0]
    idle_total = sum(idle.values())
    targets["idle_le_1_2gib"] = idle_total <= 1.2 * GIB
    rows.append(
        [
            "5 whole stack idle after start (MiB)",
            f"{idle_total / MIB:,.0f}",
            f"{results['mlflow_serve']['idle_rss'] / MIB:,.0f}",
            "",
            "<= 1.2 GiB",
            verdict(idle_total <= 1.2 * GIB),
        ]
    )
    detail = ", ".join(f"{name} {value / MIB:.0f}" for name, value in idle.items())
    rows.append([f"  idle RSS per service (MiB): {detail}", "", "", "", "", ""])
    pss = results["start"]["runs"][0]["idle_pss"]
    detail = ", ".join(f"{name} {value / MIB:.0f}" for name, value in pss.items())
    rows.append(
        [
            f"  idle PSS (MiB): {detail}; total {sum(pss.values()) / MIB:,.0f}",
            "",
            "",
            "",
            "",
            "",
        ]
    )
    after = results.get("idle_after_work")
    if after:
        detail = ", ".join(f"{name} {value / MIB:.0f}" for name, value in after.items())
        rows.append(
            [
                f"5 idle after the work (MiB): {detail}",
                f"{sum(after.values()) / MIB:,.0f}",
                "",
                "",
                "(report)",
                "",
            ]
        )
    warm = results["warm_start"]
    dev_ratio = warm["dev_seconds"][0] / median(warm["dev_seconds"][1:])
    targets["first_dev_le_1_3x_later"] = dev_ratio <= 1.3
    rows.append(
        [
            f"5 first dev after a restart / later ({warm['dev_rows']:,} rows)",
            f"{warm['dev_seconds'][0]:.2f} s",
            f"{median(warm['dev_seconds'][1:]):.2f} s",
            f"{dev_ratio:.2f}x",
            "<= 1.3x",
            verdict(dev_ratio <= 1.3),
        ]
    )
    rows.append(
        [
            "5 first prod single row after a restart / later (ms)",
            f"{warm['prod_seconds'][0] * 1000:.1f}",
            f"{median(warm['prod_seconds'][1:]) * 1000:.1f}",
            f"{warm['prod_seconds'][0] / median(warm['prod_seconds'][1:]):.1f}x",
            "(report)",
            "",
        ]
    )
    first = results["start"]["runs"][0]["first_healthy"]
    detail = ", ".join(f"{name} {first[name]:.1f}" for name in STACK if name in first)
    rows.append(
        [f"  first healthy answer per service, 1st start (s): {detail}", "", "", "", "", ""]
    )
    start = median(results["start"]["seconds"])
    targets["start_le_10s"] = start <= 10
    rows.append(
        [
            f"5 local.sh start to healthy (s, median of {len(results['start']['seconds'])})",
            f"{start:.2f}",
            f"{results['mlflow_serve']['start_seconds']:.2f}",
            "",
            "<= 10 s",
            verdict(start <= 10),
        ]
    )
    floor = results["floor"]["median_seconds"]
    e2e = median(batch["sluice_seconds"])
    share = floor["score_frame"] / e2e
    rows.append(
        [
            f"6 floor: champion score_frame on {batch['rows']:,} parsed rows (s)",
            f"{floor['score_frame']:.3f}",
            f"{median(batch['serve_seconds']):.3f}",
            f"{share:.0%} of e2e",
            "(report)",
            "",
        ]
    )
    steps = ", ".join(
        f"{name} {floor[name]:.3f}"
        for name in (
            "parse_csv",
            "table_to_arrow",
            "read_arrow",
            "feature_matrix",
            "inplace_predict",
            "pandas_read_csv",
            "pyfunc_predict",
        )
    )
    rows.append([f"  in-process steps (s): {steps}", "", "", "", "", ""])
    rows.append([f"  sluice batch end to end (s): {e2e:.3f}", "", "", "", "", ""])
    return rows, targets


def print_table(rows: list[list[str]], meta: dict) -> None:
    """The results as a fixed-width table on stdout."""
    header = ["measure", "sluice", "mlflow serve", "ratio", "target", "result"]
    full = [r for r in rows if any(r[1:])]
    widths = [max(len(r[i]) for r in [header, *full]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(
        f"Sluice benchmark ({meta['mode']}, {meta['cpus']} CPUs, commit {meta['git_commit'][:8]},"
        f" load {meta['loadavg_start'][0]:.1f} -> {meta['loadavg_end'][0]:.1f})"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        if any(row[1:]):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        else:
            print(row[0])
    print(line)
    print(
        "(for dev rows the second column is booster training; for idle and start it is "
        "mlflow models serve)"
    )


def write_json(results: dict, path: str) -> None:
    """The results as indented JSON."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write bench/results/latest.json."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k rows, no 1M, fewer repetitions")
    parser.add_argument("--skip-1m", action="store_true", help="leave out the 1M-row dev request")
    parser.add_argument("--out", default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data and logs)")
    parser.add_argument(
        "--skip-monitoring", action="store_true", help="leave out the monitoring on/off rows"
    )
    args = parser.parse_args(argv)
    plan = make_plan(args.quick, args.skip_1m)
    subprocess.run([os.path.join(ROOT, "scripts", "ensure_venv.sh")], check=True)
    workdir = tempfile.mkdtemp(prefix="sluice-bench-")
    failed = True
    results: dict = {}
    try:
        run(plan, workdir, results)
        if not args.skip_monitoring:
            log("monitoring on/off: two stacks side by side (bench/monitoring.py)")
            quick = plan.mode == "quick"
            results["monitoring"] = monitoring_bench.measure(
                os.path.join(workdir, "monitoring"), 3 if quick else 6, 200 if quick else 400
            )
        failed = False
    finally:
        if failed:
            write_json(results | {"error": "run failed; partial results"}, args.out)
            log(f"partial results in {args.out}")
        if failed or args.keep:
            log(f"data and service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rows, targets = summarise(results)
    if "monitoring" in results:
        rows += monitoring_bench.table_rows(results["monitoring"])
        targets["monitoring_batch_drop_le_5pct"] = results["monitoring"]["batch"]["within_budget"]
        targets["monitoring_single_p50_le_0_3ms"] = results["monitoring"]["single"]["within_budget"]
    results["targets"] = targets
    results["table"] = rows
    write_json(results, args.out)
    print_table(rows, results["meta"])
    print(
        f"targets met: {sum(targets.values())}/{len(targets)}; JSON in {os.path.relpath(args.out)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
