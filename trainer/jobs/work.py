"""The work a job does: an upload's phase run later, or dev and prod on data by reference.

What can be checked at once (the URI, the files it names, the output's place) is checked in
the request, so a bad URI is a 4xx answer, not a failed job.
"""

from __future__ import annotations

import os

from flask import current_app

from sluice_common import error_codes
from sluice_common.choices import resolve_target
from sluice_common.errors import ApiError
from trainer.lifecycle.dev import dev_run
from trainer.lifecycle.hints import missing_columns_error
from trainer.lifecycle.prod import champion_for
from trainer.pipeline.training import InMemory
from trainer.sources import by_reference
from trainer.sources import files as datasource
from trainer.sources.files import DataSettings

JOB_BODIES = "job-bodies"  # uploads of queued jobs, in the state directory


def remove_dead_bodies(state_dir: str, unfinished: set[str]) -> int:
    """At start: spooled uploads of jobs that will never run (cut off or over) are removed."""
    folder = os.path.join(state_dir, JOB_BODIES)
    removed = 0
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name not in unfinished:
            os.unlink(os.path.join(folder, name))
            removed += 1
    return removed


def data_settings() -> DataSettings:
    return DataSettings.from_config(current_app.config)


def scheduler_address(config) -> str | None:
    """The Dask scheduler data_uri work runs on; the Compose `dask` profile's by default."""
    address = config.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return address
    profiles = (config.get("SLUICE_COMPOSE_PROFILES") or "").replace(",", " ").split()
    return "tcp://dask-scheduler:8786" if "dask" in profiles else None


def _on_round(context):
    def report(done: int, planned: int) -> bool:
        context.progress(stage="training", rounds_done=done, rounds_max=planned)
        return False

    return report


def upload_work(params, body_path: str, media_type: str, run):
    """A job that runs an upload's phase: the body was spooled to `body_path`."""
    app = current_app._get_current_object()

    def work(context):
        with app.app_context():
            with open(body_path, "rb") as handle:
                raw = handle.read()
            os.unlink(body_path)
            context.progress(stage="waiting for a slot")
            with app.extensions["admission"].hold(context.check):
                context.progress(stage="parsing")
                answer = run(params, raw, media_type, on_round=_on_round(context))
            return 200, answer

    return work


def reference_work(params):
    """A job for dev or prod on `params.data_uri`; files and output resolved now (4xx)."""
    app = current_app._get_current_object()
    settings = data_settings()
    files = datasource.resolve_files(params.data_uri, settings)
    output = None
    if params.phase == "prod":
        output = datasource.resolve_output(params.output_uri, settings)
        champion_for(params.model, app.extensions["sluice"].cache)  # 404/409 now, not later
    address = scheduler_address(app.config)
    if address is None:
        limit = float(app.config["DATA_LOCAL_MAX_MB"]) * 2**20
        total = sum(item.size for item in files)
        if params.phase == "dev" and total > limit:
            raise ApiError(
                error_codes.DATA_TOO_LARGE_FOR_ONE_MACHINE,
                f"The files hold {total / 2**20:.0f} MB; without a Dask cluster the trainer reads "
                f"at most DATA_LOCAL_MAX_MB={limit / 2**20:.0f} MB into its own memory. Point "
                "the trainer at a cluster (DASK_SCHEDULER_ADDRESS) or use fewer files.",
            )

    def work(context):
        with app.app_context():
            context.progress(stage="waiting for a slot", files=len(files))
            with app.extensions["admission"].hold(context.check):
                if params.phase == "dev":
                    return 200, _dev(app, params, files, settings, address, context)
                return 200, _prod(app, params, files, output, settings, address, context)

    return work


def _dev(app, params, files, settings, address, context) -> dict:
    state = app.extensions["sluice"]
    common = dict(
        model_name=params.model,
        task=params.task,
        promote=params.promote,
        config=state.training,
        gate=state.gate,
        cache=state.cache,
        state_dir=state.state_dir,
        tags={**state.tags, "sluice.data_uri": params.data_uri[:250]},
        rows_max_mb=app.config["TRAINING_ROWS_MAX_MB"],
    )
    if address is not None:
        # Here: distributed and xgboost.dask are imported only when a cluster is used.
        from trainer.pipeline.dask_client import public_address
        from trainer.pipeline.dask_engine import OnCluster

        sample_rows = int(app.config["CLUSTER_SAMPLE_ROWS"])
        engine = OnCluster(address, files, settings, context, sample_rows)
        answer = dev_run(engine, {}, target=params.target, **common)
        answer["engine"] = {"kind": "dask", "scheduler": public_address(address)}
        return answer
    table, report = by_reference.read_all(files, settings, context)
    report["data_uri"] = params.data_uri
    target = resolve_target([str(c) for c in table.column_names], params.target)
    context.progress(stage="training")
    engine = InMemory(table, report.get("delimiter", ","), _on_round(context), context.check)
    answer = dev_run(engine, report, target=target, **common)
    answer["engine"] = {"kind": "trainer"}
    return answer


def _prod(app, params, files, output, settings, address, context) -> dict:
    state = app.extensions["sluice"]
    champion = champion_for(params.model, state.cache)
    options = by_reference.ProdOptions(proba=params.proba, key=params.key)
    if address is not None:
        # Here: distributed is imported only when a cluster is used.
        from trainer.pipeline import cluster
        from trainer.pipeline.dask_client import public_address

        answer = cluster.score_on_cluster(
            address,
            files,
            settings,
            output,
            options,
            champion,
            params.model,
            state.monitor,
            context,
        )
        answer["engine"] = {"kind": "dask", "scheduler": public_address(address)}
    else:
        answer = by_reference.score_locally(
            files,
            settings,
            output,
            options,
            champion,
            params.model,
            state.monitor,
            context,
            missing_columns_error,
        )
        answer["engine"] = {"kind": "trainer"}
    answer["data_uri"] = params.data_uri
    return answer
