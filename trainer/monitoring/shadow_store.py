"""A shadow challenger's side of prod batches in the monitoring store (the table is declared in
store.py): written by the shadow thread, read by GET /models/<name>/challenger."""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa

from trainer.monitoring.store import batches, decode_array, encode_array, labels, shadow

LATENCY_ROWS = 2000  # the latest batches behind the latency percentiles


def shadow_row(batch_id, model, version, created_at, status, n_rows, **more) -> dict:
    """One row of the shadow table (`more`: seconds, champion_seconds, classes, predictions,
    error)."""
    row = {
        "batch_id": batch_id,
        "version": version,
        "model": model,
        "created_at": created_at,
        "status": status,
        "n_rows": n_rows,
        "seconds": None,
        "champion_seconds": None,
        "classes": None,
        "predictions": None,
        "error": None,
    }
    for key, value in more.items():
        if key == "predictions" and value is not None:
            value = encode_array(value)
        elif key == "classes" and value is not None:
            value = json.dumps(list(value))
        row[key] = value
    return row


def write(engine: sa.Engine, rows: list[dict]) -> None:
    """Insert rows in one statement; when some are there already (a batch offered twice),
    row by row, leaving those as they are."""
    if not rows:
        return
    try:
        with engine.begin() as conn:
            conn.execute(shadow.insert(), rows)
        return
    except sa.exc.IntegrityError:
        pass
    with engine.begin() as conn:
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(shadow.insert().values(**row))
            except sa.exc.IntegrityError:
                pass


def activity(engine: sa.Engine, model: str, version: str, since) -> dict:
    """Batches and rows by status since the challenge started, each side's latency
    percentiles (of the latest LATENCY_ROWS batches) and the last challenger error."""
    mine = (shadow.c.model == model, shadow.c.version == version, shadow.c.created_at >= since)
    with engine.connect() as conn:
        counts = conn.execute(
            sa.select(shadow.c.status, sa.func.count(), sa.func.sum(shadow.c.n_rows))
            .where(*mine)
            .group_by(shadow.c.status)
        ).all()
        timed = conn.execute(
            sa.select(shadow.c.seconds, shadow.c.champion_seconds)
            .where(*mine, shadow.c.status == "scored")
            .order_by(shadow.c.created_at.desc())
            .limit(LATENCY_ROWS)
        ).all()
        last_error = conn.execute(
            sa.select(shadow.c.error)
            .where(*mine, shadow.c.status == "error")
            .order_by(shadow.c.created_at.desc())
            .limit(1)
        ).scalar()
    by_status = {status: (int(n), int(rows or 0)) for status, n, rows in counts}
    return {
        "by_status": by_status,
        "challenger_seconds": [s for s, _ in timed if s is not None],
        "champion_seconds": [c for _, c in timed if c is not None],
        "last_error": last_error,
    }


def paired(engine: sa.Engine, model: str, champion: str, challenger: str, since):
    """(champion's predictions, challenger's predictions, label texts, challenger's classes)
    at the labelled rows of every batch the champion `champion` answered and the challenger
    scored since `since`, oldest first."""
    query = (
        sa.select(labels.c.batch_id, labels.c.row, labels.c.label)
        .select_from(
            labels.join(batches, labels.c.batch_id == batches.c.batch_id).join(
                shadow, shadow.c.batch_id == batches.c.batch_id
            )
        )
        .where(
            batches.c.model == model,
            batches.c.version == champion,
            batches.c.predictions.is_not(None),
            shadow.c.version == challenger,
            shadow.c.status == "scored",
            shadow.c.created_at >= since,
        )
        .order_by(batches.c.created_at, labels.c.batch_id, labels.c.row)
    )
    with engine.connect() as conn:
        grouped: dict[str, tuple[list, list]] = {}
        for batch_id, row, label in conn.execute(query):
            entry = grouped.setdefault(batch_id, ([], []))
            entry[0].append(row)
            entry[1].append(label)
        ids = list(grouped)
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            theirs = dict(
                conn.execute(
                    sa.select(batches.c.batch_id, batches.c.predictions).where(
                        batches.c.batch_id.in_(chunk)
                    )
                ).all()
            )
            ours = {
                r.batch_id: (r.predictions, r.classes)
                for r in conn.execute(
                    sa.select(shadow.c.batch_id, shadow.c.predictions, shadow.c.classes).where(
                        shadow.c.batch_id.in_(chunk), shadow.c.version == challenger
                    )
                )
            }
            for batch_id in chunk:
                rows, texts = grouped[batch_id]
                at = np.asarray(rows, dtype="int64")
                blob, classes = ours[batch_id]
                yield (
                    decode_array(theirs[batch_id])[at],
                    decode_array(blob)[at],
                    texts,
                    json.loads(classes) if classes else None,
                )
