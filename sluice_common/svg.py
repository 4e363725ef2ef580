"""Inline SVG charts (the monitoring report's and the console's): grouped bars and lines, drawn
without JavaScript.

Every string that reaches the markup goes through `esc`; numbers are formatted here, so no
caller-supplied text ever lands in an attribute or a path unescaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

PALETTE = (
    "#4e79a7", "#e15759", "#59a14f", "#b07aa1", "#edc948",
    "#76b7b2", "#ff9da7", "#9c755f", "#f28e2b", "#bab0ac",
)  # fmt: skip


def esc(value: object) -> str:
    """HTML for any value, safe as text and inside a double-quoted attribute."""
    return escape(str(value), quote=True)


def finite(value: object) -> bool:
    """A real number that is neither NaN nor infinite (a bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: object) -> str:
    """A score or metric for people, or n/a."""
    if not finite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.001 else f"{value:.1e}"


def percent(value: object) -> str:
    """A proportion as a percentage, or n/a."""
    return f"{value * 100:.1f}%" if finite(value) else "n/a"


def clip(text: object, length: int) -> str:
    """The text cut to `length` characters, an ellipsis marking the cut (unescaped)."""
    text = str(text)
    return text if len(text) <= length else text[: max(length - 1, 1)] + "…"


def label(text: object, length: int, **attrs: object) -> str:
    """A <text> showing the clipped text, the full text in its <title> tooltip."""
    extra = "".join(
        f' {key.strip("_").replace("_", "-")}="{esc(value)}"' for key, value in attrs.items()
    )
    shown = clip(text, length)
    # The tooltip only when the text was cut: a screen reader would read it twice otherwise.
    title = f"<title>{esc(text)}</title>" if shown != str(text) else ""
    return f"<text{extra}>{title}{esc(shown)}</text>"


def downsample(
    times: Sequence, columns: dict[str, Sequence], limit: int, reduce: Callable = max
) -> tuple[list, dict[str, list]]:
    """At most `limit` points: consecutive groups, each at its last time with `reduce` of its
    finite values (None when it has none)."""
    size = max(1, math.ceil(len(times) / limit))
    starts = range(0, len(times), size)
    out_times = [times[min(start + size, len(times)) - 1] for start in starts]
    out = {}
    for name, values in columns.items():
        groups = ([v for v in values[start : start + size] if finite(v)] for start in starts)
        out[name] = [reduce(group) if group else None for group in groups]
    return out_times, out


def _svg(kind: str, feature: str, width: int, height: int, body: list[str], title: str) -> str:
    """The plot's <svg> with the hooks tests look for: class, data-plot, data-feature."""
    return (
        f'<svg class="plot" data-plot="{esc(kind)}" data-feature="{esc(feature)}" role="img" '
        f'width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{esc(title)}</title>{"".join(body)}</svg>'
    )


def _ceiling(peak: float) -> float:
    """A round top for a proportion axis."""
    if peak <= 0:
        return 0.1
    step = 0.1 if peak > 0.1 else 0.01
    return min(1.0, math.ceil(peak / step - 1e-9) * step) if peak <= 1 else peak


def _round_range(low: float, high: float) -> tuple[float, float]:
    """The range widened to round numbers at half-steps of a power of ten."""
    if high <= low:
        return low - 0.5, low + 0.5
    step = 10 ** math.floor(math.log10(high - low)) / 2
    return math.floor(low / step) * step, math.ceil(high / step) * step


def bars(
    kind: str, feature: str, bins: Sequence[str], series: Sequence[tuple[str, str, Sequence]]
) -> str:
    """Grouped bars of proportions: one group per bin, one bar per (name, css class, values)."""
    slant = len(bins) > 6  # many bins: labels slant so each can be longer than its group
    left, right, top, bottom = 52, 12, 30, 84 if slant else 46
    width, height = max(480, min(720, left + right + 34 * len(bins))), 190 + bottom
    plot_w, plot_h = width - left - right, height - top - bottom
    group = plot_w / len(bins)
    peak = max((v for _, _, vals in series for v in vals if finite(v)), default=0.0)
    top_value = _ceiling(peak)
    body = [
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}"/>'
    ]
    for tick in (0, top_value / 2, top_value):
        y = top + plot_h - tick / top_value * plot_h
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" '
            f'y2="{y:.1f}"/><text class="tick" x="{left - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{percent(tick)}</text>'
        )
    width_each = group * 0.8 / len(series)
    for i, bin_label in enumerate(bins):
        for j, (name, css, values) in enumerate(series):
            value = values[i]
            h = min(max(value, 0.0), top_value) / top_value * plot_h if finite(value) else 0.0
            x = left + i * group + group * 0.1 + j * width_each
            body.append(
                f'<rect class="bar {esc(css)}" x="{x:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{width_each:.1f}" height="{h:.1f}"><title>{esc(name)} · '
                f"{esc(bin_label)}: {percent(value)}</title></rect>"
            )
        cx, y = left + (i + 0.5) * group, top + plot_h + 12
        extra = {"transform": f"rotate(-35 {cx:.1f} {y})"} if slant else {}
        length, anchor = (14, "end") if slant else (max(4, int(group / 6.5)), "middle")
        body.append(
            label(bin_label, length, x=f"{cx:.1f}", y=y, class_="tick", text_anchor=anchor, **extra)
        )
    body.append(
        f'<text class="axis-label" transform="rotate(-90 12 {top + plot_h / 2})" x="12" '
        f'y="{top + plot_h / 2}" text-anchor="middle">share of rows</text>'
        f'<text class="axis-label" x="{left + plot_w / 2}" y="{height - 4}" '
        f'text-anchor="middle">bin</text>'
    )
    for j, (name, css, _) in enumerate(series):
        x = width - right - 110 * (len(series) - j)
        body.append(
            f'<rect class="swatch {esc(css)}" x="{x}" y="8" width="10" height="10"/>'
            f'<text class="legend" x="{x + 14}" y="17">{esc(name)}</text>'
        )
    return _svg(kind, feature, width, height, body, f"{feature}: share of rows per bin")


def _x_positions(times: Sequence[str]) -> list[float]:
    """0..1 along the axis: by time when every time parses and they rise, else by order."""
    try:
        stamps = [datetime.fromisoformat(str(t)).timestamp() for t in times]
    except (TypeError, ValueError):
        stamps = []
    if stamps and stamps == sorted(stamps) and stamps[-1] > stamps[0]:
        return [(s - min(stamps)) / (max(stamps) - min(stamps)) for s in stamps]
    return [i / max(len(times) - 1, 1) for i in range(len(times))]


def lines(
    kind: str,
    feature: str,
    times: Sequence[str],
    series: Sequence[tuple[str, Sequence]],
    rules: Sequence[tuple[str, float, str]] = (),
    y_label: str = "",
    from_zero: bool = True,
    x_label: str = "batch time (UTC)",
    ceiling: float | None = None,
    every_tick: bool = False,
) -> str:
    """Lines over time, one per (name, values) with gaps at None, and dashed horizontal rules
    (label, value, css class) such as thresholds or baselines. The y axis starts at 0 unless
    `from_zero` is False (then it spans the values), and never goes below 0 when no value
    does, nor above `ceiling` (a bounded metric's top) when none does. `times` that are not
    times (version numbers, say) are spaced evenly and named by `x_label`; `every_tick`
    names each of them (up to 30) instead of the first, middle and last."""
    left, right, top, bottom, width, height = 56, 16, 16, 46, 720, 260
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vals in series for v in vals if finite(v)]
    values += [value for _, value, _ in rules if finite(value)]
    low, high = min(values, default=0.0), max(values, default=1.0)
    low = min(low, 0.0) if from_zero else low - (high - low) * 0.1
    low, high = _round_range(low, high)
    if values and min(values) >= 0:
        low = max(low, 0.0)
    if values and ceiling is not None and max(values) <= ceiling:
        high = min(high, ceiling)
    if high <= low:
        high = low + 1.0
    xs = [left + p * plot_w for p in _x_positions(times)]

    def y_of(value: float) -> float:
        return top + plot_h - (value - low) / (high - low) * plot_h

    body = [
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}"/>'
    ]
    for tick in (low, (low + high) / 2, high):
        y = y_of(tick)
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" '
            f'y2="{y:.1f}"/><text class="tick" x="{left - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{number(tick)}</text>'
        )
    for rule_label, value, css in rules:
        if finite(value):
            y = y_of(value)
            body.append(
                f'<path class="{esc(css)}" d="M{left},{y:.1f}H{width - right}"><title>'
                f"{esc(rule_label)}: {number(value)}</title></path>"
                f'<text class="rule-label" x="{width - right - 2}" y="{y - 3:.1f}" '
                f'text-anchor="end">{esc(rule_label)}</text>'
            )
    for k, (name, vals) in enumerate(series):
        colour, segments, pen = PALETTE[k % len(PALETTE)], [], "M"
        for x, value in zip(xs, vals, strict=False):
            if finite(value):
                segments.append(f"{pen}{x:.1f},{y_of(value):.1f}")
                pen = "L"
            else:
                pen = "M"
        body.append(
            f'<path class="line" stroke="{colour}" d="{"".join(segments)}">'
            f"<title>{esc(name)}</title></path>"
        )
        if len(xs) <= 60:
            body.extend(
                f'<circle class="point" fill="{colour}" cx="{x:.1f}" cy="{y_of(v):.1f}" '
                f'r="2.5"><title>{esc(name)} · {esc(t)}: {number(v)}</title></circle>'
                for x, v, t in zip(xs, vals, times, strict=False)
                if finite(v)
            )
    shown = range(len(times)) if every_tick and len(times) <= 30 else ()
    for i in sorted(set(shown) or {0, len(times) // 2, len(times) - 1}):
        anchor = "start" if i == 0 else "end" if i == len(times) - 1 else "middle"
        stamp = str(times[i])[:16].replace("T", " ")
        body.append(
            label(
                stamp, 16, x=f"{xs[i]:.1f}", y=top + plot_h + 16, class_="tick", text_anchor=anchor
            )
        )
    body.append(
        f'<text class="axis-label" transform="rotate(-90 12 {top + plot_h / 2})" x="12" '
        f'y="{top + plot_h / 2}" text-anchor="middle">{esc(y_label)}</text>'
        f'<text class="axis-label" x="{left + plot_w / 2}" y="{height - 6}" '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    over = "over time" if x_label == "batch time (UTC)" else f"by {x_label}"
    return _svg(kind, feature, width, height, body, f"{feature}: {y_label} {over}")
