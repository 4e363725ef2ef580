"""Embedded stores against PostgreSQL: two local stacks side by side, the same data, interleaved.

    .venv/bin/python -m bench.stores            # dev x 6 rounds, 200 single rows, 3 fresh starts
    .venv/bin/python -m bench.stores --quick    # dev x 3 rounds, 100 single rows, 2 fresh starts

A keeps MLflow's backend store and the monitoring tables in SQLite files (local mode's
default); B keeps both in one PostgreSQL database (SLUICE_DB_*, as Compose does) on a throwaway
server from testkit/postgres.py. Artifacts, MLflow's auth store and everything else are the same
on both. Measured, each pair of requests alternating A-B, B-A:

- fresh starts: seconds from `scripts/local.sh start` (and from MLflow's launch) until the
  tracking server's /health answers, on an empty store (a new SLUICE_HOME; for B a new
  database), with no other stack running; and until local.sh start returns
- dev end to end on 20k generated rows (bench/data.py), one model: the first round registers
  version 1, every later round also goes through the promotion gate against the champion
- prod: single-row p50/p99 on kept-alive connections, a 20k-row batch (median of 3 -> rows/s)
- GET /monitoring?model=... p50 once the prod traffic's batches are stored

Prints a table with the ratio B/A and writes bench/results/stores.json (git-ignored). Both
stacks and the PostgreSQL server are stopped on the way out, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson

from bench.data import TARGET, query_csv, train_csv
from bench.loadgen import Client, analyze_target
from testkit.postgres import running_postgres
from testkit.stack import ROOT, LocalStack

RESULTS = os.path.join(ROOT, "bench", "results", "stores.json")
MODEL = "bench_stores"
ROWS = 20_000
SIDES = ("A", "B")
LABELS = {"A": "A sqlite", "B": "B postgresql"}
# Settings that would point a stack at other stores: removed, then B gets its SLUICE_DB_*.
STORE_SETTINGS = (
    "SLUICE_DB_HOST",
    "SLUICE_DB_PORT",
    "SLUICE_DB_NAME",
    "SLUICE_DB_USER",
    "SLUICE_DB_PASSWORD",
    "MLFLOW_BACKEND_STORE_URI",
    "MONITORING_DB_URL",
    "MONITORING_ENABLED",
)


@dataclass(frozen=True)
class Plan:
    mode: str
    dev_rounds: int
    singles: int
    batches: int
    monitoring_gets: int
    starts: int


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan("quick", dev_rounds=3, singles=100, batches=3, monitoring_gets=20, starts=2)
    return Plan("full", dev_rounds=6, singles=200, batches=3, monitoring_gets=20, starts=3)


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the table."""
    print(f"[bench.stores {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values) -> float:
    return float(statistics.median(values))


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def order(i: int) -> tuple[str, str]:
    """A-B on even turns, B-A on odd ones."""
    return SIDES if i % 2 == 0 else SIDES[::-1]


def expect_ok(status: int, body: bytes, what: str) -> None:
    if status != 200:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:600]!r}")


class Stores:
    """Makes the stacks: A on the embedded stores, B on a database of the PostgreSQL server."""

    def __init__(self, workdir: str, postgres):
        self.workdir = workdir
        self.postgres = postgres
        self.databases: list[str] = []

    def stack(self, side: str, name: str) -> LocalStack:
        env: dict = dict.fromkeys(STORE_SETTINGS)
        env["MONITORING_ENABLED"] = "1"
        if side == "B":
            database = f"bench_{name}"
            self.postgres.create_database(database)
            self.databases.append(database)
            env.update(
                SLUICE_DB_HOST=self.postgres.host,
                SLUICE_DB_PORT=str(self.postgres.port),
                SLUICE_DB_NAME=database,
                SLUICE_DB_USER=self.postgres.user,
                SLUICE_DB_PASSWORD=self.postgres.password,
            )
        return LocalStack(home=os.path.join(self.workdir, f"{side}-{name}"), extra_env=env)


def check_stores(stack: LocalStack, side: str) -> None:
    """A wrote SQLite files; B none (everything went to PostgreSQL)."""
    files = [
        os.path.exists(os.path.join(stack.home, "mlflow.db")),
        os.path.exists(os.path.join(stack.home, "trainer", "monitoring.db")),
    ]
    if side == "A" and not all(files):
        raise RuntimeError(f"stack A has no SQLite stores in {stack.home}")
    if side == "B" and any(files):
        raise RuntimeError(f"stack B fell back to SQLite in {stack.home}")


def stored_batches(stack: LocalStack, side: str, postgres) -> int:
    """Prod batches in the side's monitoring store (A: its SQLite file, B: PostgreSQL)."""
    query = "SELECT COUNT(*) FROM monitoring_batches"
    if side == "A":
        path = os.path.join(stack.home, "trainer", "monitoring.db")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute(query).fetchone()[0]
    with postgres.connect(stack.extra_env["SLUICE_DB_NAME"]) as conn:
        return conn.execute(query).fetchone()[0]


def timed_start(stack: LocalStack) -> dict:
    """local.sh start on an empty store: seconds until MLflow's /health answers (from the call
    and from MLflow's launch, the mtime of its pid file) and until local.sh returns."""
    pid_file = os.path.join(stack.home, "run", "mlflow.pid")
    seen: dict[str, float] = {}
    done = threading.Event()
    called_wall, called = time.time(), time.perf_counter()

    def poll() -> None:
        while not done.is_set():
            if "launched_wall" not in seen:
                try:
                    seen["launched_wall"] = os.stat(pid_file).st_mtime
                except FileNotFoundError:
                    pass
            if stack.healthy("mlflow"):
                seen["healthy"] = time.perf_counter() - called
                seen["healthy_wall"] = time.time()
                return
            done.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        stack.start()
        returned = time.perf_counter() - called
    finally:
        poller.join(timeout=10)
        done.set()
    if "healthy" not in seen:
        raise RuntimeError("MLflow's /health never answered while local.sh start ran")
    launched = seen.get("launched_wall", called_wall)
    return {
        "mlflow_healthy_s": seen["healthy"],
        "mlflow_from_launch_s": seen["healthy_wall"] - launched,
        "start_returned_s": returned,
    }


def measure_starts(stores: Stores, count: int) -> dict:
    """`count` fresh starts per side, alternating, each alone on the machine, then purged."""
    runs: dict = {side: [] for side in SIDES}
    for i in range(count):
        for side in order(i):
            stack = stores.stack(side, f"start{i}")
            try:
                result = timed_start(stack)
            finally:
                stack.run("stop", "--purge")
            runs[side].append(result)
            log(
                f"fresh start {side}: MLflow healthy {result['mlflow_healthy_s']:.2f} s "
                f"({result['mlflow_from_launch_s']:.2f} s after launch), "
                f"local.sh returned {result['start_returned_s']:.2f} s"
            )
    return runs


def dev_round(stack: LocalStack, csv: bytes, side: str) -> dict:
    target = analyze_target(stack.analyze_url, csv, phase="dev", model=MODEL, target=TARGET)
    client = Client(target, timeout=1800)
    try:
        seconds, status, body = client.timed()
    finally:
        client.close()
    expect_ok(status, body, f"dev on {side}")
    answer = orjson.loads(body)
    training = answer["training"]["booster_seconds"]
    promotion = answer.get("promotion") or {}
    return {
        "seconds": seconds,
        "training_seconds": training,
        "overhead_seconds": seconds - training,
        "version": answer["version"],
        "promoted": answer["promoted"],
        "rule": promotion.get("rule"),
    }


def interleaved(clients: dict[str, Client], pairs: int, what: str, rows: int | None = None):
    times: dict = {side: [] for side in SIDES}
    for i in range(pairs):
        for side in order(i):
            seconds, status, body = clients[side].timed()
            expect_ok(status, body, f"{what} on {side}")
            if rows is not None and orjson.loads(body).get("n_rows") != rows:
                raise RuntimeError(f"{what} on {side}: not {rows} rows scored")
            times[side].append(seconds)
    return times


class Getter:
    """GET one path on a kept-alive connection."""

    def __init__(self, url: str, path: str):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.path = host, int(port), path
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def timed(self) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        for attempt in range(2):
            try:
                self.conn.request("GET", self.path)
                response = self.conn.getresponse()
                body = response.read()
                return time.perf_counter() - started, response.status, body
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def settle(getter: Getter, rows: int, side: str, timeout: float = 60) -> float:
    """Seconds until the monitoring summary counts `rows` scored rows (the writers are async)."""
    started = time.perf_counter()
    while True:
        _, status, body = getter.timed()
        expect_ok(status, body, f"GET /monitoring on {side}")
        scored = orjson.loads(body).get("rows_scored") or 0
        if scored >= rows:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{side}: monitoring has {scored} of {rows} rows after {timeout} s")
        time.sleep(0.1)


def measure(plan: Plan, workdir: str) -> dict:
    train, batch, single = train_csv(ROWS), query_csv(ROWS), query_csv(1, seed=11)
    result: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": plan.mode,
        "rows": ROWS,
        "cpus": os.cpu_count(),
        "git_commit": subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "loadavg_start": os.getloadavg(),
    }
    log("starting a throwaway PostgreSQL server")
    with running_postgres() as postgres:
        result["postgres"] = {"bindir": postgres.bindir, "settings": "fsync=off (testkit/postgres)"}
        stores = Stores(workdir, postgres)
        result["starts"] = measure_starts(stores, plan.starts)
        stacks = {side: stores.stack(side, "main") for side in SIDES}
        started: list[LocalStack] = []
        try:
            for side in SIDES:
                log(f"starting stack {LABELS[side]}")
                stacks[side].start()
                started.append(stacks[side])

            log(f"dev: {plan.dev_rounds} rounds of {ROWS:,} rows per side, interleaved")
            dev: dict = {side: [] for side in SIDES}
            for i in range(plan.dev_rounds):
                for side in order(i):
                    run = dev_round(stacks[side], train, side)
                    dev[side].append(run)
                    log(
                        f"dev {side} round {i + 1}: {run['seconds']:.2f} s (booster "
                        f"{run['training_seconds']:.2f} s), v{run['version']}, rule {run['rule']}"
                    )
            result["dev"] = dev
            for side in SIDES:
                check_stores(stacks[side], side)

            clients = {
                kind: {
                    side: Client(
                        analyze_target(stacks[side].analyze_url, data, phase="prod", model=MODEL)
                    )
                    for side in SIDES
                }
                for kind, data in (("single", single), ("batch", batch))
            }
            warm_singles = 20
            for side in SIDES:
                for _ in range(warm_singles):
                    expect_ok(*clients["single"][side].timed()[1:], f"warm-up on {side}")
                expect_ok(*clients["batch"][side].timed()[1:], f"warm-up batch on {side}")
            log(f"prod: {plan.singles} single rows per side, interleaved")
            singles = interleaved(clients["single"], plan.singles, "single row", rows=1)
            log(f"prod: {plan.batches} batches of {ROWS:,} rows per side, interleaved")
            batches = interleaved(clients["batch"], plan.batches, "batch", rows=ROWS)
            for sides in clients.values():
                for client in sides.values():
                    client.close()
            result["single"] = {side: {"seconds": singles[side]} for side in SIDES}
            result["batch"] = {side: {"seconds": batches[side]} for side in SIDES}

            scored = warm_singles + ROWS + plan.singles + plan.batches * ROWS
            stored = warm_singles + 1 + plan.singles + plan.batches
            getters = {
                side: Getter(stacks[side].url("preprocess"), f"/monitoring?model={MODEL}")
                for side in SIDES
            }
            settled = {side: settle(getters[side], scored, side) for side in SIDES}
            log(f"GET /monitoring: {plan.monitoring_gets} per side, interleaved")
            gets = interleaved(getters, plan.monitoring_gets, "GET /monitoring")
            for getter in getters.values():
                getter.close()
            for side in SIDES:
                found = stored_batches(stacks[side], side, postgres)
                if found != stored:
                    raise RuntimeError(f"{side}: {found} monitoring batches stored, not {stored}")
            result["monitoring"] = {
                side: {
                    "seconds": gets[side],
                    "rows_scored": scored,
                    "batches": stored,
                    "settled_s": settled[side],
                }
                for side in SIDES
            }
        finally:
            for stack in started:
                done = stack.run("stop")
                if done.returncode:
                    log(f"stop {stack.home} failed: {done.stderr.strip()[-300:]}")
    result["loadavg_end"] = os.getloadavg()
    return result


def ratio(b: float, a: float) -> str:
    return f"{b / a:.2f}" if a else "-"


def summarise(result: dict) -> list[list[str]]:
    """Rows: measure, A, B, B/A, which way is better, the samples (A | B)."""
    rows: list[list[str]] = []

    def row(name, a, b, fmt, better, samples=""):
        rows.append([name, fmt.format(a), fmt.format(b), ratio(b, a), better, samples])

    def listed(values, fmt="{:.2f}"):
        return " ".join(fmt.format(v) for v in values)

    starts = result["starts"]
    for key, name in (
        ("mlflow_healthy_s", "fresh start: local.sh -> MLflow healthy (s)"),
        ("mlflow_from_launch_s", "fresh start: MLflow launch -> healthy (s)"),
        ("start_returned_s", "fresh start: local.sh start returns (s)"),
    ):
        values = {side: [run[key] for run in starts[side]] for side in SIDES}
        row(
            name,
            median(values["A"]),
            median(values["B"]),
            "{:.2f}",
            "lower",
            f"{listed(values['A'])} | {listed(values['B'])}",
        )

    dev = result["dev"]
    for key, name, pick in (
        ("seconds", f"dev {ROWS // 1000}k rows, all rounds (s)", slice(None)),
        ("seconds", "dev, rounds 2+ (promotion gate) (s)", slice(1, None)),
        ("overhead_seconds", "dev, end to end minus booster (s)", slice(None)),
        ("training_seconds", "dev, booster training (s)", slice(None)),
    ):
        values = {side: [run[key] for run in dev[side][pick]] for side in SIDES}
        if not values["A"]:
            continue
        row(
            name,
            median(values["A"]),
            median(values["B"]),
            "{:.2f}",
            "lower",
            f"{listed(values['A'])} | {listed(values['B'])}",
        )

    single = {side: result["single"][side]["seconds"] for side in SIDES}
    for q in (50, 99):
        row(
            f"prod single row p{q} (ms, n={len(single['A'])})",
            pct(single["A"], q) * 1000,
            pct(single["B"], q) * 1000,
            "{:.2f}",
            "lower",
        )
    batch = {side: result["batch"][side]["seconds"] for side in SIDES}
    row(
        f"prod batch {ROWS // 1000}k rows, median of {len(batch['A'])} (rows/s)",
        ROWS / median(batch["A"]),
        ROWS / median(batch["B"]),
        "{:,.0f}",
        "higher",
        f"{listed(batch['A'])} | {listed(batch['B'])} s",
    )
    gets = {side: result["monitoring"][side]["seconds"] for side in SIDES}
    row(
        f"GET /monitoring p50 (ms, n={len(gets['A'])})",
        pct(gets["A"], 50) * 1000,
        pct(gets["B"], 50) * 1000,
        "{:.2f}",
        "lower",
        f"over {result['monitoring']['A']['batches']} batches, "
        f"{result['monitoring']['A']['rows_scored']:,} rows",
    )
    return rows


def print_table(rows: list[list[str]], result: dict) -> None:
    header = ["measure", LABELS["A"], LABELS["B"], "B/A", "better", "samples A | B"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(
        f"Sluice stores: SQLite (A) vs PostgreSQL (B) ({result['mode']}, {result['cpus']} CPUs, "
        f"commit {result['git_commit'][:8]}, load {result['loadavg_start'][0]:.2f} -> "
        f"{result['loadavg_end'][0]:.2f})"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 dev rounds, 100 single rows")
    parser.add_argument("--out", default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (service logs)")
    args = parser.parse_args(argv)
    plan = make_plan(args.quick)
    workdir = tempfile.mkdtemp(prefix="sluice-bench-stores-")
    began = time.perf_counter()
    failed = True
    try:
        result = measure(plan, workdir)
        failed = False
    finally:
        if failed or args.keep:
            log(f"service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["wall_seconds"] = time.perf_counter() - began
    rows = summarise(result)
    result["table"] = rows
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as handle:
        handle.write(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print_table(rows, result)
    log(f"done in {result['wall_seconds']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
