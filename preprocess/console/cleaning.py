"""The answer's `cleaning` report and each feature's reading, laid out for people: every key
the API gives is shown (known keys in words, any other key as it is), so nothing is hidden."""

from __future__ import annotations

import json

DROP_REASONS = {
    "empty": "empty rows",
    "missing_target": "rows without a target value",
    "unreadable_target": "rows whose target could not be read",
}
# Keys of `cleaning` given their own sentence or table below.
SUMMARY_KEYS = ("rows_in", "columns_in", "rows_out", "encoding", "delimiter", "duplicate_rows")
PER_COLUMN = {
    "missing_values": ("missing-values", "Missing values per column (empty cells)", "empty cells"),
    "unreadable_treated_as_missing": (
        "unreadable-cells",
        "Unreadable cells per column, treated as missing (the API counts them per column; "
        "it names no rows)",
        "unreadable cells",
    ),
}
FEATURE_KEYS = ("name", "kind", "levels")  # shown in their own columns


def rows_word(count) -> str:
    """'1 row', '4 rows' (a count that is not a number as it is)."""
    return f"{count} row" if count == 1 else f"{count} rows"


def plain(value) -> str:
    """A value of the answer as text: scalars as they are, anything nested as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def summary(cleaning: dict) -> list[str]:
    """Sentences for rows in and out, the file's reading and the duplicates."""
    lines = []
    if "rows_in" in cleaning:
        read = f"Sluice read {rows_word(cleaning['rows_in'])}"
        if "columns_in" in cleaning:
            read += f" of {cleaning['columns_in']} columns"
        lines.append(read + ".")
    if "rows_out" in cleaning:
        lines.append(f"It kept {rows_word(cleaning['rows_out'])} for training.")
    if "encoding" in cleaning:
        lines.append(f"Encoding: {plain(cleaning['encoding'])}.")
    if "delimiter" in cleaning:
        lines.append(f"Delimiter: “{plain(cleaning['delimiter'])}”.")
    if "duplicate_rows" in cleaning:
        lines.append(
            f"{rows_word(cleaning['duplicate_rows'])} repeat an earlier row "
            "(counted, kept: they are observations)."
        )
    return lines


def tables(cleaning: dict) -> list[dict]:
    """One table per kind: dropped rows by reason, the per-column counts, any other key."""
    found = []
    dropped = cleaning.get("dropped_rows")
    if isinstance(dropped, dict):
        found.append(
            {
                "id": "dropped-rows",
                "caption": f"Rows dropped: {rows_word(sum_counts(dropped))} in all",
                "header": ("reason", "rows dropped"),
                "rows": [(DROP_REASONS.get(k, k), plain(v)) for k, v in dropped.items()],
            }
        )
    for key, (table_id, caption, label) in PER_COLUMN.items():
        counts = cleaning.get(key)
        if isinstance(counts, dict):
            rows = [(column, plain(v)) for column, v in counts.items()]
            found.append({"id": table_id, "caption": caption, "header": ("column", label),
                          "rows": rows or [("none", "0")]})  # fmt: skip
    known = (*SUMMARY_KEYS, "dropped_rows", *PER_COLUMN)
    others = [(key, value) for key, value in cleaning.items() if key not in known]
    others += [(key, cleaning[key]) for key in ("dropped_rows", *PER_COLUMN)
               if key in cleaning and not isinstance(cleaning[key], dict)]  # fmt: skip
    if others:
        found.append(
            {
                "id": "cleaning-other",
                "caption": "Everything else the API reported about the file",
                "header": ("item", "value"),
                "rows": [(key.replace("_", " "), plain(value)) for key, value in others],
            }
        )
    return found


def sum_counts(counts: dict):
    """The total of a dict of counts (the counts that are numbers)."""
    return sum(v for v in counts.values() if isinstance(v, (int, float)))


def feature_details(feature: dict) -> str:
    """How a used feature was read beyond its kind: number format, date formats, the rest."""
    parts = []
    number_format = feature.get("number_format")
    if isinstance(number_format, dict):
        decimal = number_format.get("decimal")
        thousands = number_format.get("thousands")
        text = f"numbers with decimal “{plain(decimal)}”"
        text += f", thousands “{thousands}”" if thousands else ", no thousands separator"
        rest = {k: v for k, v in number_format.items() if k not in ("decimal", "thousands")}
        parts.append(text + (f" {plain(rest)}" if rest else ""))
    elif "number_format" in feature:
        parts.append(f"number format {plain(number_format)}")
    if "date_formats" in feature:
        formats = feature["date_formats"]
        shown = ", ".join(map(plain, formats)) if isinstance(formats, list) else plain(formats)
        parts.append(f"dates as {shown}")
    for key, value in feature.items():
        if key not in (*FEATURE_KEYS, "number_format", "date_formats"):
            parts.append(f"{key.replace('_', ' ')}: {plain(value)}")
    return "; ".join(parts)
