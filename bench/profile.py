"""cProfile the pure steps behind one request, in process and without HTTP.

    .venv/bin/python -m bench.profile prod --rows 100000   # parse, Arrow, score, JSON
    .venv/bin/python -m bench.profile single --repeat 300  # the same for one row, many times
    .venv/bin/python -m bench.profile dev --rows 100000    # dev minus HTTP: parse, train, log

`dev` logs to a throwaway SQLite tracking store in a temp dir, so MLflow's server-side work
runs in this process too; the service's HTTP round trips to the tracking server are not in it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import warnings

import orjson

from bench.data import TARGET, query_csv, train_csv


def prod_pipeline(csv: bytes, model) -> bytes:
    """What preprocess and trainer do for a prod request, minus HTTP and multipart."""
    from sluice_common.tables.transport import (
        columns_to_json,
        read_arrow,
        read_columns_json,
        table_to_arrow,
    )
    from sluice_common.web.upload import parse_upload
    from trainer.model.sluice_model import SMALL_ROWS

    table, report, _ = parse_upload(csv, "prod", None)
    if isinstance(table, dict):  # a few rows cross the hop as JSON column lists
        received, report = read_columns_json(columns_to_json(table, report), SMALL_ROWS, 20_000)
    else:
        received, report = read_arrow(table_to_arrow(table, report))
        if received.num_rows <= SMALL_ROWS:
            received = received.to_pydict()
    scored = model.score_frame(received)
    predictions = scored.predictions
    answer = {
        "predictions": predictions.tolist() if predictions.dtype == object else predictions,
        "ignored_columns": scored.ignored_columns,
        "warnings": scored.warnings,
        "cleaning": report,
    }
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def _parsed_table(csv: bytes):
    from sluice_common.web.upload import parse_upload

    table, report, _ = parse_upload(csv, "dev", TARGET)
    return table, report


def trained_model(rows: int):
    """A champion-like model trained in process on the benchmark table."""
    from trainer.pipeline.training import train_model

    table, report = _parsed_table(train_csv(rows))
    return train_model(table, TARGET, delimiter=report["delimiter"]).model


def dev_pipeline(csv: bytes, tracking_dir: str) -> dict:
    """What a dev request does after the upload: parse, Arrow, train, log, register, alias."""
    import mlflow

    from sluice_common.tables.transport import read_arrow, table_to_arrow
    from sluice_common.web.upload import parse_upload
    from trainer.lifecycle import registry
    from trainer.pipeline.training import train_model

    mlflow.set_tracking_uri(f"sqlite:///{tracking_dir}/mlflow.db")
    # Artifacts in the temp dir too: a SQLite store's default artifact root is ./mlruns.
    if mlflow.get_experiment_by_name(registry.experiment_name("profile")) is None:
        mlflow.create_experiment(
            registry.experiment_name("profile"), artifact_location=f"{tracking_dir}/artifacts"
        )
    marks = {"start": time.perf_counter()}
    table, report, _ = parse_upload(csv, "dev", TARGET)
    table, report = read_arrow(table_to_arrow(table, report))
    marks["parsed"] = time.perf_counter()
    trained = train_model(table, TARGET, delimiter=report["delimiter"])
    marks["trained"] = time.perf_counter()
    run_id, uri, _ = registry.log_run(trained, "profile", report, {})
    marks["logged"] = time.perf_counter()
    version = registry.register(uri, "profile", run_id, {"sluice.run_id": run_id})
    registry.set_champion("profile", version)
    marks["registered"] = time.perf_counter()
    steps = list(marks)
    out = {f"{b}": marks[b] - marks[a] for a, b in zip(steps, steps[1:], strict=False)}
    out["booster_training"] = trained.train_seconds
    return out


def report(profiler: cProfile.Profile, top: int) -> None:
    """The functions with the most cumulative and the most own time."""
    for key in ("cumulative", "tottime"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats(key).print_stats(top)
        print(stream.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Profile one of prod, single or dev."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("what", choices=("prod", "single", "dev"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=300, help="single: requests to profile")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    profiler = cProfile.Profile()
    if args.what == "dev":
        csv = train_csv(args.rows)
        with tempfile.TemporaryDirectory(prefix="sluice-profile-") as tracking_dir:
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tracking_dir}/mlflow.db"
            dev_pipeline(train_csv(1000), tracking_dir)  # imports and database set-up
            profiler.enable()
            steps = dev_pipeline(csv, tracking_dir)
            profiler.disable()
        report(profiler, args.top)
        print("steps (s):", {k: round(v, 3) for k, v in steps.items()})
        return 0
    model = trained_model(20_000)
    csv = query_csv(1 if args.what == "single" else args.rows)
    repeat = args.repeat if args.what == "single" else 1
    prod_pipeline(csv, model)  # warm up
    started = time.perf_counter()
    profiler.enable()
    for _ in range(repeat):
        prod_pipeline(csv, model)
    profiler.disable()
    per_call = (time.perf_counter() - started) / repeat
    report(profiler, args.top)
    print(f"{args.what}: {per_call * 1000:.2f} ms per pipeline call under the profiler")
    return 0


if __name__ == "__main__":
    sys.exit(main())
