"""MLflow I/O: log a dev run, register its model, read and move the champion alias."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib.metadata import version as package_version

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from trainer.lifecycle import signing
from trainer.model import sluice_cells, sluice_model
from trainer.model.sluice_model import (
    BOOSTER_ARTIFACT,
    PROFILE_ARTIFACT,
    RULES_ARTIFACT,
    SPEC_ARTIFACT,
)
from trainer.pipeline.stages import TrainedModel

CHAMPION_ALIAS = "champion"
MODEL_CODE_PATH = sluice_model.__file__  # logged with every version ("models from code")
RULES_CODE_PATH = sluice_cells.__file__
# Explicit requirements: MLflow's inference of them costs ~3 s per logged model.
PIP_REQUIREMENTS = [
    f"{name}=={package_version(name)}"
    for name in ("mlflow", "xgboost", "pandas", "numpy", "pyarrow")
]


DATASET_SCHEMA_MAX_CHARS = 1_000_000  # MLflow's limit is 1,048,575
# MLflow's input example handling costs ~0.35 ms a column (pandas, per column, three times):
# a model that reads more columns is logged without one, and its run is tagged so (the spec
# lists every input column).
INPUT_EXAMPLE_MAX_COLUMNS = 1_000


def experiment_name(model_name: str) -> str:
    """The MLflow experiment that holds a model name's runs."""
    return f"sluice/{model_name}"


def signature_of(spec: dict) -> ModelSignature:
    """Output and the `proba` parameter. No input schema: the model reads raw cells (text as
    written, or values typed by pandas or JSON) with its own rules, so MLflow must pass them
    through unconverted; the feature spec lists the input columns."""
    output = ColSpec("string" if spec["task"] == "classification" else "double", "prediction")
    params = ParamSchema([ParamSpec("proba", "boolean", False)])
    return ModelSignature(inputs=None, outputs=Schema([output]), params=params)


def dataset_schema(table: pa.Table) -> Schema:
    """Column types from the Arrow types (numbers and booleans as double, the rest as text:
    what MLflow reads from the same frame's dtypes); required = no gaps. From Arrow's
    counts: pandas' per-column checks took ~75 us a column."""

    def numeric(kind: pa.DataType) -> bool:
        return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)

    return Schema(
        [
            ColSpec(
                "double" if numeric(field.type) else "string",
                field.name,
                required=table.column(field.name).null_count == 0,
            )
            for field in table.schema
        ]
    )


def _input_example(trained: TrainedModel) -> pd.DataFrame:
    """Three validation rows (training rows when there are none) as raw text cells (None where
    missing), built as one block of Python objects: pandas' per-column `where` took seconds
    on 20,000 columns."""
    columns = [item["name"] for item in trained.spec["inputs"]]
    source = trained.validation.table if trained.n_valid else trained.table
    example = source.select(columns).slice(0, 3)
    cells = np.empty((example.num_rows, len(columns)), dtype=object)
    for j, column in enumerate(example.columns):
        cells[:, j] = column.to_pylist()
    return pd.DataFrame(cells, columns=columns)


class _HashSink:
    """A write-only file that feeds a hash (Arrow's IPC writer streams into it)."""

    def __init__(self, hashed):
        self.hashed, self.closed = hashed, False

    def write(self, data) -> int:
        self.hashed.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def table_digest(table: pa.Table) -> str:
    """The training table's digest for MLflow's dataset record: SHA-256 of the table as Arrow
    IPC (names, types and every cell of every row; one chunk per column), 16 hex digits.
    MLflow's own digest hashes a pandas frame column by column (seconds for 20,000 columns)
    and reads only its first 10,000 rows."""
    if any(column.num_chunks > 1 for column in table.columns):
        table = table.combine_chunks()
    hashed = hashlib.sha256()
    with pa.ipc.new_stream(_HashSink(hashed), table.schema) as writer:
        writer.write_table(table)
    return hashed.hexdigest()[:16]


def _training_dataset(table: pa.Table, target: str, name: str, digest: str | None):
    """The run's dataset record: MLflow's own for a pandas frame of `table`, with the digest
    (the table's when None) and the schema given."""
    # A pandas copy of the cells (~0.03 s per 100k rows): a record built from the table alone
    # would subclass MLflow's PandasDataset, for no measurable gain.
    dataset = mlflow.data.from_pandas(
        table.to_pandas(), targets=target, name=name, digest=digest or table_digest(table)
    )
    # PandasDataset.schema is a cached_property that MLflow infers cell by cell (~2 s per
    # 100k rows of text); the dtypes say the same thing.
    schema = dataset_schema(table)
    # MLflow refuses a dataset schema over 1 MiB of JSON (some 20k columns): the dataset
    # is then logged with its digest and profile only; the spec lists every column.
    fits = len(json.dumps({"mlflow_colspec": schema.to_dict()})) <= DATASET_SCHEMA_MAX_CHARS
    dataset.__dict__["schema"] = schema if fits else None
    return dataset


def log_run(
    trained: TrainedModel,
    model_name: str,
    cleaning: dict,
    tags: dict[str, str],
    digest: str | None = None,
) -> tuple[str, str, dict[str, str]]:
    """Log params, metrics, dataset (with `digest`, the table's when None), reports and the
    model; return the run id, the model's URI and the SHA-256 of each code and artifact file as
    Sluice wrote it (for signing)."""
    experiment = mlflow.set_experiment(experiment_name(model_name))
    # The tags (the owner's among them) are set as the run is created: a run never exists
    # without its owner, so one cut off at any moment is found at the next start.
    with mlflow.start_run(
        experiment_id=experiment.experiment_id, tags={"sluice.model": model_name, **tags}
    ) as run:
        mlflow.log_params(
            {
                **{f"xgb.{k}": v for k, v in trained.params.items()},
                "task": trained.task,
                "target": trained.spec["target"],
                "rounds": trained.best_rounds,
                "n_train": trained.n_train,
                "n_valid": trained.n_valid,
                "n_features": len(trained.spec["feature_names"]),
                "split": trained.spec["split"]["method"],
            }
        )
        mlflow.log_metrics({f"valid_{k}": v for k, v in trained.metrics.items()})
        mlflow.log_metric("train_seconds", trained.train_seconds)
        mlflow.log_input(
            _training_dataset(trained.table, trained.spec["target"], model_name, digest),
            context="training",
        )
        mlflow.log_dict(cleaning, "reports/cleaning.json")
        mlflow.log_dict(trained.spec, "reports/feature_spec.json")
        with tempfile.TemporaryDirectory(prefix="sluice-model-") as tmp:
            booster_path = os.path.join(tmp, "booster.ubj")
            spec_path = os.path.join(tmp, "feature_spec.json")
            profile_path = os.path.join(tmp, "monitoring_profile.json")
            trained.model.booster.save_model(booster_path)
            with open(spec_path, "w", encoding="utf-8") as handle:
                json.dump(trained.spec, handle)
            with open(profile_path, "w", encoding="utf-8") as handle:
                json.dump(trained.profile, handle, separators=(",", ":"))
            written = {
                os.path.basename(path): signing.file_digest(path)
                for path in (
                    booster_path,
                    spec_path,
                    profile_path,
                    MODEL_CODE_PATH,
                    RULES_CODE_PATH,
                )
            }
            example = None
            n_inputs = len(trained.spec["inputs"])
            if n_inputs <= INPUT_EXAMPLE_MAX_COLUMNS:
                example = _input_example(trained)
            else:
                mlflow.set_tag(
                    "sluice.input_example",
                    f"omitted: {n_inputs:,} input columns, over {INPUT_EXAMPLE_MAX_COLUMNS:,}",
                )
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=MODEL_CODE_PATH,
                artifacts={
                    BOOSTER_ARTIFACT: booster_path,
                    SPEC_ARTIFACT: spec_path,
                    RULES_ARTIFACT: RULES_CODE_PATH,
                    PROFILE_ARTIFACT: profile_path,
                },
                signature=signature_of(trained.spec),
                input_example=example,
                pip_requirements=PIP_REQUIREMENTS,
            )
        return run.info.run_id, info.model_uri, written


def register(model_uri: str, model_name: str, run_id: str, tags: dict[str, str]) -> str:
    """Register a logged model as a new version of `model_name`; return the version."""
    version = mlflow.register_model(model_uri, model_name, tags=tags)
    MlflowClient().update_model_version(
        model_name, version.version, description=f"Sluice dev run {run_id}"
    )
    return str(version.version)


def champion_version(model_name: str) -> str | None:
    """The version the champion alias points at, or None (no model or no alias)."""
    record = champion_record(model_name)
    return None if record is None else str(record.version)


def champion_record(model_name: str):
    """The registered version the champion alias points at (with its run and tags), or None
    (no model or no alias)."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


# One page of the registry search (MLflow's most); a poll reads all pages.
SEARCH_PAGE_SIZE = 1000


def champion_versions() -> dict[str, str]:
    """Every registered model's champion version, by name (models without the alias are left
    out): one registry search per 1,000 models, however many a trainer serves."""
    champions: dict[str, str] = {}
    token = None
    while True:
        page = MlflowClient().search_registered_models(
            max_results=SEARCH_PAGE_SIZE, page_token=token
        )
        for model in page:
            version = (model.aliases or {}).get(CHAMPION_ALIAS)
            if version is not None:
                champions[model.name] = str(version)
        token = page.token
        if not token:
            return champions


def model_exists(model_name: str) -> bool:
    """Whether the registered model name exists."""
    try:
        MlflowClient().get_registered_model(model_name)
        return True
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def set_champion(model_name: str, version: str) -> None:
    """Point the champion alias at `version`."""
    MlflowClient().set_registered_model_alias(model_name, CHAMPION_ALIAS, version)


DECISION_TAG = "sluice.promotion"
INPUTS_TAG = "sluice.input_columns"
# What every tracking store keeps of a tag value (older schemas cut at 5000 characters).
TAG_MAX_CHARS = 5000
REASON_MAX_CHARS = 1000


def record_decision(model_name: str, version: str, decision: dict) -> None:
    """Record the promotion decision and its evidence on the version, promoted or not."""
    text = _decision_text(decision)
    MlflowClient().set_model_version_tag(model_name, version, DECISION_TAG, text)


def _decision_text(decision: dict) -> str:
    """The decision as JSON within TAG_MAX_CHARS: the reason shortened, then the evidence left
    out, so the tag stays readable JSON (prod quotes its reason)."""
    text = json.dumps(decision)
    if len(text) <= TAG_MAX_CHARS:
        return text
    reason = str(decision.get("reason", ""))
    if len(reason) > REASON_MAX_CHARS:
        reason = reason[: REASON_MAX_CHARS - 1] + "…"
    text = json.dumps({**decision, "reason": reason})
    if len(text) <= TAG_MAX_CHARS:
        return text
    return json.dumps({k: decision.get(k) for k in ("promoted", "rule")} | {"reason": reason})


def inputs_tag(columns: list[str]) -> dict[str, str]:
    """The version tag naming the input columns a version reads, so that prod can point a
    batch at a version that reads it without loading any model; none when too long."""
    text = json.dumps(columns)
    return {INPUTS_TAG: text} if len(text) <= TAG_MAX_CHARS else {}


def recent_versions(model_name: str, limit: int) -> list:
    """The newest `limit` versions of `model_name`, newest first, with their tags (one
    registry search)."""
    return list(
        MlflowClient().search_model_versions(
            f"name = '{model_name}'", max_results=limit, order_by=["version_number DESC"]
        )
    )


def _tag_json(version, key: str):
    try:
        return json.loads(version.tags.get(key) or "null")
    except ValueError:  # a decision cut at 5000 characters before tags were kept as JSON
        return None


def decision_of(version) -> dict | None:
    """A registered version's recorded promotion decision, if it has a readable one."""
    decision = _tag_json(version, DECISION_TAG)
    return decision if isinstance(decision, dict) else None


def inputs_of(version) -> list[str] | None:
    """The input columns a registered version reads, when its tag lists them."""
    columns = _tag_json(version, INPUTS_TAG)
    return columns if isinstance(columns, list) else None


# Inside a local copy: the signature it was verified against (written only after verifying).
SIGNED_MARKER = signing.SIGNED_MARKER_NAME


def _copy_path(model_name: str, version: str, models_dir: str) -> str:
    """models_dir/<model name's hash>/<version>: one folder per name, so old copies of a
    name can be found and pruned."""
    return os.path.join(models_dir, hashlib.sha1(model_name.encode()).hexdigest(), version)


def prune_local_copies(model_name: str, keep: set[str], models_dir: str) -> None:
    """Delete the local copies of `model_name` except the versions in `keep` (the champion
    and the newest challenger), so the state directory does not grow with every dev run."""
    folder = os.path.dirname(_copy_path(model_name, "0", models_dir))
    try:
        versions = os.listdir(folder)
    except FileNotFoundError:
        return
    for version in versions:
        if version not in keep and not version.startswith("."):
            shutil.rmtree(os.path.join(folder, version), ignore_errors=True)


def binding(model_name: str, run_id: str) -> str:
    """What a signature is bound to besides the files: the model name and the logging run."""
    return f"{model_name}\0{run_id}"


def sign_logged(
    model_uri: str, written: dict[str, str], models_dir: str, key: bytes, bound_to: str
):
    """Download a just-logged model, check it holds exactly what Sluice wrote, and sign it;
    return the downloaded directory (kept as the version's local copy) and the signature."""
    os.makedirs(models_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".signing-", dir=models_dir)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=staging)
        signing.check_logged(staging, written)
        return staging, signing.signature(staging, key, bound_to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def keep_local_copy(staging: str, signature: str, model_name: str, version: str, models_dir: str):
    """Make a verified download the local copy of `version`."""
    with open(os.path.join(staging, SIGNED_MARKER), "w", encoding="ascii") as handle:
        handle.write(signature)
    path = _copy_path(model_name, version, models_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.rename(staging, path)
    except OSError:
        if not os.path.exists(os.path.join(path, SIGNED_MARKER)):
            shutil.rmtree(path, ignore_errors=True)
            os.rename(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def has_verified_copy(model_name: str, version: str, models_dir: str, signature: str) -> bool:
    """Whether this trainer verified `version` against `signature` and kept its copy."""
    marker = os.path.join(_copy_path(model_name, version, models_dir), SIGNED_MARKER)
    try:
        with open(marker, encoding="ascii") as handle:
            return handle.read() == signature
    except OSError:
        return False


def local_copy(model_name: str, version: str, models_dir: str, key: bytes) -> str:
    """A verified local copy of a registered version, downloaded once; returns its directory.

    The download is checked against the version's Sluice signature before it is kept, so no
    code of a version Sluice did not make is ever loaded. Local copies let every worker (and a
    restarted trainer) load a champion while the tracking server is down.
    """
    path = _copy_path(model_name, version, models_dir)
    if os.path.exists(os.path.join(path, SIGNED_MARKER)):
        return path
    registered = MlflowClient().get_model_version(model_name, version)
    claimed = registered.tags.get(signing.SIGNATURE_TAG)
    os.makedirs(models_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=models_dir)
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_name}/{version}", dst_path=staging
        )
        signing.verify(staging, key, claimed, binding(model_name, registered.run_id or ""))
        keep_local_copy(staging, claimed, model_name, version, models_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_version(model_name: str, version: str, models_dir: str, key: bytes):
    """Load a registered version (from its verified local copy); return the SluiceModel."""
    path = local_copy(model_name, version, models_dir, key)
    # suppress_warnings: the requirement check scans every installed package (~0.7 s per
    # load, paid by the first prod request after a promotion); Sluice logs exact pins.
    return mlflow.pyfunc.load_model(path, suppress_warnings=True).unwrap_python_model()
