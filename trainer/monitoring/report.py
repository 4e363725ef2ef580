"""The monitoring report: one self-contained HTML page (inline SVG, no scripts, no network).

`render_report(data)` takes the monitoring summary dict (model, version, window, summary,
features, prediction, timeline, performance) and returns the page. Every string from `data`
is escaped (column names and category labels come from users' CSVs), a Content-Security-Policy
forbids scripts and every load, and the page is bounded: at most MAX_PLOTTED_FEATURES
distribution plots, MAX_BINS bins per plot, MAX_POINTS points and MAX_LINES lines per chart.
"""

from __future__ import annotations

from statistics import fmean

from sluice_common.svg import PALETTE, bars, esc, finite, lines, number, percent
from sluice_common.svg import downsample as _downsample

MAX_PLOTTED_FEATURES = 60
MAX_TABLE_ROWS = 1000
MAX_BINS = 40
MAX_POINTS = 500
MAX_LINES = 10
MAX_METRICS = 6
STATUSES = ("alert", "warning", "ok", "insufficient_data")  # most severe first
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "mse", "brier", "brier_score"}
HIGHER_IS_BETTER = {"accuracy", "auc", "roc_auc", "r2", "f1", "precision", "recall"}
SERIES = (("training data", "reference"), ("recent window", "recent"))

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#f6f7f9}main{max-width:1160px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px}h3{font-size:14px;margin:0;
overflow-wrap:anywhere}section.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;
padding:12px;margin:8px 0}.grid-cards{display:grid;grid-template-columns:repeat(auto-fill,
minmax(540px,1fr));gap:10px}.grid-cards .card{margin:0}.note{color:#555;font-style:italic}
.meta{color:#555;margin:2px 0 6px}table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #dde1e6;padding:3px 8px;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums}.badge{display:inline-block;border-radius:10px;padding:0 8px;
color:#fff;font-size:12px;font-weight:600}.s-ok{background:#3c8c4c}.s-warning{background:#c98a06}
.s-alert{background:#c23b3b}.s-insufficient_data,.s-unknown{background:#7a7f87}
svg.plot{max-width:100%;height:auto;display:block}svg text{font-size:11px;fill:#333}
.bar.reference,.swatch.reference{fill:#8da0cb}.bar.recent,.swatch.recent{fill:#fc8d62}
.axis{stroke:#555}.grid{stroke:#e4e6ea}.line{fill:none;stroke-width:1.8}
.threshold,.baseline{fill:none;stroke:#c23b3b;stroke-width:1.2;stroke-dasharray:5 4}
.baseline{stroke:#555}.rule-label{fill:#777}ul.legend{list-style:none;padding:0;margin:4px 0;
display:flex;flex-wrap:wrap;gap:4px 14px}ul.legend span{display:inline-block;width:12px;height:3px;
vertical-align:middle;margin-right:4px}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


def _status(value: object) -> str:
    """A status as a badge; unknown values show as text, never as a class name."""
    css = value if value in STATUSES else "unknown"
    return f'<span class="badge s-{css}">{esc(value).replace("_", " ")}</span>'


def _note(text: str) -> str:
    """An explanatory sentence (already HTML) in place of, or under, a plot."""
    return f'<p class="note">{text}</p>'


def _count(value: object) -> int:
    """A row or batch count, 0 when it is missing or not a number."""
    return int(value) if finite(value) else 0


def _verdict(metric: str, diff: float | None) -> str:
    """Whether live beats baseline, for the metrics whose direction is known."""
    if diff is None or diff == 0 or metric not in LOWER_IS_BETTER | HIGHER_IS_BETTER:
        return ""
    return " (better)" if (diff < 0) == (metric in LOWER_IS_BETTER) else " (worse)"


def _proportions(values: object, length: int) -> list | None:
    """The values when they are a list of `length`, non-numbers as None; otherwise None."""
    if not isinstance(values, list | tuple) or len(values) != length:
        return None
    return [v if finite(v) else None for v in values]


def _rank(feature: dict) -> tuple:
    """Most severe status first, then highest score, then name."""
    status = feature.get("status")
    score = feature.get("score")
    severity = STATUSES.index(status) if status in STATUSES else len(STATUSES)
    return (severity, -score if finite(score) else float("inf"), str(feature.get("name", "")))


def _bounded_bins(bins: list, columns: list[list | None]) -> tuple[list, list, str]:
    """At most MAX_BINS bins: the tail merged into one bar (its proportions summed)."""
    if len(bins) <= MAX_BINS:
        return bins, columns, ""
    keep, rest = MAX_BINS - 1, len(bins) - MAX_BINS + 1
    merged = [
        None if c is None else c[:keep] + [sum(v for v in c[keep:] if v is not None)]
        for c in columns
    ]
    note = f"The last {rest:,} bins are merged into the last bar (at most {MAX_BINS} are drawn)."
    return [*bins[:keep], f"{rest:,} more bins"], merged, note


def _distribution(feature: dict, kind: str, rows_scored: int) -> str:
    """One feature's (or the prediction's) reference vs recent bar chart, or why there is none."""
    name = str(feature.get("name", ""))
    bins = [str(b) for b in feature.get("bins") or []]
    reference = _proportions(feature.get("reference"), len(bins))
    recent = _proportions(feature.get("recent"), len(bins))
    if not bins or reference is None:
        return _note("No training distribution was recorded for this one.")
    bins, (reference, recent), note = _bounded_bins(bins, [reference, recent])
    series = [(*SERIES[0], reference)]
    if recent is None:
        why = "no rows scored in this window yet" if not rows_scored else "no recent counts"
        note = f"Only the training distribution is shown: {why}. {note}"
    else:
        series.append((*SERIES[1], recent))
    return bars(kind, name, bins, series) + (_note(esc(note)) if note.strip() else "")


def _card(feature: dict, rows_scored: int) -> str:
    """One feature's box: name, kind, method, score, status and its distribution plot."""
    method = str(feature.get("method") or "").upper()
    meta = f"{esc(feature.get('kind', ''))} · {esc(method)} {number(feature.get('score'))} · "
    return (
        f'<section class="card"><h3>{esc(feature.get("name", ""))}</h3>'
        f'<p class="meta">{meta}{_status(feature.get("status"))}</p>'
        f"{_distribution(feature, 'distribution', rows_scored)}</section>"
    )


def _header(data: dict) -> str:
    """Model, version, window, overall status and alerts."""
    summary, window = data.get("summary") or {}, data.get("window") or {}
    since = esc(window.get("since") or "the first batch")
    until = esc(window.get("until") or "now")
    rows, batches = _count(summary.get("rows_scored")), _count(summary.get("batches"))
    alerts = "".join(f"<li>{esc(alert)}</li>" for alert in summary.get("alerts") or [])
    parts = [
        f"<h1>{esc(data.get('model', ''))} · version {esc(data.get('version', ''))} "
        f"{_status(summary.get('status'))}</h1>",
        f'<p class="meta">Window: {since} → {until} · {batches:,} batches, {rows:,} rows scored'
        f" · generated {esc(data.get('generated_at', ''))}</p>",
        f'<ul class="alerts">{alerts}</ul>' if alerts else "",
    ]
    if not rows:
        parts.append(_note("No rows scored in this window yet: the plots show the training data."))
    elif summary.get("status") == "insufficient_data":
        wanted = _count(summary.get("min_rows"))
        parts.append(_note(f"Drift is judged from {wanted:,} rows on: {rows:,} so far."))
    return "".join(parts)


def _table(features: list[dict]) -> str:
    """Every feature (up to MAX_TABLE_ROWS), most drifted first."""
    if not features:
        return _note("No features are monitored for this model.")
    rows = "".join(
        f"<tr><td>{esc(f.get('name', ''))}</td><td>{esc(f.get('kind', ''))}</td>"
        f"<td>{esc(str(f.get('method') or '').upper())}</td>"
        f'<td class="num">{number(f.get("score"))}</td><td>{_status(f.get("status"))}</td></tr>'
        for f in features[:MAX_TABLE_ROWS]
    )
    left_out = len(features) - MAX_TABLE_ROWS
    more = (
        _note(f"{left_out:,} more features, less drifted, are not listed.") if left_out > 0 else ""
    )
    head = "<tr><th>feature</th><th>kind</th><th>method</th><th>score</th><th>status</th></tr>"
    return f'<table class="summary">{head}{rows}</table>{more}'


def _legend(names: list[str]) -> str:
    """The timeline's colour key, as HTML so long names wrap."""
    items = "".join(
        f'<li><span style="background:{PALETTE[k % len(PALETTE)]}"></span>{esc(name)}</li>'
        for k, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def _timeline(timeline: dict | None) -> str:
    """Drift scores over time for the most drifted features, with the threshold lines."""
    times = list((timeline or {}).get("times") or [])
    if len(times) < 2:
        return _note(
            "Drift over time needs at least two time points (minutes, or hours for long "
            f"windows): {len(times)} so far."
        )
    series = {
        str(name): list(values or [])[: len(times)]
        for name, values in ((timeline or {}).get("series") or {}).items()
    }
    peaks = {
        name: max((v for v in vals if finite(v)), default=None) for name, vals in series.items()
    }
    ranked = sorted((n for n in peaks if peaks[n] is not None), key=lambda n: (-peaks[n], n))
    top = ranked[:MAX_LINES]
    if not top:
        return _note("No drift scores were computed in this window yet.")
    shown, columns = _downsample(times, {n: series[n] for n in top}, MAX_POINTS, max)
    thresholds = (timeline or {}).get("thresholds") or {}
    rules = [(f"{key} {number(value)}", value, "threshold") for key, value in thresholds.items()]
    method = str((timeline or {}).get("method") or "drift").upper()
    chart = lines("timeline", "", shown, [(n, columns[n]) for n in top], rules, f"{method} score")
    notes = []
    if len(ranked) > len(top):
        notes.append(f"The {len(top)} most drifted of {len(ranked):,} features are drawn.")
    if len(shown) < len(times):
        notes.append(f"{len(times):,} batches drawn as {len(shown)} points (each its group's max).")
    return _legend(top) + chart + (_note(esc(" ".join(notes))) if notes else "")


def _performance(performance: dict | None) -> str:
    """Label coverage, live metrics against the baseline, and each metric over time."""
    perf = performance or {}
    labelled, scored = _count(perf.get("labelled_rows")), _count(perf.get("rows_scored"))
    coverage = perf.get("coverage") if finite(perf.get("coverage")) else labelled / max(scored, 1)
    parts = [f"<p>{labelled:,} of {scored:,} scored rows labelled, {percent(coverage)}.</p>"]
    metrics, baseline = perf.get("metrics") or {}, perf.get("baseline") or {}
    if not labelled or not metrics:
        parts.append(_note("No labelled outcomes yet: live metrics appear once labels arrive."))
    primary = perf.get("primary")
    names = sorted(set(metrics) | set(baseline), key=lambda n: (n != primary, n))
    rows = []
    for name in names:
        live, base = metrics.get(name), baseline.get(name)
        diff = live - base if finite(live) and finite(base) else None
        mark = " (primary)" if name == primary else ""
        rows.append(
            f'<tr><td>{esc(name)}{mark}</td><td class="num">{number(live)}</td>'
            f'<td class="num">{number(base)}</td><td class="num">{number(diff)}'
            f"{_verdict(name, diff)}</td></tr>"
        )
    if rows:
        head = "<tr><th>metric</th><th>live</th><th>baseline</th><th>difference</th></tr>"
        parts.append(f'<table class="metrics">{head}{"".join(rows)}</table>')
    if isinstance(perf.get("note"), str) and perf.get("status") in ("ok", "alert"):
        # The live-vs-baseline verdict, with both samples' noise, in words.
        parts.append(_note(esc(perf["note"])))
    over_time = perf.get("timeline") or {}
    times = list(over_time.get("times") or [])
    series = {
        str(k): list(v or [])[: len(times)] for k, v in (over_time.get("metrics") or {}).items()
    }
    drawable = [n for n in sorted(series, key=lambda n: (n != primary, n)) if len(times) >= 2]
    drawable = [n for n in drawable if sum(finite(v) for v in series[n]) >= 2][:MAX_METRICS]
    if labelled and not drawable:
        parts.append(_note("Metrics over time need at least two labelled batches."))
    for name in drawable:
        shown, columns = _downsample(times, {name: series[name]}, MAX_POINTS, fmean)
        rules = [("baseline", baseline.get(name), "baseline")]
        parts.append(
            f"<h3>{esc(name)}</h3>"
            + lines("performance", name, shown, [(name, columns[name])], rules, name, False)
        )
    return "".join(parts)


def render_report(data: dict) -> str:
    """The whole monitoring page for `data` (the monitoring summary dict) as HTML."""
    features = sorted((f for f in data.get("features") or [] if isinstance(f, dict)), key=_rank)
    rows = _count((data.get("summary") or {}).get("rows_scored"))
    plotted = features[:MAX_PLOTTED_FEATURES]
    left_out = len(features) - len(plotted)
    prediction = data.get("prediction")
    title = f"{data.get('model', '')} {data.get('version', '')}: monitoring"
    body = [
        _header(data),
        '<h2 id="features">Features by drift</h2>',
        _table(features),
        '<h2 id="drift-over-time">Drift over time</h2>',
        _timeline(data.get("timeline")),
        '<h2 id="prediction">Predictions</h2>',
        _distribution(prediction, "prediction", rows)
        if isinstance(prediction, dict)
        else _note("No prediction distribution was recorded for this model."),
        '<h2 id="performance">Live metrics</h2>',
        _performance(data.get("performance")),
        '<h2 id="distributions">Feature distributions: training data vs recent window</h2>',
        f'<div class="grid-cards">{"".join(_card(f, rows) for f in plotted)}</div>',
        _note(f"{left_out:,} less drifted features are not plotted.") if left_out > 0 else "",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
