"""Retraining from labels: the champion's training rows plus every labelled prod row of the
model (its cells as they arrived, the label as fed back), trained through the dev phase and
its promotion gate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from mlflow import MlflowClient

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import registry, training_rows
from trainer.lifecycle.dependencies import dependency_errors
from trainer.lifecycle.dev import dev_run
from trainer.lifecycle.prod import champion_for
from trainer.lifecycle.retrain_rows import Labelled, combine, fit_columns
from trainer.monitoring.prod_rows import take
from trainer.pipeline.training import InMemory

# On the registered model: how many labels its last retrain used (the trigger counts from it).
LABELS_AT_TAG = "sluice.retrain.labels_at"
# On a retrain's run: the usable labels it found (how many, the latest received or changed),
# and the digest of the table it trained on: a retrain of it with neither changed is refused
# (no_new_labels).
LABELS_STAMP = "sluice.retrain.labels_stamp"
INPUT_DIGEST = "sluice.retrain.input_digest"
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
    columns: list[str] = field(default_factory=list)  # the champion's inputs
    input_digest: str | None = None  # of the rows the champion was retrained on, if it was


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
    spec = champion.model.spec
    found = Plan(model_name, champion.version, spec["target"], spec["task"], labels, promote)
    found.columns = list(champion.model.required_columns)
    with dependency_errors():
        tags = run_tags(model_name, champion.version)
    found.input_digest = tags.get(INPUT_DIGEST)
    check_labels(found, monitor, tags.get(LABELS_STAMP))
    return found


def check_labels(plan: Plan, monitor, recorded: str | None) -> None:
    """409 unless some labelled row with kept cells is of a version with the champion's target
    (no_labels), and, when the champion is a retrain, one arrived or changed since it read
    its labels (no_new_labels)."""
    model_name, labels = plan.model, plan.labels
    todo = (
        f"Score rows with phase=prod, then send their true values to /feedback "
        f"(model={model_name}, columns batch_id, row and {plan.target!r})."
    )
    if labels == 0:
        raise ApiError(error_codes.NO_LABELS, f"No prod row of {model_name!r} has a label. {todo}")
    counts = monitor.prod_rows.label_counts(model_name)
    if not counts:
        raise ApiError(
            error_codes.NO_LABELS,
            f"{labels} prod row(s) of {model_name!r} have labels, but none has its cells kept "
            f"(PROD_ROWS_KEPT, the monitoring retention, or prod by data_uri). {todo}",
        )
    targets = targets_of(monitor.store, model_name, counts)
    if not any(targets[v] == plan.target for v in counts):
        found = sum(n for n, _ in counts.values())
        raise ApiError(
            error_codes.NO_LABELS,
            f"The {found} labelled prod row(s) of {model_name!r} with kept cells "
            f"were all answered by versions with another target than {plan.target!r} (the "
            f"champion v{plan.champion}'s). {todo}",
        )
    # None: the champion was trained on uploaded rows, so every label is new to it.
    if recorded is not None and recorded == stamp_of(counts, targets, plan.target):
        raise ApiError(
            error_codes.NO_NEW_LABELS,
            f"No label of {model_name!r} arrived or changed since the champion "
            f"v{plan.champion}'s retrain read them ({recorded}): a retrain would train on "
            f"the same rows. {todo}",
        )


def stamp_of(counts: dict[str, tuple[int, str]], targets: dict, target: str) -> str:
    """The usable labels in a few characters: how many, and the latest received or changed
    ("35 labels, latest 2026-12-07T18:54:11.123456"); a new or changed label changes it."""
    usable = [counts[v] for v in counts if targets.get(v) == target]
    latest = max((at for _, at in usable), default="none")
    return f"{sum(n for n, _ in usable)} labels, latest {latest}"


def run_tags(model_name: str, version: str) -> dict[str, str]:
    """The tags of the run that made a registered version."""
    client = MlflowClient()
    record = client.get_model_version(model_name, version)
    return client.get_run(record.run_id).data.tags if record.run_id else {}


def targets_of(store, model_name: str, versions) -> dict[str, str | None]:
    """Each version's target column (None when its monitoring profile is gone)."""
    found = {}
    for version in versions:
        profile = store.profile(model_name, version)
        found[version] = profile["target"] if profile else None
    return found


def labelled_rows(prod_rows, store, model_name: str, target: str, columns: list[str]) -> Labelled:
    """Every labelled prod row of the model whose cells were kept: its cells in the champion's
    input `columns` plus the label in the target column (other columns dropped, missing ones
    empty, both counted)."""
    found = Labelled()
    by_batch = prod_rows.labels_of(model_name)
    cells = prod_rows.cells_of(list(by_batch))
    targets = targets_of(store, model_name, {version for version, _, _ in by_batch.values()})
    for batch_id, (version, rows, labels) in by_batch.items():
        if targets[version] != target:
            found.other_target += len(rows)
            continue
        table = cells.get(batch_id)
        if table is None:
            found.not_kept += len(rows)
            continue
        part = take(table, rows)
        if target in part.column_names:  # a column of the same name the model did not read
            part = part.drop_columns([target])
        part = fit_columns(part, columns, found)
        found.parts.append(part.append_column(target, pa.array(labels, type=pa.string())))
        found.rows += len(rows)
        found.batches += 1
    return found


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
    # Taken before the rows are read: a label arriving meanwhile makes the next stamp differ.
    counts = monitor.prod_rows.label_counts(plan.model)
    stamp = stamp_of(counts, targets_of(monitor.store, plan.model, counts), plan.target)
    labelled = labelled_rows(
        monitor.prod_rows, monitor.store, plan.model, plan.target, plan.columns
    )
    if labelled.rows == 0:
        raise ApiError(
            error_codes.NO_LABELS,
            f"None of the labelled prod rows of {plan.model!r} can be used: "
            f"{labelled.skipped()}. Send labels of recent prod batches to /feedback.",
        )
    champion = {"version": plan.champion, "digest": digest, "rows": base.num_rows}
    if without_labelled:  # the champion was retrained: its labelled rows are read again below
        champion["without_labelled_rows"] = True
    # Exactly the champion's inputs: a column it dropped never comes back through old rows.
    dropped = [name for name in base.column_names if name not in [*plan.columns, plan.target]]
    if dropped:
        champion["columns_dropped"] = dropped
    sources = {"champion": champion, "labelled": labelled.report(plan.champion)}
    table = combine(base.drop_columns(dropped), labelled.parts)
    del base, labelled
    rows_digest = registry.table_digest(table)
    if rows_digest == plan.input_digest:
        raise ApiError(
            error_codes.NO_NEW_LABELS,
            f"The rows of this retrain are those the champion v{plan.champion} was retrained "
            f"on (digest {rows_digest}): no label changed. Send labels to /feedback first.",
        )
    tags = {
        **common.pop("tags"),
        "sluice.retrain.from": plan.champion,
        training_rows.BASE_URI: uri,
        training_rows.BASE_DIGEST: digest,
        LABELS_STAMP: stamp,
        INPUT_DIGEST: rows_digest,
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
        started_from=plan.champion,
        **common,
    )
    answer["data"]["sources"] = sources
    record(plan.model, plan.labels)
    return answer
