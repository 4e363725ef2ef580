"""Retraining from labels: the champion's training rows plus every labelled prod row of the
model (its cells as they arrived, the label as fed back), trained through the dev phase and
its promotion gate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from mlflow import MlflowClient

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import registry, training_rows
from trainer.lifecycle.dependencies import dependency_errors
from trainer.lifecycle.dev import dev_run
from trainer.lifecycle.prod import champion_for
from trainer.monitoring.prod_rows import take
from trainer.pipeline.training import InMemory

# On the registered model: how many labels its last retrain used (the trigger counts from it).
LABELS_AT_TAG = "sluice.retrain.labels_at"
PROMOTE = ("auto", "never")


@dataclass
class Plan:
    """What a retrain starts from, checked before its job is queued."""

    model: str
    champion: str
    target: str
    task: str
    labels: int
    promote: str = "auto"


@dataclass
class Labelled:
    """The labelled prod rows, and those that cannot be used (with why)."""

    parts: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    batches: int = 0
    not_kept: int = 0
    other_target: int = 0

    def report(self) -> dict:
        skipped = {}
        if self.not_kept:
            skipped["cells_not_kept"] = {
                "rows": self.not_kept,
                "why": "their cells were not kept (PROD_ROWS_KEPT, the monitoring retention, "
                "prod by data_uri, or scored before Sluice kept them)",
            }
        if self.other_target:
            skipped["other_target"] = {
                "rows": self.other_target,
                "why": "labelled for a version with another target column",
            }
        return {"rows": self.rows, "batches": self.batches, "skipped": skipped}


def options(body) -> str:
    """The promote option of a retrain body (None, or a JSON object)."""
    if body is None:
        return "auto"
    if not isinstance(body, dict):
        raise ApiError(
            error_codes.NOT_A_JSON_OBJECT,
            'Send no body, or a JSON object such as {"promote": "never"}.',
        )
    if set(body) - {"promote"}:
        raise ApiError(
            error_codes.INVALID_RETRAIN_OPTIONS,
            'Send no body, or a JSON object with at most "promote": "auto" (the gate decides) '
            'or "never" (register only).',
        )
    promote = body.get("promote", "auto")
    if promote not in PROMOTE:
        raise ApiError(
            error_codes.INVALID_RETRAIN_OPTIONS,
            f'"promote" must be "auto" or "never"; got {str(promote)[:40]!r}.',
        )
    return promote


def plan(model_name: str, cache, monitor, promote: str = "auto") -> Plan:
    """The checks a retrain needs, as 4xx answers saying what to do: a champion, its training
    rows kept, monitoring on, and labels."""
    with dependency_errors():
        known = registry.model_exists(model_name)
    if not known:
        raise ApiError(
            error_codes.UNKNOWN_MODEL,
            f"No model named {model_name!r} is registered. Train it first with phase=dev "
            f"(model={model_name}); GET /models lists the models.",
        )
    champion = champion_for(model_name, cache)  # 409 no champion, or an untrusted one
    if monitor is None or monitor.prod_rows is None:
        raise ApiError(
            error_codes.MONITORING_OFF,
            "Retraining from labels needs prod rows and their labels: turn on "
            "MONITORING_ENABLED and PROD_ROWS_KEPT on the trainer.",
        )
    try:
        with dependency_errors():
            training_rows.rows_source(model_name, champion.version)
    except training_rows.RowsUnavailable as err:
        raise ApiError(
            error_codes.TRAINING_ROWS_NOT_KEPT,
            f"The training rows of {model_name!r} v{champion.version} (the champion) were not "
            f"kept: {err}. Train a version with phase=dev (within TRAINING_ROWS_MAX_MB) and "
            "make it the champion, then retrain.",
        ) from err
    labels = monitor.prod_rows.label_count(model_name)
    todo = (
        f"Score rows with phase=prod, then send their true values to /feedback "
        f"(model={model_name}, columns batch_id, row and {champion.model.spec['target']!r})."
    )
    if labels == 0:
        raise ApiError(error_codes.NO_LABELS, f"No prod row of {model_name!r} has a label. {todo}")
    if monitor.prod_rows.label_count(model_name, with_cells=True) == 0:
        raise ApiError(
            error_codes.NO_LABELS,
            f"{labels} prod row(s) of {model_name!r} have labels, but none has its cells kept "
            f"(PROD_ROWS_KEPT, the monitoring retention, or prod by data_uri). {todo}",
        )
    spec = champion.model.spec
    return Plan(model_name, champion.version, spec["target"], spec["task"], labels, promote)


def labelled_rows(prod_rows, store, model_name: str, target: str) -> Labelled:
    """Every labelled prod row of the model whose cells were kept: its cells plus the label
    in the target column."""
    found = Labelled()
    by_batch = prod_rows.labels_of(model_name)
    cells = prod_rows.cells_of(list(by_batch))
    targets: dict[str, str | None] = {}
    for batch_id, (version, rows, labels) in by_batch.items():
        if version not in targets:
            profile = store.profile(model_name, version)
            targets[version] = profile["target"] if profile else None
        if targets[version] != target:
            found.other_target += len(rows)
            continue
        table = cells.get(batch_id)
        if table is None:
            found.not_kept += len(rows)
            continue
        part = take(table, rows)
        if target in part.column_names:
            part = part.drop_columns([target])
        found.parts.append(part.append_column(target, pa.array(labels, type=pa.string())))
        found.rows += len(rows)
        found.batches += 1
    return found


def combine(base: pa.Table, parts: list[pa.Table]) -> pa.Table:
    """The base rows followed by each part's, column by column: a column missing from a table
    is empty there; a column whose types differ between tables becomes text (the model reads
    text cells with its own rules)."""
    tables = [base, *parts]
    names = list(base.column_names)
    for part in parts:
        names += [name for name in part.column_names if name not in names]
    columns = {}
    for name in names:
        types = {t.schema.field(name).type for t in tables if name in t.column_names}
        kind = types.pop() if len(types) == 1 else pa.string()
        pieces = []
        for t in tables:
            if name not in t.column_names:
                pieces.append(pa.nulls(t.num_rows, kind))
            else:
                pieces.append(_as(t.column(name), kind))
        columns[name] = pa.chunked_array([c for p in pieces for c in _chunks(p)], kind)
    return pa.table(columns)


def _chunks(values) -> list:
    return values.chunks if isinstance(values, pa.ChunkedArray) else [values]


def _as(values, kind: pa.DataType):
    if values.type == kind:
        return values
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), kind)
    return pc.cast(values, kind)


def trigger(every: int, on_alert: bool, since: int, summary) -> str | None:
    """Why labels that just arrived start a retrain, or None: `since` labels arrived since the
    last retrain; RETRAIN_AFTER_LABELS=`every` (0: off); RETRAIN_ON_ALERT=`on_alert` asks
    `summary()` (the monitoring summary, read only then) whether the status is alert."""
    if every > 0 and since >= every:
        return f"{since} labels since the last retrain (RETRAIN_AFTER_LABELS={every})"
    if on_alert and since > 0:
        found = summary()
        if found.get("status") == "alert":
            return f"monitoring alert: {'; '.join(found.get('alerts', [])[:3])}"[:500]
    return None


def record(model_name: str, labels: int) -> None:
    """How many labels the model's latest retrain used (the label trigger counts from it)."""
    with dependency_errors():
        MlflowClient().set_registered_model_tag(model_name, LABELS_AT_TAG, str(labels))


def labels_at_last_retrain(model_name: str) -> int:
    with dependency_errors():
        tags = MlflowClient().get_registered_model(model_name).tags
    try:
        return int(tags.get(LABELS_AT_TAG) or 0)
    except ValueError:
        return 0


def run(plan: Plan, monitor, on_round, check, **common) -> dict:
    """Train on the champion's rows plus the labelled prod rows through the dev phase (its
    gate decides); the dev answer, whose data says where the rows came from."""
    try:
        with dependency_errors():
            uri, digest, without_labelled = training_rows.rows_source(plan.model, plan.champion)
            base = training_rows.load(uri, digest)
    except training_rows.RowsUnavailable as err:
        raise ApiError(
            error_codes.TRAINING_ROWS_NOT_KEPT,
            f"The training rows of {plan.model!r} v{plan.champion} cannot be read: {err}. "
            "Train a version with phase=dev and make it the champion, then retrain.",
        ) from err
    labelled = labelled_rows(monitor.prod_rows, monitor.store, plan.model, plan.target)
    if labelled.rows == 0:
        raise ApiError(
            error_codes.NO_LABELS,
            f"None of the labelled prod rows of {plan.model!r} can be used: "
            f"{labelled.report()['skipped']}. Send labels of recent prod batches to /feedback.",
        )
    champion = {"version": plan.champion, "digest": digest, "rows": base.num_rows}
    if without_labelled:  # the champion was retrained: its labelled rows are read again below
        champion["without_labelled_rows"] = True
    sources = {"champion": champion, "labelled": labelled.report()}
    table = combine(base, labelled.parts)
    del base, labelled
    tags = {
        **common.pop("tags"),
        "sluice.retrain.from": plan.champion,
        training_rows.BASE_URI: uri,
        training_rows.BASE_DIGEST: digest,
    }
    answer = dev_run(
        InMemory(table, ",", on_round, check),
        {"retrain": sources},
        model_name=plan.model,
        target=plan.target,
        task=plan.task,
        promote=plan.promote,
        tags=tags,
        by="retrain",
        **common,
    )
    answer["data"]["sources"] = sources
    record(plan.model, plan.labels)
    return answer
