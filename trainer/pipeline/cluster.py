"""Dev and prod on a Dask cluster (DASK_SCHEDULER_ADDRESS): the dev pipeline run by the
cluster's engine (pipeline/dask_engine.py), and prod by reference, every file scored on a
worker (pipeline/cluster_parts.py) and written here in input order."""

from __future__ import annotations

import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.fit.config import TrainingConfig
from trainer.monitoring.monitor import new_batch_id
from trainer.pipeline import cluster_parts as parts
from trainer.pipeline import stages
from trainer.pipeline.dask_client import client_for, gather, workers_of
from trainer.pipeline.dask_engine import OnCluster
from trainer.pipeline.stages import TrainedModel
from trainer.sources import by_reference
from trainer.sources import files as datasource

IN_FLIGHT_PER_WORKER = 2  # prod partitions scored ahead of the writer, per worker


def train_on_cluster(
    address,
    files,
    settings,
    requested_target,
    task,
    config: TrainingConfig,
    context,
    sample_rows: int = 200_000,
) -> TrainedModel:
    """A TrainedModel from data on the cluster, as training.train_model makes one."""
    engine = OnCluster(address, files, settings, context, sample_rows)
    return stages.train(engine, requested_target, task, config)


def score_on_cluster(
    address, files, settings, output, options, champion, model_name, monitor, context
) -> dict:
    """Prod by reference: every file scored on a worker; the trainer writes the output in
    input order and records each file's monitoring counts as a batch."""
    client = client_for(address)
    workers = workers_of(client)
    if not workers:
        raise ApiError(error_codes.CLUSTER_UNAVAILABLE, "The Dask cluster has no workers.")
    model = champion.model
    payload = client.scatter(parts.payload_of(model), broadcast=True)
    writer = by_reference.OutputWriter(output, settings)
    warnings: dict = {}
    reports, batch_ids, ignored, columns = [], [], None, None
    in_flight = max(2, IN_FLIGHT_PER_WORKER * len(workers))
    batches: list = []
    try:
        pending: list = []
        queue = list(files)
        while queue or pending:
            while queue and len(pending) < in_flight:
                item = queue.pop(0)
                batch_id = new_batch_id() if monitor is not None else None
                future = client.submit(
                    parts.score_file, item, settings, payload, options, None, batch_id, pure=False
                )
                pending.append((batch_id, future))
            batch_id, future = pending.pop(0)
            result = gather(client, [future], context, "Scoring")[0]
            if columns is None:
                columns = result["columns"]
            elif set(result["columns"]) != set(columns):
                datasource.align(
                    pa.table({c: [] for c in result["columns"]}), columns, result["name"]
                )
            reports.append(result["report"])
            by_reference.merge_warnings(warnings, result["warnings"])
            ignored = result["ignored"]
            output_table = result["output"]
            if writer.schema is not None:
                output_table = output_table.select(writer.schema.names)
            writer.write(output_table)
            if monitor is not None:
                batches.append((batch_id, result["counts"], result["kept"], result["rows"]))
            context.progress(
                stage=f"scored {len(reports)} of {len(files)} files", rows_read=writer.rows
            )
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    batch_ids = by_reference.record_batches(monitor, model_name, champion, batches)
    answer = by_reference.prod_answer(
        model_name,
        champion,
        written["rows"],
        written,
        warnings,
        ignored,
        reports,
        files,
        columns,
        batch_ids,
    )
    answer["cleaning"]["workers"] = len(workers)
    return answer
