"""The speed-floor bench's table (pure): ratios, verdicts, rows, and the text and Markdown forms.

A row is (measure, sluice, reference, ratio, target, result); detail lines have only a measure.
"""

from __future__ import annotations

import statistics

HEADER = ("measure", "Sluice", "reference", "ratio", "target", "result")


def median(values) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def meets(ratio: float, op: str, limit: float) -> bool:
    """Whether `ratio op limit` holds (op is "<=" or ">=")."""
    if op == "<=":
        return ratio <= limit
    if op == ">=":
        return ratio >= limit
    raise ValueError(f"unknown comparison {op!r}")


def verdict(ratio: float, op: str, limit: float) -> str:
    """PASS or FAIL."""
    return "PASS" if meets(ratio, op, limit) else "FAIL"


def ratio_row(measure: str, sluice: float, reference: float, ratio: float, op, limit, unit="s"):
    """A compared row: values with their unit, the ratio and its verdict against the target."""
    digits = 2 if unit in ("s", "ms") else 0
    return [
        measure,
        f"{sluice:,.{digits}f} {unit}",
        f"{reference:,.{digits}f} {unit}",
        f"{ratio:.2f}x",
        f"{op} {limit}x",
        verdict(ratio, op, limit),
    ]


def detail(text: str) -> list[str]:
    """A line of detail under the row above it."""
    return [f"  {text}", "", "", "", "", ""]


def stage_text(stages: dict, digits: int = 2) -> str:
    """`name 1.23, other 0.40` in the given order; errors as they are."""
    if "error" in stages:
        return f"n/a ({stages['error']})"
    return ", ".join(f"{name} {value:.{digits}f}" for name, value in stages.items())


def dev_rows(name: str, dev: dict, op: str = "<=", limit: float = 1.5) -> list[list[str]]:
    """The dev row of one shape (Sluice end to end against xgboost.train) and its details."""
    sluice = median([r["seconds"] for r in dev["sluice"]])
    plain = median([r["train_seconds"] for r in dev["plain"]])
    prepare = median([r["prepare_seconds"] for r in dev["plain"]])
    booster = median([r["booster_seconds"] for r in dev["sluice"]])
    first = dev["sluice"][0]
    reference = dev["plain"][0]
    stages = {
        k: median([r["stage_seconds"].get(k, 0.0) for r in dev["sluice"]])
        for k in first["stage_seconds"]
    }
    rows = [
        ratio_row(
            f"dev {name} {dev['rows']:,} rows: end to end vs xgboost.train",
            sluice,
            plain,
            sluice / plain,
            op,
            limit,
        ),
        detail(
            f"Sluice booster {booster:.2f} s, {first['rounds']} rounds, {first['rows_train']:,}"
            f" training rows; plain {reference['rounds']} rounds on {reference['fit_rows']:,} fit"
            f" + {reference['stop_rows']:,} stop rows, {reference['columns']} columns;"
            f" plain read_csv + DMatrix {prepare:.2f} s"
        ),
        detail(
            f"plain xgboost.train on 1 thread: {dev['plain_one_thread_seconds']:.2f} s"
            if "plain_one_thread_seconds" in dev
            else "plain xgboost.train on 1 thread: not measured"
        ),
        detail(f"Sluice dev stages (s): {stage_text(stages)}"),
    ]
    rows.append(detail(f"outside the trainer's stages (s): {sluice - sum(stages.values()):.2f}"))
    return rows


def batch_rows(name: str, batch: dict) -> list[list[str]]:
    """Prod batch rows of one shape: against inplace_predict and (if measured) mlflow serve."""
    rows_n = batch["rows"]
    sluice = median(batch["sluice_seconds"])
    booster = median(batch["booster_seconds"])
    rows = [
        ratio_row(
            f"prod batch {name} {rows_n:,} rows: whole path vs inplace_predict",
            sluice,
            booster,
            sluice / booster,
            "<=",
            1.15,
        )
    ]
    if batch.get("serve_seconds"):
        serve = median(batch["serve_seconds"])
        rows.append(
            ratio_row(
                f"prod batch {name} {rows_n:,} rows: throughput vs mlflow serve",
                rows_n / sluice,
                rows_n / serve,
                serve / sluice,
                ">=",
                1.0,
                unit="rows/s",
            )
        )
    if batch.get("steps"):
        rows.append(detail(f"in-process prod steps (s): {stage_text(batch['steps'], 3)}"))
    return rows


def single_rows(single: dict) -> list[list[str]]:
    """Single-row p50 and p99 against mlflow serve."""
    rows = []
    for pct, limit in (("p50", 0.8), ("p99", 1.2)):
        a, b = single["sluice"][f"{pct}_ms"], single["serve"][f"{pct}_ms"]
        rows.append(
            ratio_row(
                f"single row {pct} vs mlflow serve ({single['sluice']['n']} pairs)",
                a,
                b,
                a / b,
                "<=",
                limit,
                unit="ms",
            )
        )
    return rows


def build_rows(results: dict) -> list[list[str]]:
    """Every row of the table, in the issue's order, from the results dict."""
    rows: list[list[str]] = []
    for shape, part in results["shapes"].items():
        shape_rows = []
        if "dev" in part:
            shape_rows += dev_rows(shape, part["dev"])
        if "batch" in part:
            shape_rows += batch_rows(shape, part["batch"])
        # The targets are the standard table's; the others say where the time goes.
        rows += shape_rows if shape == "standard" else reported(shape_rows)
        if shape == "standard" and "single" in results:
            rows += single_rows(results["single"])
    return rows


def reported(rows: list[list[str]]) -> list[list[str]]:
    """The rows with their ratios kept and no target or verdict (informational)."""
    return [[*row[:4], "(report)" if row[5] else "", ""] for row in rows]


def verdicts(rows: list[list[str]]) -> tuple[int, int]:
    """(passed, compared) over the rows that have a verdict."""
    results = [r[5] for r in rows if r[5]]
    return results.count("PASS"), len(results)


def header_lines(meta: dict) -> list[str]:
    """The command, commit, cores and load average at start and end."""
    end = meta.get("loadavg_end") or (float("nan"),) * 3
    return [
        f"command: {meta['command']}",
        f"commit {meta['git_commit'][:8]}, {meta['cpus']} cores, started {meta['started']},"
        f" {meta.get('wall_seconds', 0):.0f} s; load average (1/5/15 min) at start"
        f" {' '.join(f'{x:.1f}' for x in meta['loadavg_start'])}, at end"
        f" {' '.join(f'{x:.1f}' for x in end)}",
    ]


def load_warning(meta: dict) -> str | None:
    """A caution when the load average passed the core count: a 2-thread XGBoost team can then
    stall at its barriers, and the dev ratios say more about the other tenants than Sluice."""
    loads = [meta["loadavg_start"][0], *(meta.get("loadavg_end") or (0.0,))[:1]]
    if max(loads) <= meta["cpus"]:
        return None
    return (
        f"CAUTION: load average {max(loads):.1f} on {meta['cpus']} cores: 2-thread XGBoost can"
        " stall (compare the 1-thread lines); rerun at a load near 1 before trusting a ratio"
    )


def text_table(rows: list[list[str]], meta: dict) -> str:
    """Fixed-width table for the terminal."""
    full = [r for r in rows if any(r[1:])]
    widths = [max(len(r[i]) for r in [HEADER, *full]) for i in range(len(HEADER))]
    rule = "  ".join("-" * w for w in widths)
    lines = [f"Sluice at the floor ({meta['mode']})", *header_lines(meta)]
    lines += ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)), rule]
    for row in rows:
        if any(row[1:]):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        else:
            lines.append(row[0])
    passed, compared = verdicts(rows)
    lines += [rule, f"{passed}/{compared} targets met"]
    warning = load_warning(meta)
    if warning:
        lines.append(warning)
    return "\n".join(lines)


def markdown_table(rows: list[list[str]], meta: dict) -> str:
    """The same table in Markdown, detail lines folded into the row above them."""
    lines = [f"`{meta['command']}`: " + "; ".join(header_lines(meta)[1:]), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        if any(row[1:]):
            cells = list(row)
            cells[5] = f"**{cells[5]}**" if cells[5] == "PASS" else cells[5]
            lines.append("| " + " | ".join(cells) + " |")
        else:
            lines.append(f"| {row[0].strip()} | | | | | |")
    warning = load_warning(meta)
    return "\n".join(lines + ([f"\n{warning}"] if warning else []))
