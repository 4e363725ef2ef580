"""The rows each version was trained from, kept content-addressed in MLflow's artifact store.

A table is stored once, as compressed Arrow IPC named by its digest (registry.table_digest,
the digest of MLflow's dataset record), in a run of its own in the experiment
`sluice-training-rows` (no `sluice/` prefix: it is no model's). Versions trained on the same
rows share it. Every byte goes through the tracking server's artifact proxy, as the model's.
The version records where its rows are (or why they were not kept) as tags.
"""

from __future__ import annotations

import os
import tempfile

import mlflow
import pyarrow as pa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trainer.lifecycle import lineage
from trainer.lifecycle.registry import table_digest
from trainer.pipeline.stages import TrainedModel

EXPERIMENT = "sluice-training-rows"
DIGEST_TAG = "sluice.table_digest"
# On the registered version: where its training rows are, how many, or why they were not kept.
DATA_DIGEST = lineage.DIGEST_TAG  # digest and rows: written by lineage_tags at registration
DATA_ROWS = lineage.ROWS_TAG
DATA_URI = "sluice.data.uri"
DATA_NOT_KEPT = "sluice.data.not_kept"
# On a retrain's run: the rows it started from (the champion's, without labelled prod rows).
BASE_URI = "sluice.retrain.base_uri"
BASE_DIGEST = "sluice.retrain.base_digest"


class RowsUnavailable(Exception):
    """A version's training rows cannot be read (not kept, or not as recorded)."""


def artifact_name(digest: str) -> str:
    return f"rows/{digest}.arrow"


def encode(table: pa.Table) -> bytes:
    """The table as Arrow IPC (file format), zstd-compressed buffers."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(data: bytes, digest: str | None = None) -> pa.Table:
    """The table stored by `encode`; RowsUnavailable when it is not the table `digest` names."""
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    if digest is not None and table_digest(table) != digest:
        raise RowsUnavailable(f"the stored rows do not have digest {digest}")
    return table


def not_kept_reason(trained: TrainedModel, max_mb: float) -> str | None:
    """Why this run's rows are not kept (None: they are). Decided before any upload."""
    if trained.table is None or trained.split_keys is None:
        return "trained on a Dask cluster: the rows stay where data_uri points"
    if max_mb <= 0:
        return "TRAINING_ROWS_MAX_MB=0 keeps no training rows"
    size = trained.table.nbytes
    if size > max_mb * 2**20:
        return f"{size / 2**20:.1f} MB of rows, over TRAINING_ROWS_MAX_MB={max_mb:g}"
    return None


def data_of(trained: TrainedModel, digest: str, uri: str | None, reason: str | None) -> dict:
    """What a dev answer says about its training data."""
    data = {"digest": digest, "rows": trained.n_train + trained.n_valid, "kept": uri is not None}
    if reason:
        data["not_kept"] = reason
    return data


def version_tags(data: dict, uri: str | None) -> dict[str, str]:
    """The registered version's tags saying where its rows are, or why they were not kept
    (its digest and rows are lineage's tags)."""
    if uri is not None:
        return {DATA_URI: uri}
    return {DATA_NOT_KEPT: data.get("not_kept", "not kept")[:500]}


def _experiment_id(client: MlflowClient) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(EXPERIMENT)
    except MlflowException:  # created by another worker meanwhile
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def find(digest: str) -> str | None:
    """The artifact URI of the stored table with this digest, if one is stored completely."""
    client = MlflowClient()
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{DIGEST_TAG}` = '{digest}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return f"runs:/{runs[0].info.run_id}/{artifact_name(digest)}" if runs else None


def keep(table: pa.Table, digest: str) -> str:
    """Store `table` under its digest unless it is stored already; its artifact URI. A run cut
    off midway stays unfinished, and is never found."""
    uri = find(digest)
    if uri is not None:
        return uri
    client = MlflowClient()
    run = client.create_run(
        _experiment_id(client),
        tags={DIGEST_TAG: digest, "mlflow.runName": digest, "sluice.rows": str(table.num_rows)},
    )
    with tempfile.TemporaryDirectory(prefix="sluice-rows-") as tmp:
        path = os.path.join(tmp, f"{digest}.arrow")
        with open(path, "wb") as handle:
            handle.write(encode(table))
        client.log_artifact(run.info.run_id, path, "rows")
    client.set_terminated(run.info.run_id, "FINISHED")
    return f"runs:/{run.info.run_id}/{artifact_name(digest)}"


def load(uri: str, digest: str) -> pa.Table:
    """The stored table at `uri`, checked against its digest."""
    with tempfile.TemporaryDirectory(prefix="sluice-rows-") as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        with open(path, "rb") as handle:
            return decode(handle.read(), digest)


def rows_source(model_name: str, version: str) -> tuple[str, str, bool]:
    """Where a retrain of `version` reads its rows from: (artifact URI, digest, whether they
    are the version's rows without the labelled prod rows it was retrained with). A retrained
    version's run names the rows its retrain started from, so labelled rows, read again with
    their current labels, are never counted twice. RowsUnavailable saying why not."""
    client = MlflowClient()
    registered = client.get_model_version(model_name, version)
    run_tags = client.get_run(registered.run_id).data.tags if registered.run_id else {}
    if run_tags.get(BASE_URI) and run_tags.get(BASE_DIGEST):
        return run_tags[BASE_URI], run_tags[BASE_DIGEST], True
    tags = registered.tags
    uri, digest = tags.get(DATA_URI), tags.get(DATA_DIGEST)
    if not uri or not digest:
        raise RowsUnavailable(
            tags.get(DATA_NOT_KEPT) or "it was trained before Sluice kept training rows"
        )
    return uri, digest, False
