"""Training and scoring by reference: one process against a Dask cluster of two workers.

    .venv/bin/python -m bench.dask_scale                    # 1M and 5M rows, then the limits
    .venv/bin/python -m bench.dask_scale --quick            # 1M rows, no limits: a few minutes
    .venv/bin/python -m bench.dask_scale --rows 2000000 --limit-mib 1500

Generated data (bench/data.py's churn table: 5 numbers, 3 categories, a date, a yes/no target
with signal, 2-5% gaps) is written as --files Parquet files (--format csv for CSV) under a temp
data root. Some category levels are missing from some files (a band of `channel` levels,
`central` from `region`, `premium` from `plan`). Prod rows come from another seed.

For every row count, runs in processes of their own:

- single train: a fresh `python` reads every file (`by_reference.read_all`) and trains
  (`training.train_model`), as the trainer does without DASK_SCHEDULER_ADDRESS, with
  XGBoost on every core (TRAIN_NTHREAD=0); again on one thread for reference;
- dask train: a fresh driver calls `cluster.train_on_cluster` on a scheduler and two
  workers (testkit/dask_cluster.py: distributed's CLI, one thread each, ports 18600-18699),
  restarted before the run so every worker starts empty;
- single score / dask score: the model the same path trained scores the prod files
  (`by_reference.score_locally` / `cluster.score_on_cluster`) into one Parquet file.

Measured: seconds of the work (imports and cluster start excluded, both in the JSON), CPU
seconds, and the peak RSS of each process: the kernel's high-water mark (VmHWM) of the single
process, of the driver and of each worker process (fresh processes, so it covers the run), with
a 100 ms /proc poll alongside (it also sees the nanny, the scheduler, restarted workers).

Then the case a cluster is for, at the largest row count: a memory limit per process, the
Dask path with both workers held to it (their nanny's --memory-limit) against one process
held to it by a watchdog with the nanny's rule (SIGKILL once RSS passes
distributed.worker.memory.terminate, 95%, of the limit; polled every 100 ms). Two limits: the
in-memory table of the cells (below the data size), and the smallest limit (64 MiB steps) under
whose spill fraction (70%) the unlimited run's workers peaked. --limit-mib runs one given limit.

Prints a table and writes bench/results/dask_scale.json (git-ignored); everything it started
is stopped and the temp dir removed on the way out (--keep keeps the logs and data).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

import orjson

from testkit.stack import ROOT

RESULTS = os.path.join(ROOT, "bench", "results", "dask_scale.json")
TARGET = "churned"
PORT_BASE = 18600  # 2 + 3 * workers ports from here; the limit case's cluster from +20
WORKERS = 2
MIB = 2**20
POLL_SECONDS = 0.1  # as the nanny's memory monitor (distributed.worker.memory.monitor-interval)
SAMPLE_ROWS = 200_000
# Workaround for the driver (pipeline/dask_client.py polls client.scheduler_info(n_workers=-1) for
# lost workers): the client's periodic refresh (every 2 s, n_workers=0) can overwrite the
# answer before it is returned, so "workers" reads empty and a healthy job fails with
# cluster_worker_lost ("no worker is left"), more often on a loaded box. Refreshing hourly
# makes the overwrite practically never happen; nothing else in the runs depends on it.
DRIVER_ENV = {"DASK_DISTRIBUTED__CLIENT__SCHEDULER_INFO_INTERVAL": "3600s"}


def log(message: str) -> None:
    print(f"[bench.dask_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ----------------------------------------------------------------------------------------


def _thin_levels(frame, index: int):
    """Take some category levels out of file `index` (their rows get another level), so no
    single file holds every level and the cluster must count levels over all partitions."""
    channels = [f"ch{i:02d}" for i in range(40)]
    band = {channels[(4 * index + k) % 40] for k in range(4)}
    gone = frame["channel"].isin(band).to_numpy()
    frame.loc[gone, "channel"] = channels[(4 * index + 20) % 40]
    if index % 3 == 0:
        frame.loc[(frame["region"] == "central").to_numpy(), "region"] = "east"
    if index % 4 == 1:
        frame.loc[(frame["plan"] == "premium").to_numpy(), "plan"] = "plus"
    return frame


def write_files(
    folder: str, rows: int, n_files: int, seed: int, fmt: str, target: bool = True
) -> dict:
    """rows split over n_files files in folder; returns their sizes."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.data import make_table, to_csv_bytes

    os.makedirs(folder, exist_ok=True)
    total = 0
    for index in range(n_files):
        n = rows // n_files + (rows % n_files if index == n_files - 1 else 0)
        frame = _thin_levels(make_table(n, seed + 1000 * index), index)
        if not target:
            frame = frame.drop(columns=[TARGET])
        path = os.path.join(folder, f"part-{index:02d}.{fmt}")
        if fmt == "csv":
            with open(path, "wb") as handle:
                handle.write(to_csv_bytes(frame))
        else:
            frame["signup_date"] = pd.to_datetime(frame["signup_date"]).dt.date
            table = pa.Table.from_pandas(frame, preserve_index=False)
            # Whole-number columns as integers, as an export from a database would type them.
            for name in ("tenure_months", "support_tickets"):
                i = table.schema.get_field_index(name)
                table = table.set_column(i, name, table.column(name).cast(pa.int32()))
            pq.write_table(table, path)
        total += os.path.getsize(path)
        del frame
    return {"files": n_files, "bytes": total, "format": fmt}


# -- memory of processes -------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def cpu_of(pid: int) -> float:
    """User + system seconds a live process has used."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hwm_of(pid: int) -> int | None:
    """The kernel's peak RSS of a live process (VmHWM)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Watch:
    """Poll the RSS of named processes every POLL_SECONDS: `roots` are process ids whose
    descendants are found again every second (a nanny's worker process, restarted or not).
    With kill_at, SIGKILLs the process group of `guarded` once its RSS passes it."""

    def __init__(self, roots: dict[str, int], guarded: str | None = None, kill_at: int = 0):
        self.roots = roots
        self.guarded = guarded
        self.kill_at = kill_at
        self.peaks: dict[str, int] = {}  # role -> peak RSS over every pid it had
        self.pids: dict[str, list[int]] = {}  # role -> pids seen, in order
        self.killed: dict | None = None
        self.timeline: list = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)

    def _discover(self) -> dict[int, str]:
        import psutil

        found: dict[int, str] = {}
        for name, pid in self.roots.items():
            found[pid] = name if not name.startswith("worker") else f"{name}.nanny"
            if not name.startswith("worker"):
                continue
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        command = " ".join(child.cmdline())
                        if "spawn_main" in command:
                            found[child.pid] = name
        return found

    def _run(self) -> None:
        members: dict[int, str] = {}
        discovered = 0.0
        last_line = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - discovered >= 1.0:
                members = self._discover()
                discovered = now
                for pid, role in members.items():
                    seen = self.pids.setdefault(role, [])
                    if pid not in seen:
                        seen.append(pid)
            current: dict[str, int] = {}
            for pid, role in members.items():
                rss = rss_of(pid)
                if rss is None:
                    continue
                current[role] = current.get(role, 0) + rss
                self.peaks[role] = max(self.peaks.get(role, 0), rss)
                if role == self.guarded and self.kill_at and rss > self.kill_at and not self.killed:
                    self.killed = {"rss": rss, "seconds": now - self.started}
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
            if now - last_line >= 2.0:
                self.timeline.append(
                    [round(now - self.started, 1), {k: v // MIB for k, v in current.items()}]
                )
                last_line = now
            self._stop.wait(POLL_SECONDS)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- one run in a process of its own -------------------------------------------------------------


class Context:
    """What a job's work is given, outside a job: stages go to stderr with the time."""

    job_id = "bench"
    cancelled = False

    def __init__(self):
        self.started = time.perf_counter()
        self.stage = None

    def progress(self, **values) -> None:
        stage = values.get("stage")
        if stage and stage != self.stage:
            self.stage = stage
            print(f"STAGE {time.perf_counter() - self.started:.1f} {stage}", file=sys.stderr)
            sys.stderr.flush()

    report = progress

    def check(self) -> None:
        pass


def _save_model(trained, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "booster.ubj"), "wb") as handle:
        handle.write(bytes(trained.model.booster.save_raw("ubj")))
    extras = {"spec": trained.spec, "profile": trained.model.profile}
    with open(os.path.join(folder, "model.json"), "wb") as handle:
        handle.write(orjson.dumps(extras, option=orjson.OPT_SERIALIZE_NUMPY))


def _load_model(folder: str):
    import xgboost as xgb

    from trainer.model import sluice_cells
    from trainer.model.sluice_model import SluiceModel

    booster = xgb.Booster()
    with open(os.path.join(folder, "booster.ubj"), "rb") as handle:
        booster.load_model(bytearray(handle.read()))
    with open(os.path.join(folder, "model.json"), "rb") as handle:
        extras = orjson.loads(handle.read())
    model = SluiceModel(booster, extras["spec"], sluice_cells)
    model.profile = extras["profile"]
    return model


def _trained_summary(trained) -> dict:
    return {
        "metrics": trained.metrics,
        "best_rounds": trained.best_rounds,
        "booster_seconds": trained.train_seconds,
        "n_train": trained.n_train,
        "n_valid": trained.n_valid,
        "rows_out": trained.report.get("rows_out"),
        "features": len(trained.spec["feature_names"]),
        "levels": {
            i["name"]: len(i.get("levels") or i.get("categories") or [])
            for i in trained.spec["inputs"]
            if i["kind"] == "categorical"
        },
    }


def child(spec: dict) -> dict:
    """One measured run (`path` single or dask, `phase` train or score) in this process."""
    from trainer.fit.config import TrainingConfig
    from trainer.sources import by_reference
    from trainer.sources import files as datasource
    from trainer.sources.files import DataSettings

    if spec["path"] == "dask":
        from trainer.pipeline import cluster
    else:
        from trainer.pipeline.training import train_model
    import xgboost  # noqa: F401  (imported before the baseline, as a trainer has it)

    settings = DataSettings(root=spec["root"])
    context = Context()
    result: dict = {"pid": os.getpid(), "baseline_rss": rss_of(os.getpid())}
    with open(f"/proc/{os.getpid()}/clear_refs", "w") as handle:
        handle.write("5")  # VmHWM from here: the imports are not the run's
    config = TrainingConfig(nthread=spec.get("nthread", 0))
    cpu = os.times()
    started = time.perf_counter()
    files = datasource.resolve_files(spec["uri"], settings)
    if spec["phase"] == "train":
        if spec["path"] == "single":
            table, report = by_reference.read_all(files, settings, context)
            result["read_seconds"] = time.perf_counter() - started
            result["table_bytes"] = table.nbytes
            result["rows_in"] = table.num_rows
            context.progress(stage="training")
            trained = train_model(table, TARGET, "auto", config, delimiter=",")
            del table
        else:
            trained = cluster.train_on_cluster(
                spec["address"],
                files,
                settings,
                TARGET,
                "auto",
                config,
                context,
                sample_rows=SAMPLE_ROWS,
            )
            result["cluster_report"] = trained.report.get("cluster")
        result["seconds"] = time.perf_counter() - started
        result.update(_trained_summary(trained))
        _save_model(trained, spec["model_dir"])
    else:
        from trainer.lifecycle.serving import Champion

        model = _load_model(spec["model_dir"])
        output = datasource.resolve_output(spec["output"], settings)
        options = by_reference.ProdOptions()
        champion = Champion("1", model, None)
        if spec["path"] == "single":
            model.use_threads(small=1, large=0)  # as a served champion (lifecycle/serving.py)
            answer = by_reference.score_locally(
                files, settings, output, options, champion, "bench", None, context
            )
        else:
            answer = cluster.score_on_cluster(
                spec["address"], files, settings, output, options, champion, "bench", None, context
            )
        result["seconds"] = time.perf_counter() - started
        result["rows_scored"] = answer["n_rows"]
        result["output_bytes"] = os.path.getsize(output.location)
    result["peak_rss"] = hwm_of(os.getpid())
    now = os.times()
    result["cpu_seconds"] = now.user - cpu.user + now.system - cpu.system
    return result


def child_main(spec_path: str) -> None:
    with open(spec_path, "rb") as handle:
        spec = orjson.loads(handle.read())
    result = child(spec)
    with open(spec["result"], "wb") as handle:
        handle.write(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY))
    sys.stdout.flush()
    sys.stderr.flush()
    # A distributed client's teardown at exit can stall; the result is written, so go now.
    os._exit(0)


# -- the parent: data, clusters, runs ------------------------------------------------------------


class Runner:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.root = os.path.join(workdir, "data")
        self.count = 0
        os.makedirs(os.path.join(self.root, "out"), exist_ok=True)

    def run(
        self,
        spec: dict,
        timeout: float,
        cluster=None,
        kill_at: int = 0,
    ) -> dict:
        """Start a child for spec, watch its memory (and the cluster's), wait for its result."""
        self.count += 1
        name = f"{self.count:02d}-{spec['path']}-{spec['phase']}-{spec['rows']}"
        spec = {**spec, "root": self.root, "result": os.path.join(self.workdir, f"{name}.json")}
        spec_path = os.path.join(self.workdir, f"{name}.spec.json")
        with open(spec_path, "wb") as handle:
            handle.write(orjson.dumps(spec))
        log_path = os.path.join(self.workdir, f"{name}.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
        env["PYTHONPATH"] = ROOT
        if spec["path"] == "dask":
            env.update(DRIVER_ENV)
        roots: dict[str, int] = {}
        launched = time.perf_counter()
        with open(log_path, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.dask_scale", "--child", spec_path],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        role = "single" if spec["path"] == "single" else "driver"
        roots[role] = process.pid
        if cluster is not None:
            roots["scheduler"] = cluster.processes["scheduler"].pid
            for i in range(cluster.n_workers):
                roots[f"worker-{i}"] = cluster.processes[f"worker-{i}"].pid
        outcome: dict = {"name": name, "path": spec["path"], "phase": spec["phase"]}
        log_offsets = _log_sizes(cluster) if cluster is not None else {}
        with Watch(roots, guarded=role if kill_at else None, kill_at=kill_at) as watch:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                outcome["timed_out"] = timeout
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
            if cluster is not None:
                # The workers' own high-water marks and CPU time, before a restart clears them.
                workers = {
                    role_: pids[-1]
                    for role_, pids in watch.pids.items()
                    if role_.startswith("worker") and not role_.endswith("nanny")
                }
                outcome["worker_hwm"] = {role_: hwm_of(pid) for role_, pid in workers.items()}
                outcome["worker_cpu"] = {role_: cpu_of(pid) for role_, pid in workers.items()}
                outcome["cluster_log"] = _cluster_logs(cluster, log_offsets)
        outcome["process_seconds"] = time.perf_counter() - launched
        outcome["returncode"] = process.returncode
        outcome["polled_peaks"] = dict(watch.peaks)
        outcome["pids"] = dict(watch.pids)
        outcome["timeline"] = watch.timeline
        if watch.killed:
            outcome["killed"] = watch.killed
        with open(log_path, "rb") as handle:
            text = handle.read().decode(errors="replace")
        stages = [line for line in text.splitlines() if line.startswith("STAGE ")]
        outcome["last_stage"] = stages[-1][6:] if stages else None
        if process.returncode == 0 and os.path.exists(spec["result"]):
            with open(spec["result"], "rb") as handle:
                outcome.update(orjson.loads(handle.read()))
            outcome["ok"] = True
        else:
            outcome["ok"] = False
            outcome["log_tail"] = text[-3000:]
            lines = [line for line in text.splitlines() if line.strip()]
            if process.returncode and lines and not watch.killed:
                outcome["error"] = lines[-1][:300]
        outcome["peaks"] = _peaks(outcome)
        return outcome


def _cluster(memory_limit: str, port_base: int):
    from testkit.dask_cluster import DaskCluster

    return DaskCluster(
        n_workers=WORKERS,
        memory_limit=memory_limit,
        nthreads=1,
        port_base=port_base,
        env={"PYTHONPATH": ROOT},
    )


def _log_sizes(cluster) -> dict[str, int]:
    sizes = {}
    for i in range(cluster.n_workers):
        with contextlib.suppress(OSError):
            sizes[f"worker-{i}"] = os.path.getsize(cluster.log_path(f"worker-{i}"))
    return sizes


def _cluster_logs(cluster, offsets: dict[str, int]) -> dict:
    """What the workers' logs say since `offsets`: workers the nanny restarted (memory),
    pauses (memory above the pause fraction), spilling."""
    found = {"paused": 0, "restarted": 0, "spilled": 0, "killed_lines": []}
    for i in range(cluster.n_workers):
        with contextlib.suppress(OSError), open(cluster.log_path(f"worker-{i}"), "rb") as handle:
            handle.seek(offsets.get(f"worker-{i}", 0))
            for line in handle.read().decode(errors="replace").splitlines():
                lower = line.lower()
                if "pausing worker" in lower:
                    found["paused"] += 1
                if "memory budget" in lower and "restarting" in lower:
                    found["restarted"] += 1
                    found["killed_lines"].append(line[-200:])
                if "spill" in lower and "unmanaged" in lower:
                    found["spilled"] += 1
    found["killed_lines"] = found["killed_lines"][-6:]
    return found


def _worker_limits(cluster) -> list[int]:
    with cluster.client() as client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        return [int(w.get("memory_limit") or 0) for w in workers]


def _peaks(outcome: dict) -> dict:
    """Peak RSS per role: the high-water mark when known (exact), else the polled peak."""
    peaks = dict(outcome.get("polled_peaks", {}))
    own = "single" if outcome["path"] == "single" else "driver"
    if outcome.get("peak_rss"):
        peaks[own] = max(outcome["peak_rss"], peaks.get(own, 0))
    for role, hwm in (outcome.get("worker_hwm") or {}).items():
        if hwm:
            peaks[role] = max(hwm, peaks.get(role, 0))
    return peaks


def measure(args, workdir: str) -> dict:
    import dask
    import distributed  # noqa: F401  (its config defaults: the nanny's memory fractions)

    rows_list = [int(r) for r in args.rows.split(",")]
    memory = dask.config.get("distributed.worker.memory")
    result: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "cpus": os.cpu_count(),
        "workers": WORKERS,
        "worker_threads": 1,
        "git_commit": subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "loadavg_start": os.getloadavg(),
        "format": args.format,
        "nanny_fractions": {k: memory[k] for k in ("target", "spill", "pause", "terminate")},
        "driver_env": DRIVER_ENV,
        "runs": {},
        "data": {},
    }
    runner = Runner(workdir)
    for rows in rows_list:
        log(f"writing {rows:,} training and {rows:,} prod rows as {args.files} {args.format} files")
        began = time.perf_counter()
        train, prod = (os.path.join(runner.root, f"{kind}-{rows}") for kind in ("train", "prod"))
        result["data"][str(rows)] = {
            "train": write_files(train, rows, args.files, 20240601, args.format),
            "prod": write_files(prod, rows, args.files, 7, args.format, target=False),
            "seconds": time.perf_counter() - began,
        }

    started = time.perf_counter()
    cluster = _cluster(args.worker_memory, PORT_BASE)
    cluster.start()
    try:
        result["cluster_start_seconds"] = time.perf_counter() - started
        result["worker_memory_limit"] = _worker_limits(cluster)
        for rows in rows_list:
            runs: dict = {}
            result["runs"][str(rows)] = runs
            plan = [("single train", "single", "train", 0)]
            if 1 in args.single_nthread:
                plan.append(("single train 1 thread", "single", "train", 1))
            plan += [
                ("single score", "single", "score", 0),
                ("dask train", "dask", "train", 0),
                ("dask score", "dask", "score", 0),
            ]
            for key, path, phase, nthread in plan:
                if phase == "score" and not runs.get(f"{path} train", {}).get("ok"):
                    continue
                spec = {
                    "path": path,
                    "phase": phase,
                    "rows": rows,
                    "nthread": nthread,
                    "uri": f"{phase.replace('score', 'prod')}-{rows}/",
                    "model_dir": os.path.join(workdir, f"model-{path}-{rows}-{nthread}"),
                    "output": f"out/{path}-{rows}.parquet",
                }
                if phase == "score":
                    spec["model_dir"] = runs[f"{path} train"]["model_dir"]
                log(f"{rows:,} rows: {key}")
                if path == "dask":
                    began = time.perf_counter()
                    cluster.restart()  # empty workers: each run's peaks are its own
                    spec["address"] = cluster.address
                    restart_seconds = time.perf_counter() - began
                outcome = runner.run(
                    spec, _timeout(args, rows), cluster if path == "dask" else None
                )
                outcome["model_dir"] = spec["model_dir"]
                if path == "dask":
                    outcome["cluster_restart_seconds"] = restart_seconds
                runs[key] = outcome
                _say(outcome)
    finally:
        cluster.close()

    if args.limit_mib or not (args.quick or args.skip_limit):
        result["limit"] = limit_cases(args, runner, result, max(rows_list), memory)
    result["loadavg_end"] = os.getloadavg()
    return result


def _timeout(args, rows: int) -> float:
    return args.timeout * max(1.0, rows / 1_000_000)


def _say(outcome: dict) -> None:
    peaks = ", ".join(f"{k} {v / MIB:.0f}" for k, v in sorted(outcome["peaks"].items()))
    if outcome["ok"]:
        log(f"  {outcome['seconds']:.1f} s; peak RSS MiB: {peaks}")
        return
    why = "killed by the watchdog" if outcome.get("killed") else "failed"
    if outcome.get("timed_out"):
        why = f"timed out after {outcome['timed_out']:.0f} s"
    log(f"  {why} (last stage: {outcome.get('last_stage')}); peak RSS MiB: {peaks}")
    if outcome.get("error"):
        log(f"  {outcome['error']}")


def limit_cases(args, runner: Runner, result: dict, rows: int, memory: dict) -> dict:
    """Limits per process, each run by the Dask path (every worker held to it) and by one
    process held to it by the watchdog:

    - `table`: the in-memory table of the cells (the issue's "below the data size");
    - `fit`: the smallest limit (in 64 MiB steps) under whose spill fraction the workers'
      peaks of the unlimited run stay, when one process's peak passes its terminate fraction;
    - or the one limit given with --limit-mib.
    """
    runs = result["runs"][str(rows)]
    single, dask_run = runs.get("single train", {}), runs.get("dask train", {})
    table_bytes = single.get("table_bytes")
    terminate = float(memory["terminate"])
    found: dict = {
        "rows": rows,
        "table_bytes": table_bytes,
        "data_bytes": result["data"][str(rows)]["train"]["bytes"],
        "terminate_fraction": terminate,
        "how": (
            f"one process: a watchdog SIGKILLs it once its RSS (/proc statm, polled every "
            f"{POLL_SECONDS * 1000:.0f} ms) passes {terminate:.0%} of the limit, the rule of "
            "Dask's nanny (distributed.worker.memory.terminate); workers: their nanny "
            "(dask worker --memory-limit). No RLIMIT_AS (it counts OpenMP's and XGBoost's "
            "virtual reservations) and no cgroup (the cgroups here are the sandbox's)."
        ),
        "cases": {},
    }
    limits: dict[str, int] = {}
    if args.limit_mib:
        limits["given"] = args.limit_mib * MIB
    else:
        if table_bytes:
            limits["table"] = table_bytes // MIB * MIB
        workers = [dask_run.get("peaks", {}).get(f"worker-{i}", 0) for i in range(WORKERS)]
        single_peak = single.get("peaks", {}).get("single", 0)
        if dask_run.get("ok") and single_peak:
            step = 64 * MIB
            fit = -(-int(max(workers) / float(memory["spill"])) // step) * step
            if single_peak > terminate * fit:
                limits["fit"] = fit
            else:
                found["cases"]["fit"] = {
                    "skipped": f"one process peaked at {single_peak / MIB:.0f} MiB, within "
                    f"{terminate:.0%} of the {fit / MIB:.0f} MiB the workers need"
                }
    # A limited run may stall rather than fail (a worker paused above the pause fraction
    # waits for memory that never frees): bounded by twice the unlimited run, plus 5 minutes.
    bound = {
        side: min(_timeout(args, rows), 2 * run["process_seconds"] + 300)
        if run.get("process_seconds")
        else _timeout(args, rows)
        for side, run in (("single", single), ("dask", dask_run))
    }
    for index, (name, limit) in enumerate(limits.items()):
        case: dict = {"limit_bytes": limit, "kill_at_bytes": int(limit * terminate)}
        found["cases"][name] = case
        spec = {"phase": "train", "rows": rows, "uri": f"train-{rows}/", "nthread": 0}
        log(f"limit {name}: {rows:,} rows, {limit / MIB:.0f} MiB per process")
        log("  one process under the watchdog")
        case["single"] = runner.run(
            {**spec, "path": "single", "model_dir": os.path.join(runner.workdir, f"lim-{name}-1")},
            bound["single"],
            kill_at=case["kill_at_bytes"],
        )
        _say(case["single"])
        log(f"  dask, {WORKERS} workers with --memory-limit {limit // MIB}MiB")
        cluster = _cluster(f"{limit // MIB}MiB", PORT_BASE + 20 * (index + 1))
        try:
            try:
                cluster.start()
            except Exception as err:  # workers killed by their nanny before they registered
                case["dask"] = {"path": "dask", "phase": "train", "ok": False, "peaks": {}}
                case["dask"]["error"] = f"the cluster did not start: {str(err)[:200]}"
                _say(case["dask"])
                continue
            case["worker_memory_limit"] = _worker_limits(cluster)
            case["dask"] = runner.run(
                {
                    **spec,
                    "path": "dask",
                    "address": cluster.address,
                    "model_dir": os.path.join(runner.workdir, f"lim-{name}-dask"),
                },
                bound["dask"],
                cluster,
            )
        finally:
            cluster.close()
        _say(case["dask"])
    return found


# -- the table -----------------------------------------------------------------------------------


def _mib(value) -> str:
    return f"{value / MIB:,.0f}" if value else "-"


def _status(outcome: dict) -> str:
    if outcome.get("ok"):
        return f"{outcome['seconds']:.1f}"
    if outcome.get("killed"):
        return f"killed at {outcome['killed']['seconds']:.0f}"
    if outcome.get("timed_out"):
        return f"timeout {outcome['timed_out']:.0f}"
    return "failed"


def _row(label: str, key: str, outcome: dict, note: str) -> list[str]:
    peaks = outcome["peaks"]
    own = peaks.get("single") or peaks.get("driver")
    dask = outcome["path"] == "dask"
    workers = [peaks.get(f"worker-{i}") for i in range(WORKERS)]
    cpu = outcome.get("cpu_seconds")
    if cpu is not None and dask:
        cpu += sum((outcome.get("worker_cpu") or {}).values())
    if dask:
        logs = outcome.get("cluster_log") or {}
        restarts = logs.get("restarted", 0)
        if restarts or logs.get("paused"):
            note += f"; nanny: {restarts} worker restarts, {logs.get('paused', 0)} pauses"
    if not outcome.get("ok") and outcome.get("error"):
        note += f"; {outcome['error'][:90]}"
    return [
        label,
        key,
        _status(outcome),
        f"{cpu:.0f}" if cpu is not None and outcome.get("ok") else "",
        _mib(own),
        " / ".join(_mib(w) for w in workers) if dask else "",
        _mib((own or 0) + sum(w or 0 for w in workers)) if dask else "",
        note.strip("; "),
    ]


def _quality(outcome: dict) -> str:
    metrics = outcome.get("metrics") or {}
    if "roc_auc" not in metrics:
        return ""
    return f"AUC {metrics['roc_auc']:.4f}, {outcome.get('best_rounds')} rounds"


def summarise(result: dict) -> list[list[str]]:
    table = []
    for rows, runs in result["runs"].items():
        for key, outcome in runs.items():
            note = _quality(outcome) if outcome["phase"] == "train" else ""
            if outcome.get("booster_seconds"):
                note += f"; booster {outcome['booster_seconds']:.0f} s"
            if outcome.get("table_bytes"):
                note = f"table {_mib(outcome['table_bytes'])} MiB; " + note
            table.append(_row(f"{int(rows) / 1e6:g}M", key, outcome, note))
    limit = result.get("limit") or {}
    for name, case in limit.get("cases", {}).items():
        if "single" not in case:
            continue
        label = f"{limit['rows'] / 1e6:g}M @ {case['limit_bytes'] / MIB:,.0f} MiB"
        for side in ("single", "dask"):
            outcome = case[side]
            note = f"limit: {name}"
            if outcome.get("killed"):
                rss, fraction = outcome["killed"]["rss"], limit["terminate_fraction"]
                note += f"; RSS {_mib(rss)} MiB > {fraction:.0%} of the limit"
                note += f" in stage: {outcome.get('last_stage') or '(imports)'}"
            elif outcome.get("ok"):
                note += "; " + _quality(outcome)
            table.append(_row(label, f"{side} train", outcome, note))
    return table


def print_table(rows: list[list[str]], result: dict) -> None:
    header = ["rows", "run", "seconds", "cpu s", "peak MiB", "workers MiB", "sum MiB", "notes"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(
        f"Sluice by reference: one process vs Dask ({WORKERS} workers x 1 thread) "
        f"({result['mode']}, {result['cpus']} CPUs, {result['format']}, commit "
        f"{result['git_commit'][:8]}, load {result['loadavg_start'][0]:.2f} -> "
        f"{result['loadavg_end'][0]:.2f})"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(line)
    print(
        "seconds: the work in a fresh process (imports and cluster start excluded); cpu s: its "
        "CPU time, plus the workers' for Dask; peak: VmHWM of the one process or of the Dask "
        "driver; workers: VmHWM of each worker process (nanny and scheduler in the JSON); sum: "
        "driver + workers."
    )
    print(
        "Dask drivers ran with "
        + " ".join(f"{k}={v}" for k, v in result["driver_env"].items())
        + ": a workaround for a false cluster_worker_lost (see DRIVER_ENV)."
    )
    limit = result.get("limit") or {}
    if limit.get("cases"):
        table = limit["table_bytes"] or 0
        print(
            f"limits: {limit['rows'] / 1e6:g}M rows; in-memory table {_mib(table)} MiB, files "
            f"{_mib(limit['data_bytes'])} MiB on disk. {limit['how']}"
        )
        for name, case in limit["cases"].items():
            if "skipped" in case:
                print(f"limit {name}: skipped, {case['skipped']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", default=None, help="row counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="1M rows, no limit cases")
    parser.add_argument("--files", type=int, default=10, help="files (partitions) per data set")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds per run per million rows (min 1M)"
    )
    parser.add_argument(
        "--worker-memory", default="auto", help="workers' --memory-limit outside the limit case"
    )
    parser.add_argument(
        "--single-nthread",
        default="0,1",
        help="XGBoost threads of the single-machine trainings (0: every core, TRAIN_NTHREAD's "
        "default; 1 as a reference, the threads of a Dask worker)",
    )
    parser.add_argument(
        "--limit-mib", type=int, default=0, help="one limit case at this limit (also --quick)"
    )
    parser.add_argument("--skip-limit", action="store_true", help="no memory-limit cases")
    parser.add_argument("--out", default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    args.single_nthread = {int(n) for n in args.single_nthread.split(",")}
    if args.rows is None:
        args.rows = "1000000" if args.quick else "1000000,5000000"
    workdir = tempfile.mkdtemp(prefix="sluice-bench-dask-")
    began = time.perf_counter()
    failed = True
    try:
        result = measure(args, workdir)
        failed = False
    finally:
        if failed or args.keep:
            log(f"data and logs kept in {workdir}")
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
