"""Decide, once at training time, what each input column is (pure; no MLflow, no Flask).

Kinds and formats (number, number format, date formats, category, dropped) are decided on
every row of the upload: they use no labels. Category levels are fitted on the training rows
only. The result is the model's feature spec; the model reads prod cells with it and never
re-infers a type from a batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.fit import rows, text_columns
from trainer.fit.number_formats import (
    Entries,
    Readings,
    fit_number_formats,
    format_order,
)
from trainer.fit.text_columns import Block, TextColumns, is_text
from trainer.model import sluice_cells as cells
from trainer.model.sluice_cells import DATE_FORMATS, DATE_PARTS, NUMBER_FORMATS, TIME_PARTS

ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|index)$|^(id|uuid|guid)([_\s.-]|$)", re.I)
# The names a row index gets when it is written out with the data, with what gives them. Any
# unique integers under one of them are row numbers: after a shuffled split or a sample they
# are in no order, and on data sorted by class they predict the class. Other names need more
# (`_numeric_id`): `year` or `price` may well hold unique integers.
ROW_NUMBER_NAMES = (
    (
        re.compile(r"unnamed: \d+(\.\d+)?", re.I),
        "the name of a blank header, where pandas' to_csv and R's write.csv put the row index",
    ),
    (re.compile(r"__index_level_\d+__"), "pandas' name for a DataFrame index stored in Parquet"),
    (re.compile(r"index|level_0", re.I), "pandas' name for the row index after reset_index()"),
    (re.compile(r"row[._]?names?", re.I), "R's name for row names"),
    (re.compile(r"\.\.\.\d+"), "readr's name for a blank header"),
)
# R's read.csv names a blank first header X: a row-number name only in the leading columns.
LEADING_ROW_NUMBER_NAME = (re.compile("X"), "R's name for a blank first header (read.csv)")
MIN_ROWS_FOR_ID = 20
ID_SHARE = 0.95  # text this unique is an identifier rather than a name
# A text column is numeric when a number format reads at least this share of its cells (the
# rest are counted as unreadable); a date column likewise.
NUMERIC_SHARE = 0.95
DATE_SHARE = 0.95
# Text with more distinct values than this share of its cells, whose frequent values cover
# less than COVERAGE_SHARE of the cells, is name-like or free text: dropped, with the numbers.
UNIQUE_SHARE = 0.5
COVERAGE_SHARE = 0.5
DATE_SAMPLE = 2000
# XGBoost refuses feature names with [ ] or <; the spec keeps the real column names.
_XGB_UNSAFE = str.maketrans({"[": "(", "]": ")", "<": "‹"})
_MONTH_FIRST = {"%m/%d/%Y": "%d/%m/%Y", "%m/%d/%y": "%d/%m/%y", "%m-%d-%Y": "%d-%m-%Y"}


@dataclass(frozen=True)
class Distinct:
    """A column's distinct present cells (cleaned) and how often each occurs."""

    values: pa.Array
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def distinct_of(column: pa.Array) -> Distinct:
    """Distinct present cells of a cleaned column, with counts."""
    counted = pc.value_counts(column.drop_null())
    counts = counted.field("counts").to_numpy(zero_copy_only=False).astype("int64")
    return Distinct(counted.field("values"), counts)


def clean_table(table: pa.Table) -> pa.Table:
    """Every text column cleaned (stripped, missing tokens as null); typed columns as they are.
    Text columns are cleaned a block at a time (`text_columns.clean_many`)."""
    columns = [column.combine_chunks() for column in table.columns]
    text = [i for i, column in enumerate(columns) if is_text(column.type)]
    for i, cleaned in zip(text, text_columns.clean_many([columns[i] for i in text]), strict=True):
        columns[i] = cleaned
    for i, column in enumerate(columns):
        if pa.types.is_null(column.type):
            columns[i] = column.cast(pa.large_string())
    return pa.table(columns, names=table.column_names)


def fit_number_format(
    distinct: Distinct, prefer_comma: bool, share: float = NUMERIC_SHARE
) -> dict | None:
    """The number format that reads the most cells, when it reads at least `share` of them.

    Decided from the whole column, once: `3,750` alone is a thousands separator or a decimal
    comma; `0,125` or `1.234,5` elsewhere in the column settles it. Cells are read as the
    model reads them (`sluice_cells.read_numbers`: the decimal mark fixed, any grouping), so
    the choice is the decimal mark, then the grouping most cells use. A tie between decimal
    marks that read some cell differently is broken by the file (a `;` file prefers decimal
    commas) and reported as ambiguous. (`number_formats.fit_number_formats` for one column.)
    """
    if distinct.total == 0:
        return None
    order = format_order(prefer_comma)
    readings = Readings(distinct.values)
    n = len(distinct.counts)
    entries = Entries(np.zeros(n, "int64"), np.arange(n))
    fits = fit_number_formats(readings, entries, distinct.counts, 1, share, order)
    chosen = int(fits.chosen[0])
    if chosen < 0:
        return None
    f = NUMBER_FORMATS.index(order[chosen])
    return {
        "format": order[chosen],
        "unreadable": int(fits.unreadable[0]),
        "ambiguous": bool(fits.ambiguous[0]),
        "values": readings.values[f].copy(),
        "bad": readings.bad[f].copy(),
    }


def _date_reads(texts: np.ndarray) -> dict[str, np.ndarray]:
    """Which of the texts each candidate format reads."""
    return {fmt: ~np.isnat(cells._parse_dates(texts, fmt)) for fmt in DATE_FORMATS}


def fit_date_formats(distinct: Distinct, prefer_day_first: bool) -> dict | None:
    """The date formats (at most three, most common first) that read at least DATE_SHARE of the
    column's cells, or None when it is not a column of dates."""
    if distinct.total == 0:
        return None
    order = np.argsort(-distinct.counts, kind="stable")[:DATE_SAMPLE]
    texts = np.asarray(distinct.values.take(pa.array(order)).to_pylist(), dtype=object)
    counts = distinct.counts[order]
    has_digit = np.array([any(ch.isdigit() for ch in text) for text in texts])
    if counts[has_digit].sum() < 0.9 * counts.sum():
        return None
    read = _date_reads(texts)
    formats: list[str] = []
    left = np.ones(len(texts), dtype=bool)
    for _ in range(3):
        gains = {fmt: int(counts[mask & left].sum()) for fmt, mask in read.items()}
        best = max(gains.values())
        if best == 0:
            break
        tied = [fmt for fmt, gain in gains.items() if gain == best]
        # No cell tells day-first from month-first: the file's convention decides (a `;` file
        # is European, day-first; otherwise month-first), and the column is flagged ambiguous.
        tied.sort(key=lambda fmt: _is_month_first(fmt) == prefer_day_first)
        formats.append(tied[0])
        left &= ~read[tied[0]]
        if counts[left].sum() <= (1 - DATE_SHARE) * counts.sum():
            break
    if not formats:
        return None
    values, other = cells.read_distinct_dates(list(distinct.values.to_pylist()), formats)
    readable = ~np.isnat(values) & ~other
    read_count = int(distinct.counts[readable].sum())
    if read_count < DATE_SHARE * distinct.total:
        return None
    twins = {fmt: _MONTH_FIRST.get(fmt) or _day_first_twin(fmt) for fmt in formats}
    ambiguous = any(
        twin is not None and np.array_equal(read[fmt], read[twin]) for fmt, twin in twins.items()
    )
    return {
        "formats": formats,
        "unreadable": distinct.total - read_count,
        "ambiguous": ambiguous,
        "has_time": _has_time(values[readable]),
    }


def _is_month_first(fmt: str) -> bool:
    return any(fmt.startswith(month_first) for month_first in _MONTH_FIRST)


def _day_first_twin(fmt: str) -> str | None:
    for month_first, day_first in _MONTH_FIRST.items():
        if fmt.startswith(day_first):
            return month_first + fmt[len(day_first) :]
        if fmt.startswith(month_first):
            return day_first + fmt[len(month_first) :]
    return None


def _has_time(stamps: np.ndarray) -> bool:
    if not len(stamps):
        return False
    return bool(np.any(stamps != stamps.astype("datetime64[D]")))


LEADING_ZERO_NOTE = "numbers written with leading zeros: read as codes"
_LEADING_ZERO = "^0[0-9]+$"
LEADING_ZERO_SHARE = 0.01


def _numeric_id(values: np.ndarray, name: str, first_copies) -> bool:
    """Unique integers that count rows (consecutive) or are named like an identifier. Unique
    per record: copies of a whole row are observations of one record and share its id, so
    one repeated row does not make the id a feature (`first_copies()` marks the records)."""
    is_present = ~np.isnan(values)
    present = values[is_present]
    if len(present) < MIN_ROWS_FOR_ID or not np.all(np.mod(present, 1) == 0):
        return False
    distinct = np.unique(present)
    if not (ID_NAME.search(name) or np.all(np.diff(distinct) == 1)):
        return False
    return _unique_per_record(values, is_present, len(distinct), first_copies)


def _unique_per_record(values: np.ndarray, is_present: np.ndarray, n_distinct: int, first_copies):
    """Whether each record (a row and its whole-row copies) has its own value."""
    n_present = int(is_present.sum())
    if n_distinct == n_present:
        return True
    if 2 * n_distinct < n_present:  # mostly repeated: no id (and no cost for rows)
        return False
    once = values[first_copies() & is_present]
    return len(np.unique(once)) == len(once)


def row_number_name(name: str, leading: bool) -> str | None:
    """What gives a column this name when it holds a written-out row index, or None."""
    name = name.strip()
    named = ROW_NUMBER_NAMES + ((LEADING_ROW_NUMBER_NAME,) if leading else ())
    return next((what for pattern, what in named if pattern.fullmatch(name)), None)


def _row_numbers(values: np.ndarray, name: str, what: str | None, first_copies) -> str | None:
    """The reason to drop a column as row numbers: named as an index gets named when written
    with the data (`what`), integers in every row, unique per record, in any order."""
    if what is None or len(values) < 2 or np.isnan(values).any():
        return None
    if not np.all(np.mod(values, 1) == 0):
        return None
    distinct = np.unique(values)
    if len(distinct) < 2 or not _unique_per_record(
        values, np.ones(len(values), dtype=bool), len(distinct), first_copies
    ):
        return None
    return (
        f"row numbers: unique integers ({distinct[0]:.0f} to {distinct[-1]:.0f}) "
        f"in {name!r}, {what}; a row's number says nothing about new rows"
    )


@dataclass
class ColumnKind:
    """What a column is, decided on all rows, before the split."""

    name: str
    kind: str  # numeric, categorical, datetime
    detail: dict


def fit_kinds(
    table: pa.Table,
    target: str,
    delimiter: str,
    min_category_rows: int = 5,
    texts: TextColumns | None = None,
) -> tuple[list[ColumnKind], list[dict], dict[str, int]]:
    """Each non-target column's kind and format, the dropped columns with reasons, and the
    unreadable cells per kept column (cells the chosen format does not read). Decided on all
    rows, before the split, so the split can hash exactly the columns the model reads.

    Text columns are read together (`texts`, built here when not given): the rules run once
    per block of columns, not once per column."""
    prefer_comma = delimiter == ";"
    kinds, dropped, unreadable = [], [], {}
    records: list[np.ndarray] = []  # whole-row first copies, hashed only if an id needs them

    def first_copies() -> np.ndarray:
        if not records:
            records.append(rows.first_copies(table))
        return records[0]

    if texts is None:
        texts = text_columns_of(table, target)
    leading = True  # only row-number columns so far: R's X may follow
    for name in table.column_names:
        if name == target:
            continue
        index_name = row_number_name(name, leading)
        leading = leading and index_name is not None
        if name in texts:
            facts = _text_facts(texts, name, prefer_comma)
        else:
            column = table.column(name).combine_chunks()
            facts = _typed_facts(column, name, index_name, first_copies, prefer_comma)
        if isinstance(facts, (ColumnKind, dict)):  # decided by its type
            (kinds if isinstance(facts, ColumnKind) else dropped).append(facts)
            continue
        if facts.present == 0:
            dropped.append({"name": name, "reason": "all values missing"})
            continue
        if facts.n_distinct <= 1:
            dropped.append({"name": name, "reason": "constant: a single distinct value"})
            continue
        decided, count = _text_kind(
            facts, name, index_name, first_copies, prefer_comma, min_category_rows
        )
        (kinds if isinstance(decided, ColumnKind) else dropped).append(decided)
        if count:
            unreadable[name] = count
    return kinds, dropped, unreadable


def text_columns_of(table: pa.Table, target: str) -> TextColumns:
    """The table's text columns other than the target, for reading together."""
    names = [f.name for f in table.schema if f.name != target and is_text(f.type)]
    return TextColumns(table, names)


@dataclass
class TextFacts:
    """What typing needs of a text column: counts, its number format (when one reads
    NUMERIC_SHARE of its cells), whether it holds leading-zero codes, and readers."""

    present: int
    n_distinct: int
    number: dict | None
    leading_zeros: bool
    distinct: object  # () -> Distinct
    numbers: object  # (NumberFormat) -> float64 per row


def _text_facts(texts: TextColumns, name: str, prefer_comma: bool) -> TextFacts:
    block, i = texts.where[name]
    facts = block.memo(("facts", prefer_comma), lambda: _block_facts(block, prefer_comma))
    order = format_order(prefer_comma)
    present, n_distinct, chosen, unread, ambiguous, zeros = (column[i] for column in facts)
    number = None
    if chosen >= 0:
        number = {"format": order[chosen], "unreadable": unread, "ambiguous": ambiguous}
    return TextFacts(
        present,
        n_distinct,
        number,
        zeros,
        lambda: _distinct_in(block, i),
        lambda fmt: texts.numbers(name, fmt),
    )


def _distinct_in(block: Block, i: int) -> Distinct:
    codes, counts = block.distinct_codes(i)
    return Distinct(block.dictionary.take(pa.array(codes)), counts)


def _block_facts(block: Block, prefer_comma: bool) -> tuple[list, ...]:
    """Per column of a block, as lists: present cells, distinct cells, the number fit
    (`number_formats.fit_number_formats`) and the leading-zero rule: whether at least
    LEADING_ZERO_SHARE of the column's cells are integers written with a leading zero (ZIP
    codes, account numbers: codes, not quantities)."""
    entries = Entries(block.entry_column, block.entry_code)
    n = len(block.names)
    readings, order = text_columns.number_readings(block), format_order(prefer_comma)
    fits = fit_number_formats(readings, entries, block.entry_count, n, NUMERIC_SHARE, order)
    zero = pc.match_substring_regex(block.dictionary, _LEADING_ZERO)
    zero = zero.to_numpy(zero_copy_only=False)[block.entry_code]
    total = block.per_column(np.ones(len(block.entry_code)))
    zeros = block.per_column(zero) >= LEADING_ZERO_SHARE * total
    present = (block.codes >= 0).sum(axis=1) if n else np.zeros(0, "int64")
    columns = (present, np.diff(block.starts), fits.chosen, fits.unreadable, fits.ambiguous, zeros)
    return tuple(column.tolist() for column in columns)


def _typed_facts(column: pa.Array, name: str, index_name, first_copies, prefer_comma: bool):
    """A typed column (Parquet, by reference): numbers and timestamps decided by their type
    (a ColumnKind, or a dropped column's dict); other types read as their text (TextFacts)."""
    kind = column.type
    if column.null_count == len(column):
        return {"name": name, "reason": "all values missing"}
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_timestamp(kind):
        if len(distinct_of(column).counts) <= 1:
            return {"name": name, "reason": "constant: a single distinct value"}
        if pa.types.is_timestamp(kind):
            return ColumnKind(name, "datetime", {"date_formats": ["ISO8601"]})
        numbers = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        if reason := _row_numbers(numbers, name, index_name, first_copies):
            return {"name": name, "reason": reason}
        if _numeric_id(numbers, name, first_copies):
            return {"name": name, "reason": "id-like: unique integers in every row"}
        return ColumnKind(name, "numeric", {})
    texts = TextColumns(pa.table({name: column.cast(pa.large_string())}), [name])
    return _text_facts(texts, name, prefer_comma)


def _text_kind(facts: TextFacts, name, index_name, first_copies, prefer_comma, min_category_rows):
    """A text column's kind (or the reason to drop it) and its unreadable cells."""
    number = facts.number
    if number is not None and facts.leading_zeros:
        # 02134 is a ZIP code, not two thousand and something: 2134 is another place.
        return ColumnKind(name, "categorical", {"note": LEADING_ZERO_NOTE}), 0
    if number is not None:
        fmt = number["format"]
        numbers = facts.numbers(fmt)
        if reason := _row_numbers(numbers, name, index_name, first_copies):
            return {"name": name, "reason": reason}, 0
        if _numeric_id(numbers, name, first_copies):
            return {"name": name, "reason": "id-like: unique integers in every row"}, 0
        detail = {"number_format": fmt.to_dict()}
        if number["ambiguous"]:
            detail["ambiguous_format"] = True
        return ColumnKind(name, "numeric", detail), number["unreadable"]
    distinct = facts.distinct()
    dates = fit_date_formats(distinct, prefer_day_first=prefer_comma)
    if dates is not None:
        detail = {"date_formats": dates["formats"], "has_time": dates["has_time"]}
        if dates["ambiguous"]:
            detail["ambiguous_format"] = True
        return ColumnKind(name, "datetime", detail), dates["unreadable"]
    min_rows = min_level_rows(int(0.8 * facts.present), min_category_rows)
    unique = _mostly_unique(distinct, min_rows)
    if unique is not None:
        return {"name": name, "reason": unique}, 0
    return ColumnKind(name, "categorical", {"distinct": facts.n_distinct}), 0


def _mostly_unique(distinct: Distinct, min_rows: int) -> str | None:
    """Why a text column is names or free text rather than categories (most values unique,
    and the values frequent enough to keep cover little of it), or None."""
    present = distinct.total
    share_distinct = len(distinct.counts) / present
    covered = int(distinct.counts[distinct.counts >= min_rows].sum())
    if present < MIN_ROWS_FOR_ID or share_distinct <= UNIQUE_SHARE:
        return None
    if covered >= COVERAGE_SHARE * present:
        return None
    what = "id-like" if share_distinct >= ID_SHARE else "mostly unique text"
    return (
        f"{what}: {len(distinct.counts)} distinct values in {present} rows; values seen at "
        f"least {min_rows} times cover {covered / present:.0%} of them"
    )


def min_level_rows(n_train: int, configured: int) -> int:
    """Rows a category level needs to be kept: `configured`, fewer for small files (one in 20
    training rows, at least 2)."""
    return max(2, min(configured, n_train // 20))


def fit_levels(
    name: str, column: pa.Array, min_rows: int, max_categories: int
) -> tuple[dict | None, dict | None]:
    """A categorical input fitted on the training rows (levels seen at least `min_rows` times,
    most frequent first; rarer ones grouped as one "other" level), or the reason to drop it."""
    return fit_levels_from_counts(name, level_counts(column), min_rows, max_categories)


def level_counts(column: pa.Array) -> dict[str, int]:
    """How many cells of a column read as each category key (missing cells left out)."""
    distinct, positions = cells.distinct_cells(column)
    per_cell = np.bincount(positions[positions >= 0], minlength=len(distinct))
    counted: dict[str, int] = {}
    for value, count in zip(distinct, per_cell.tolist(), strict=True):
        key = cells.category_key(value)
        if key is not None:
            counted[key] = counted.get(key, 0) + count
    return counted


def fit_levels_from_counts(
    name: str, counted: dict[str, int], min_rows: int, max_categories: int
) -> tuple[dict | None, dict | None]:
    """`fit_levels` from the training rows' level counts (summed over partitions on a
    cluster): the one rule for which levels a categorical input keeps."""
    present = sum(counted.values())
    if present == 0:
        return None, {"name": name, "reason": "no values in the training rows"}
    ordered = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [key for key, count in ordered if count >= min_rows][:max_categories]
    covered = sum(counted[key] for key in kept)
    share_distinct = len(ordered) / present
    if (
        present >= MIN_ROWS_FOR_ID
        and share_distinct > UNIQUE_SHARE
        and covered < (COVERAGE_SHARE * present)
    ):
        what = "id-like" if share_distinct >= ID_SHARE else "mostly unique text"
        return None, {
            "name": name,
            "reason": (
                f"{what}: {len(ordered)} distinct values in {present} training rows; values "
                f"seen at least {min_rows} times cover {covered / present:.0%} of them"
            ),
        }
    if not kept:
        return None, {
            "name": name,
            "reason": f"every value is rare (each seen fewer than {min_rows} times)",
        }
    item = {"name": name, "kind": "categorical", "categories": [str(k) for k in kept]}
    if len(kept) < len(ordered):
        item["other"] = True  # rare and unseen levels share one code
        item["rare_levels"] = len(ordered) - len(kept)
    return item, None


def fit_feature_spec(
    table: pa.Table,
    target: str,
    train_rows: np.ndarray,
    kinds: list[ColumnKind],
    dropped: list[dict],
    min_category_rows: int = 5,
    max_categories: int = 1000,
    texts: TextColumns | None = None,
) -> dict:
    """The feature spec: each kept column's kind and how to read it, levels from the training
    rows, and every dropped column with its reason (text columns' levels counted from
    `texts` when given)."""
    train_index = pa.array(np.flatnonzero(train_rows))
    counts = {}
    for kind in kinds:
        if kind.kind != "categorical":
            continue
        if texts is not None and kind.name in texts:
            counts[kind.name] = texts.level_counts(kind.name, train_rows)
        else:
            column = table.column(kind.name).combine_chunks().take(train_index)
            counts[kind.name] = level_counts(column)
    return spec_from_level_counts(
        kinds, dropped, counts, len(train_index), min_category_rows, max_categories
    )


def spec_from_level_counts(
    kinds: list[ColumnKind],
    dropped: list[dict],
    counts: dict[str, dict[str, int]],
    n_train: int,
    min_category_rows: int = 5,
    max_categories: int = 1000,
) -> dict:
    """The feature spec from each categorical column's level counts over the training rows
    (summed over partitions on a cluster, so every partition reads the same levels)."""
    dropped = list(dropped)
    inputs = []
    min_rows = min_level_rows(n_train, min_category_rows)
    for kind in kinds:
        if kind.kind == "numeric":
            item = {"name": kind.name, "kind": "numeric"}
            if kind.detail.get("number_format"):
                item["number_format"] = kind.detail["number_format"]
        elif kind.kind == "datetime":
            parts = list(DATE_PARTS) + (list(TIME_PARTS) if kind.detail.get("has_time") else [])
            item = {
                "name": kind.name,
                "kind": "datetime",
                "date_formats": kind.detail["date_formats"],
                "parts": parts,
            }
        else:
            item, reason = fit_levels_from_counts(
                kind.name, counts[kind.name], min_rows, max_categories
            )
            if item is None:
                dropped.append(reason)
                continue
        if kind.detail.get("ambiguous_format"):
            item["ambiguous_format"] = True
        if kind.detail.get("note"):
            item["note"] = kind.detail["note"]
        inputs.append(item)
    return {"inputs": inputs, "dropped": dropped, "feature_names": _feature_names(inputs)}


def _feature_names(inputs: list[dict]) -> list[str]:
    names: list[str] = []
    taken: set[str] = set()  # a set beside the list: 20,000 names cost no 20,000^2 scan
    for item in inputs:
        if item["kind"] == "datetime":
            parts = [f"{item['name']}__{part}" for part in item["parts"]]
        else:
            parts = [item["name"]]
        for part in parts:
            safe = part.translate(_XGB_UNSAFE)
            while safe in taken:
                safe += "_"
            names.append(safe)
            taken.add(safe)
    return names


def feature_types(spec: dict) -> list[str]:
    """XGBoost feature types, 'c' for categorical and 'q' for numeric, per matrix column."""
    types = []
    for item in spec["inputs"]:
        if item["kind"] == "categorical":
            types.append("c")
        elif item["kind"] == "datetime":
            types += ["q"] * len(item["parts"])
        else:
            types.append("q")
    return types
