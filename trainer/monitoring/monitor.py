"""Monitoring as the trainer uses it: count a scored batch, answer /monitoring, read labels."""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.database import iso_utc, utcnow
from sluice_common.errors import ApiError
from trainer.fit.metrics import row_losses, score
from trainer.fit.target import labels_of
from trainer.monitoring import drift, quality
from trainer.monitoring import profile as profiles
from trainer.monitoring.store import BatchRecord, MonitoringStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerformanceSettings:
    min_labels: int = 100
    tolerance: float = 0.1  # relative loss increase that matters
    confidence: float = 0.99  # one-sided: worse than the baseline beyond both samples' noise

    @property
    def rule(self) -> quality.Rule:
        return quality.Rule(tolerance=self.tolerance, confidence=self.confidence)


_TIME_CODES = {"since": error_codes.INVALID_SINCE, "until": error_codes.INVALID_UNTIL}


def parse_time(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 time as naive UTC (a time without an offset is taken as UTC)."""
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as err:  # OverflowError: beyond year 1..9999 in UTC
        raise ApiError(
            _TIME_CODES[name],
            f"{name} must be an ISO 8601 time such as 2026-12-01T10:00:00Z; got {text[:40]!r}.",
        ) from err
    return value


def new_batch_id() -> str:
    """32 hex digits: the second it was made, then 96 random bits. The time says whether a
    batch id not found yet may still be on its way to the store (another worker's queue)."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(12)}"


def _maybe_in_flight(batch_id: str) -> bool:
    try:
        made = int(batch_id[:8], 16)
    except ValueError:
        return False
    return -2 <= (int(time.time()) & 0xFFFFFFFF) - made <= 10


def scored_counts(profile, compiled, scored, n_rows: int) -> tuple[dict, np.ndarray]:
    """A scored batch's monitoring counts and the predictions kept for the feedback join: the
    one rule, run by the trainer for its batches and by a worker for a partition."""
    if profile is not None and scored.matrix is not None:
        values = profiles._prediction_values(profile, scored.predictions, scored.probabilities)
        counts = profiles.batch_counts(
            profile,
            scored.matrix,
            scored.warnings,
            values,
            compiled,
            scores=profiles.prediction_scores(profile["classes"], scored.probabilities),
        )
    else:  # a version logged before monitoring: rows and predictions only
        counts = {"rows": n_rows, "features": {}, "prediction": None}
    if scored.probabilities is not None:
        kept = np.asarray(scored.probabilities)
    else:
        kept = np.asarray(scored.predictions, dtype="float64")
    return counts, kept


class Monitor:
    """Per-process monitoring: compiled profiles and the store."""

    def __init__(self, store: MonitoringStore, settings: drift.DriftSettings, perf):
        self.store = store
        self.settings = settings
        self.perf = perf
        self.prod_rows = None  # a ProdRows keeping prod cells for retraining (PROD_ROWS_KEPT)
        self._compiled: dict[int, tuple[dict, profiles.Compiled]] = {}
        self._guard = threading.Lock()

    def _compile(self, profile: dict) -> profiles.Compiled:
        entry = self._compiled.get(id(profile))
        if entry is None or entry[0] is not profile:
            with self._guard:
                if len(self._compiled) > 256:
                    self._compiled.clear()
                entry = self._compiled[id(profile)] = (profile, profiles.Compiled(profile))
        return entry[1]

    # -- prod ------------------------------------------------------------------------------

    def observe(self, model_name: str, version: str, model, scored, n_rows: int) -> str:
        """Count a scored batch and queue it; its batch id. Costs microseconds for a row."""
        profile = getattr(model, "profile", None)
        compiled = self._compile(profile) if profile is not None else None
        counts, kept = scored_counts(profile, compiled, scored, n_rows)
        return self.record_counts(model_name, version, profile, counts, kept, n_rows)

    def record_counts(
        self, model_name, version, profile, counts, kept, n_rows: int, batch_id=None
    ) -> str:
        """Queue a batch counted elsewhere (a partition scored on a Dask worker); its id."""
        batch_id = batch_id or new_batch_id()
        self.store.record(
            BatchRecord(batch_id, model_name, version, utcnow(), n_rows, counts, kept, profile)
        )
        return batch_id

    # -- reading ---------------------------------------------------------------------------

    def _version_and_profile(self, model_name: str, version: str | None):
        self.store.flush(timeout=2 * self.store.flush_seconds + 1)
        version = version or self.store.latest_version(model_name)
        if version is None:
            raise ApiError(
                error_codes.NO_MONITORING_DATA,
                f"Nothing has been scored with model {model_name!r} yet; monitoring starts "
                "with its first prod request.",
            )
        profile = self.store.profile(model_name, version)
        return version, profile

    def summary(self, model_name, version=None, batch_id=None, since=None, until=None) -> dict:
        """The /monitoring answer (docs/monitoring.md)."""
        if batch_id is not None:
            row = self._batch_row(model_name, batch_id)
            version = row.version
        version, profile = self._version_and_profile(model_name, version)
        seconds, start, end = self.store.aligned(model_name, version, since, until)
        if batch_id is not None:
            counts, n_batches, n_rows = json.loads(row.counts), 1, row.n_rows
            minutes = []
            start = end = None
        else:
            counts, n_batches, n_rows, minutes = self.store.window(
                model_name, version, since, until
            )
            if (
                profile is None
                and n_batches == 0
                and not self.store.has_batches(model_name, version)
            ):
                raise ApiError(
                    error_codes.NO_MONITORING_DATA,
                    f"No prod batch of model {model_name!r} v{version} is recorded.",
                )
        answer = {
            "model": model_name,
            "version": version,
            # As stored: whole minutes, or whole hours for windows over 6 hours or open ones.
            "window": {
                "since": iso_utc(start),
                "until": iso_utc(end),
                "resolution_seconds": None if batch_id else seconds,
                "batch_id": batch_id,
            },
            "batches": n_batches,
            "rows_scored": n_rows,
            "records_dropped": dict(self.store.dropped),
        }
        if profile is None:
            answer.update(
                drift=None,
                performance=None,
                status="insufficient_data",
                alerts=[
                    f"v{version} was trained before Sluice kept reference profiles: train it "
                    "again (phase=dev) to monitor its drift."
                ],
            )
            return answer
        assessed = drift.assess(profile, counts, self.settings)
        performance = self.performance(profile, model_name, version, batch_id, start, end)
        status, alerts = self._status(assessed, performance, n_rows)
        answer.update(drift=assessed, performance=performance, status=status, alerts=alerts)
        answer["_minutes"] = minutes  # for the report; removed from the JSON answer
        if len(minutes) < 2 and batch_id is None:
            # A window of one minute or hour: the report's timeline goes by batch instead.
            answer["_points"] = self.store.batch_counts_in(model_name, version, start, end)
        answer["_profile"] = profile
        return answer

    def _batch_row(self, model_name: str, batch_id: str):
        self.store.flush(timeout=2 * self.store.flush_seconds + 1)
        if _maybe_in_flight(batch_id):
            self._wait_for_batches([batch_id])
        row = self.store.batch(batch_id, with_predictions=False)
        if row is None or row.model != model_name:
            raise ApiError(
                error_codes.UNKNOWN_BATCH,
                f"No prod batch {batch_id[:40]!r} of model {model_name!r} is recorded "
                "(batch ids are in the prod answers).",
            )
        return row

    def _status(self, assessed: dict, performance: dict, n_rows: int) -> tuple[str, list[str]]:
        alerts, level = [], "ok"
        min_rows = self.settings.min_rows
        features = assessed["features"]
        for name, result in sorted(features.items(), key=lambda kv: -(kv[1]["score"] or 0)):
            if result["status"] in ("warning", "alert"):
                level = "warning"
                threshold = self.settings.threshold(result["status"], result["method"])
                alerts.append(
                    f"{name!r}: {result['method']} {result['score']:.3g} ≥ {threshold:g} "
                    f"({'drifted' if result['drifted'] else 'watch'})"
                )
        share = assessed["share_drifted"]
        if (
            share is not None
            and share >= self.settings.share_alert
            and assessed["drifted_features"]
        ):
            level = "alert"
            alerts.insert(
                0,
                f"{len(assessed['drifted_features'])} of {len(features)} features drifted "
                f"(share {share:.0%} ≥ {self.settings.share_alert:.0%})",
            )
        for what, result in (
            ("the predictions' distribution", assessed["prediction"]),
            ("the predicted probabilities' distribution", assessed.get("prediction_score")),
        ):
            if result is None:
                continue
            if result["status"] == "alert":
                level = "alert"
                alerts.insert(0, f"{what} drifted ({result['method']} {result['score']:.3g})")
            elif result["status"] == "warning" and level == "ok":
                level = "warning"
        if performance.get("status") == "alert":
            level = "alert"
            alerts.insert(0, performance["note"])
        if level == "ok" and n_rows < min_rows and performance.get("status") != "ok":
            level = "insufficient_data"
            alerts.append(f"drift needs at least {min_rows} scored rows; has {n_rows}")
        return level, alerts

    def performance(self, profile, model_name, version, batch_id, since, until) -> dict:
        """Live metrics over the labelled rows (by when they were predicted)."""
        ys, predictions, times = [], [], []
        for created_at, kept, texts in self.store.labelled(
            model_name, version, since, until, batch_id
        ):
            ys.append(texts)
            predictions.append(kept)
            times.append((created_at, len(texts)))
        if batch_id is not None:
            info = self.store.batches_info([batch_id]).get(batch_id)
            n_scored = info[2] if info else 0
        else:
            n_scored, _ = self.store.scored_rows(model_name, version, since, until)
        labels = [text for texts in ys for text in texts]
        result = {
            "labelled_rows": len(labels),
            "rows_scored": n_scored,
            "coverage": round(len(labels) / n_scored, 6) if n_scored else 0.0,
            "primary": profile["primary"],
            "baseline": profile["baseline"],
            "metrics": {},
        }
        if not labels:
            result.update(status="insufficient_data", note="no labels received yet")
            return result
        y_all, readable = _stored_labels(profile, labels)
        kept_all = np.concatenate(predictions)
        kept, y = kept_all[readable], y_all[readable]
        task = profile["task"]
        result["timeline"] = _metric_timeline(task, times, y_all, kept_all, readable)
        if task == "regression":
            metrics = score(task, y, kept, None)
            losses = row_losses(task, y, kept, None)
        else:
            metrics = score(task, y, None, kept)
            losses = row_losses(task, y, None, kept)
        result["metrics"] = metrics
        if len(y) < self.perf.min_labels:
            result.update(
                status="insufficient_data",
                note=f"live metrics need at least {self.perf.min_labels} labels to be judged; "
                f"has {len(y)}",
            )
            return result
        judged = quality.judge(task, losses, quality.baseline_of(profile), self.perf.rule)
        result["loss"] = {key: value for key, value in judged.items() if key != "note"}
        result.update(status="alert" if judged["alert"] else "ok", note=judged["note"])
        return result

    # -- feedback --------------------------------------------------------------------------

    def feedback(self, model_name: str, frame) -> dict:
        """Store labels from a table of batch_id, row and the target column (text cells)."""
        columns = [str(c) for c in frame.columns]
        for needed in ("batch_id", "row"):
            if needed not in columns:
                raise ApiError(
                    error_codes.MISSING_COLUMNS,
                    f"The feedback file needs columns batch_id, row and the model's target; "
                    f"it has {', '.join(map(repr, columns[:20]))}.",
                    missing_columns=[needed],
                )
        batch_ids = [
            str(v).strip().lower() if v is not None else "" for v in frame["batch_id"].tolist()
        ]
        rows = _read_rows(frame["row"].tolist())
        bad = next((b for b in batch_ids if not BATCH_ID.match(b)), None)
        if bad is not None:
            raise ApiError(
                error_codes.INVALID_BATCH_ID_IN_LABELS,
                f"batch_id must be the 32-character id of a prod answer; got {bad[:40]!r}.",
            )
        self.store.flush(timeout=2 * self.store.flush_seconds + 1)
        wanted = sorted(set(batch_ids))
        info = self.store.batches_info(wanted)
        if len(info) < len(wanted) and any(_maybe_in_flight(b) for b in wanted if b not in info):
            info = self._wait_for_batches(wanted)
        unknown = sorted(b for b in set(batch_ids) if b not in info)
        if unknown:
            raise ApiError(
                error_codes.UNKNOWN_BATCH,
                f"{len(unknown)} batch id(s) are not recorded, such as {unknown[0][:40]!r}; use "
                "the batch_id of a prod answer.",
                unknown_batches=unknown[:20],
            )
        others = sorted({info[b][0] for b in batch_ids} - {model_name})
        if others:
            raise ApiError(
                error_codes.BATCH_OF_ANOTHER_MODEL,
                f"Some batches were scored by model(s) {', '.join(map(repr, others[:5]))}, not "
                f"{model_name!r}; post their labels with model=<that name>.",
            )
        expired = sorted(b for b in set(batch_ids) if not info[b][3])
        if expired:
            raise ApiError(
                error_codes.PREDICTIONS_EXPIRED,
                f"The predictions of {len(expired)} batch(es), such as {expired[0]!r}, are past "
                "the retention limit (MONITORING_RETENTION_DAYS / _ROWS): their labels cannot "
                "be joined any more.",
            )
        out_of_range = [
            i for i, (b, r) in enumerate(zip(batch_ids, rows, strict=True)) if r >= info[b][2]
        ]
        if out_of_range:
            i = out_of_range[0]
            raise ApiError(
                error_codes.ROW_OUT_OF_RANGE,
                f"{len(out_of_range)} row(s) are beyond their batch, such as line {i + 2}: row "
                f"{rows[i]} of batch {batch_ids[i]!r}, which has {info[batch_ids[i]][2]} rows "
                "(rows count from 0).",
            )
        labels_by_version = {}
        for i, b in enumerate(batch_ids):
            labels_by_version.setdefault(info[b][1], []).append(i)
        target = None
        items = []
        for version, positions in labels_by_version.items():
            profile = self.store.profile(model_name, version)
            if profile is None:
                raise ApiError(
                    error_codes.NO_REFERENCE_PROFILE,
                    f"v{version} was trained before Sluice monitored models; retrain it to "
                    "receive labels.",
                )
            target = profile["target"]
            if target not in columns:
                raise ApiError(
                    error_codes.MISSING_COLUMNS,
                    f"The feedback file needs the label in a column named as the model's "
                    f"target, {target!r}.",
                    missing_columns=[target],
                )
            texts = frame[target].tolist()
            picked = [texts[i] for i in positions]
            cells = pa.array([None if v is None else str(v) for v in picked], type=pa.string())
            values, readable = labels_of(profile, cells)
            if profile["task"] == "regression":
                # As training reads a target: beyond float32 a value cannot be learned or scored.
                readable &= np.isfinite(values) & (np.abs(values) <= np.finfo(np.float32).max)
            if not readable.all():
                bad = [positions[j] for j in np.flatnonzero(~readable)]
                what = (
                    "a number"
                    if profile["task"] == "regression"
                    else f"one of the classes {profile['classes'][:10]}"
                )
                raise ApiError(
                    error_codes.UNREADABLE_LABELS,
                    f"{len(bad)} label(s) are not {what}, such as {texts[bad[0]]!r} on line "
                    f"{bad[0] + 2}. Nothing was stored.",
                )
            # Stored as the model reads it (the class as trained, or the number), so "1" and
            # "1.0", or " yes" and "yes", are the same label.
            canonical = (
                [repr(float(v)) for v in values]
                if profile["task"] == "regression"
                else [profile["classes"][int(code)] for code in values]
            )
            items += [(batch_ids[i], rows[i], c) for i, c in zip(positions, canonical, strict=True)]
        seen: dict[tuple[str, int], str] = {}
        for batch, row, label in items:
            if seen.setdefault((batch, row), label) != label:
                raise ApiError(
                    error_codes.CONFLICTING_LABELS,
                    f"Row {row} of batch {batch!r} has two different labels in this file.",
                )
        saved = self.store.save_labels(items)
        return {"model": model_name, "labels": len(items), "batches": len(set(batch_ids)), **saved}

    def _wait_for_batches(self, batch_ids: list[str]) -> dict:
        """Batches another worker scored may still be in its writer's queue for a moment."""
        deadline = time.monotonic() + 3 * self.store.flush_seconds + 1
        while True:
            info = self.store.batches_info(batch_ids)
            if len(info) == len(batch_ids) or time.monotonic() > deadline:
                return info
            time.sleep(0.1)


TIMELINE_POINTS = 50


def _stored_labels(profile: dict, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels as /feedback stored them (a class as trained, or a number written by Python):
    class codes or values, and which are usable."""
    if profile["task"] == "regression":
        values = np.array([float(text) for text in texts], dtype="float64")
        return values, np.isfinite(values)
    index = {label: code for code, label in enumerate(profile["classes"])}
    codes = np.array([index.get(text, -1) for text in texts], dtype="float64")
    return codes, codes >= 0


def _metric_timeline(task, times, y, kept, readable) -> dict:
    """Live metrics over time: consecutive batches in at most TIMELINE_POINTS groups of about
    as many labels each, each group scored on its own rows."""
    total = sum(n for _, n in times)
    per_group = max(1, -(-total // TIMELINE_POINTS))
    groups, start, size, first = [], 0, 0, None
    for created_at, n in times:
        first = first or created_at
        size += n
        if size >= per_group:
            groups.append((first, start, start + size))
            start, size, first = start + size, 0, None
    if size:
        groups.append((first, start, start + size))
    points, series = [], {}
    for moment, begin, end in groups:
        ok = readable[begin:end]
        yy, kk = y[begin:end][ok], kept[begin:end][ok]
        if not len(yy):
            continue
        values = score(task, yy, kk, None) if task == "regression" else score(task, yy, None, kk)
        points.append(iso_utc(moment))
        for name, value in values.items():
            series.setdefault(name, [None] * (len(points) - 1)).append(value)
        for name in series:
            if len(series[name]) < len(points):
                series[name].append(None)
    return {"times": points, "metrics": series}


BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
ROW = re.compile(r"^[0-9]{1,12}$")  # ASCII digits only: int() would take "1_0" and "٣"


def _read_rows(values: list) -> list[int]:
    rows = []
    for i, value in enumerate(values):
        text = "" if value is None else str(value).strip()
        number = int(text) if ROW.match(text) else -1
        if number < 0:
            raise ApiError(
                error_codes.INVALID_ROW,
                f"row must be a whole number from 0 (a row's position in its prod batch); "
                f"line {i + 2} has {text[:40]!r}.",
            )
        rows.append(number)
    return rows


class ScrapeCollector:
    """Prometheus families computed from the store at scrape time (cached briefly): drift
    per {model, version, feature}, live metrics per {model, version, metric}, the champion."""

    CACHE_SECONDS = 5.0

    def __init__(self, monitor: Monitor, cache, window_minutes: float):
        self.monitor = monitor
        self.cache = cache
        self.window_minutes = window_minutes
        self._families: list = []
        self._at = 0.0
        self._guard = threading.Lock()

    def __call__(self):
        with self._guard:
            if time.monotonic() - self._at > self.CACHE_SECONDS:
                self._families = self._collect()
                self._at = time.monotonic()
            return list(self._families)

    def _collect(self) -> list:
        from prometheus_client.core import GaugeMetricFamily

        drift_score = GaugeMetricFamily(
            "sluice_drift_score",
            "Drift of a feature (or the prediction) over the recent window, by its method.",
            labels=["model", "version", "feature", "method"],
        )
        live = GaugeMetricFamily(
            "sluice_live_metric",
            "Live quality over the labelled rows of the recent window.",
            labels=["model", "version", "metric"],
        )
        status = GaugeMetricFamily(
            "sluice_monitoring_status",
            "1 for the model version's current monitoring status.",
            labels=["model", "version", "status"],
        )
        champion = GaugeMetricFamily(
            "sluice_champion_info",
            "The version each model serves as champion (value 1).",
            labels=["model", "version"],
        )
        since = utcnow() - timedelta(minutes=self.window_minutes)
        for model_name in self.monitor.store.models():
            known = self.cache.last_known(model_name)
            if known:
                champion.add_metric([model_name, known], 1)
            version = known or self.monitor.store.latest_version(model_name)
            if version is None or self.monitor.store.profile(model_name, version) is None:
                continue
            summary = self.monitor.summary(model_name, version, since=since)
            for name, result in summary["drift"]["features"].items():
                if result["score"] is not None:
                    drift_score.add_metric(
                        [model_name, version, name, result["method"]], result["score"]
                    )
            for what in ("prediction", "prediction_score"):
                result = summary["drift"].get(what)
                if result is not None and result["score"] is not None:
                    drift_score.add_metric(
                        [model_name, version, what, result["method"]], result["score"]
                    )
            performance = summary["performance"]
            if performance["labelled_rows"] >= self.monitor.perf.min_labels:
                for metric, value in performance["metrics"].items():
                    live.add_metric([model_name, version, metric], value)
            status.add_metric([model_name, version, summary["status"]], 1)
        return [drift_score, live, status, champion]
