"""The prod phase on an upload: the champion's scores of every row, in input order."""

from __future__ import annotations

import time

import pyarrow as pa

from sluice_common import error_codes
from sluice_common.database import utcnow
from sluice_common.errors import ApiError
from sluice_common.web import metrics
from trainer.lifecycle import registry
from trainer.lifecycle.answers import prod_answer
from trainer.lifecycle.dependencies import dependency_errors
from trainer.lifecycle.hints import missing_columns_error, no_champion
from trainer.lifecycle.serving import ChampionCache
from trainer.lifecycle.signing import UntrustedVersion
from trainer.model import row_flags
from trainer.model.sluice_model import SMALL_ROWS, column_names, table_rows
from trainer.monitoring.monitor import new_batch_id


def prod_run(
    table,
    parsing: dict,
    *,
    model_name: str,
    proba: bool,
    cache: ChampionCache,
    monitor=None,
    max_flagged_rows: int = row_flags.DEFAULT_MAX_FLAGGED_ROWS,
    shadow=None,
) -> dict:
    """Score every row with the champion, in input order; the prod answer (listing at most
    `max_flagged_rows` flagged rows).

    `table` holds raw cells (an Arrow table, a DataFrame or a dict of column lists for a few
    rows); the champion reads them with the rules it was trained with.
    """
    champion = champion_for(model_name, cache)
    names = column_names(table)
    required = champion.model.required_columns
    present = set(names)
    missing = [name for name in required if name not in present]
    if missing:
        raise missing_columns_error(model_name, champion.version, missing, present)
    reads = set(required)
    ignored = [name for name in names if name not in reads]
    cells = table  # all columns: a shadow challenger may read others
    table = read_columns(table, required if ignored else None)
    return score_upload(
        table,
        parsing,
        model_name,
        proba,
        champion,
        monitor,
        ignored,
        max_flagged_rows,
        shadow=(shadow, cells) if shadow is not None else None,
    )


def read_columns(table, required: list[str] | None):
    """The `required` columns of the table (all when None) as the model takes them: a dict
    of lists for a few rows, else Arrow. Columns the model ignores are never converted: they
    were most of a wide upload's cost."""
    if isinstance(table, dict):
        return {name: table[name] for name in required} if required else table
    if not isinstance(table, pa.Table):  # a DataFrame, from a CSV posted here
        table = pa.Table.from_pandas(table[required] if required else table, preserve_index=False)
    elif required:
        table = table.select(required)
    return table.to_pydict() if table.num_rows <= SMALL_ROWS else table


def champion_for(model_name: str, cache: ChampionCache):
    """The champion to score with; 404/409 saying what to do when there is none."""
    with dependency_errors():
        try:
            champion = cache.get(model_name)
        except UntrustedVersion as err:
            raise ApiError(
                error_codes.UNTRUSTED_CHAMPION,
                f"The champion alias of {model_name!r} points at a version Sluice did not sign "
                f"({err}), and no trusted champion was served before. Train it with phase=dev "
                "and promote=always, or point the alias at a version Sluice registered.",
            ) from err
        exists = champion is not None or registry.model_exists(model_name)
    if champion is None:
        if exists:
            raise no_champion(model_name)
        raise ApiError(
            error_codes.MODEL_NOT_FOUND,
            f"No model named {model_name!r} has been trained. Train it first with phase=dev "
            f"(model={model_name}).",
        )
    return champion


def score_upload(
    table, parsing, model_name, proba, champion, monitor, ignored, max_flagged_rows, shadow=None
) -> dict:
    """The champion's scores of an upload's rows, timed and counted for monitoring; the
    prod answer. `shadow`: (challenger_shadow.Shadow, the batch's cells) when a shadow
    challenger may score the batch after the champion answered."""
    if getattr(champion.model, "rules", None) is None and isinstance(table, pa.Table):
        table = table.to_pandas()  # a model logged before cell rules took DataFrames only
    # Checked by name: the champion runs its own logged copy of sluice_model, so its
    # exception classes are not this process's.
    started = time.perf_counter()
    try:
        scored = champion.model.score_frame(table)
    except (ValueError, TypeError) as err:
        if shadow is not None:  # counted as the champion's error while a challenge runs
            shadow[0].champion_failed(model_name, new_batch_id(), table_rows(table))
        raise ApiError(
            error_codes.INVALID_VALUES, f"Some values could not be scored: {str(err)[:300]}"
        ) from err
    n_rows = table_rows(table)
    seconds = time.perf_counter() - started
    metrics.record_prediction(model_name, champion.version, n_rows, seconds)
    answer = prod_answer(
        model_name, champion, n_rows, scored, parsing, ignored, proba, max_flagged_rows
    )
    if monitor is not None:
        # Counted here, written by a background thread: the answer never waits on storage.
        answer["batch_id"] = monitor.observe(
            model_name, champion.version, champion.model, scored, n_rows
        )
        kept = getattr(monitor, "prod_rows", None)
        if kept is not None:  # the cells as they arrived, for labelled retraining
            kept.keep(answer["batch_id"], model_name, utcnow(), table, n_rows)
        if shadow is not None:
            shadow[0].offer(
                model_name, champion.version, answer["batch_id"], shadow[1], n_rows, seconds
            )
    return answer
