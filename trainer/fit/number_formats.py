"""A text column's number format, decided from its distinct cells (pure; no MLflow, no Flask).

The rule (`fit_number_formats`): the candidate format that reads the most cells, then the most
in its own grouping, first in `format_order`; chosen when it reads `share` of the cells. Every
format is not read over every cell to apply it: a format's reads so far bound what it can read
(the cells it failed are lost to it; the cells another format read are a floor under the best),
and a format whose bound falls below the best or below `share` can neither win nor tie. So a
column of `1.5` is read once in the decimal-point formats (a plain body reads the same in all
of them), and the decimal-comma formats stop after a sample of cells they fail. The formats
that could still win or tie are read over every cell, so the decision, the unreadable count,
the ambiguity and the values are those of reading every format over every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from trainer.model import sluice_cells as cells
from trainer.model.sluice_cells import NUMBER_FORMATS

FIRST_SAMPLE = 64  # distinct cells per column read in every format first, the most frequent
# A format reading at least this share of the cells it has tried reads the rest at once (a
# column of numbers in it is settled in one pass); the others go on sample by sample.
EAGER_SHARE = 0.5


def format_order(prefer_comma: bool) -> list:
    """The candidate number formats in the order that breaks ties."""
    return sorted(NUMBER_FORMATS, key=lambda f: (f.decimal != ",") if prefer_comma else 0)


class Readings:
    """Distinct cleaned cells read in the candidate formats on demand, each cell at most once
    per format (`sluice_cells.read_number_texts`)."""

    def __init__(self, dictionary: pa.Array):
        self.dictionary = dictionary
        n, n_formats = len(dictionary), len(NUMBER_FORMATS)
        self.values = np.full((n_formats, n), np.nan)
        self.bad = np.zeros((n_formats, n), dtype=bool)
        self.regrouped = np.zeros((n_formats, n), dtype=bool)
        self.known = np.zeros((n_formats, n), dtype=bool)

    def read(self, fmt: cells.NumberFormat, codes: np.ndarray) -> None:
        """Read the cells at `codes` (dictionary positions) in `fmt`, those not read yet."""
        f = NUMBER_FORMATS.index(fmt)
        wanted = np.zeros(len(self.dictionary), dtype=bool)  # a cell of many columns: once
        wanted[codes] = True
        todo = np.flatnonzero(wanted & ~self.known[f])
        if not len(todo):
            return
        texts = self.dictionary.take(pa.array(todo))
        # A plain body reads the same in every format with its decimal mark (`read_plain`):
        # read once, known for all of them.
        plain, numbers = cells.read_plain(texts, fmt.decimal)
        if plain.any():
            at, numbers = todo[plain], numbers[plain]
            finite = np.isfinite(numbers)
            for g, other in enumerate(NUMBER_FORMATS):
                if other.decimal != fmt.decimal:
                    continue
                fresh = ~self.known[g, at]
                where = at[fresh]
                self.values[g, where] = np.where(finite[fresh], numbers[fresh], np.nan)
                self.bad[g, where] = ~finite[fresh]
                self.known[g, where] = True
        if not plain.all():
            rest = todo[~plain]
            read = cells.read_number_texts(texts.filter(pa.array(~plain)), fmt)
            self.values[f, rest], self.bad[f, rest], self.regrouped[f, rest] = read
            self.known[f, rest] = True

    def numbers(self, fmt: cells.NumberFormat, codes: np.ndarray) -> np.ndarray:
        """The values of the cells at `codes` in `fmt` (read where not yet); NaN at -1."""
        present = codes >= 0
        self.read(fmt, codes[present])
        values = self.values[NUMBER_FORMATS.index(fmt)][codes]
        values[~present] = np.nan
        return values


@dataclass(frozen=True)
class Entries:
    """Distinct cells of many columns: each one's column and position in the dictionary."""

    column: np.ndarray
    code: np.ndarray


@dataclass(frozen=True)
class NumberFits:
    """Per column: the chosen format's position in the order (-1: none reads `share` of the
    cells), the cells it does not read, and whether another format ties and reads some cell
    differently (0 and False where none is chosen)."""

    chosen: np.ndarray
    unreadable: np.ndarray
    ambiguous: np.ndarray


def fit_number_formats(
    readings: Readings,
    entries: Entries,
    counts: np.ndarray,
    n_columns: int,
    share: float,
    order: list,
    sample: int = FIRST_SAMPLE,
) -> NumberFits:
    """`features.fit_number_format` of many columns at once, from their distinct cells
    (`entries`, with counts), read in `readings` only as far as the decision needs (first
    `sample` distinct cells per column in every format)."""
    ranked = _Ranked(entries, counts, n_columns)
    formats = [NUMBER_FORMATS.index(fmt) for fmt in order]
    total = ranked.per_column(ranked.count)
    alive = np.repeat((total > 0)[None, :], len(order), axis=0)
    reach = np.full(n_columns, sample)  # each column's entries sampled so far, by rank
    wanted = np.repeat((ranked.rank < sample)[None, :], len(order), axis=0)
    active = total > 0  # columns with formats left to read
    tallies = None
    while True:
        for fmt, rows in zip(order, wanted, strict=True):
            if rows.any():
                readings.read(fmt, ranked.code[rows])
        tallies = reads, fails, complete = _tally(readings, ranked, formats, active, tallies)
        # Reads so far are a floor under the best; the cells a format failed, a ceiling over
        # it. Below the best it neither wins nor ties; below `share` it cannot be chosen.
        floor, ceiling = reads.max(axis=0), total - fails
        alive &= (ceiling >= floor) & (ceiling >= share * total)
        todo = alive & ~complete
        active = todo.any(axis=0)
        if not active.any():
            return _decide(readings, ranked, formats, alive, reads, total, share)
        eager = todo & (reads >= EAGER_SHARE * (reads + fails))
        # Sampling waits for a column's eager reads: they raise its floor.
        sampled = todo & ~eager.any(axis=0)
        # The next sample: as many cells as would rule the sampled formats out if they failed
        # them all (and at least twice as many entries as so far).
        need = np.where(sampled, ceiling - np.maximum(floor, share * total) + 1, 0).max(axis=0)
        reach = np.where(sampled.any(axis=0), ranked.reach_for(reach, need), reach)
        within = ranked.rank < reach[ranked.column]
        wanted = eager[:, ranked.column] | (sampled[:, ranked.column] & within)


def _tally(readings: Readings, ranked: _Ranked, formats: list[int], active, before):
    """Per format and column: the cells read so far, the cells failed so far, and whether
    every distinct cell has been read. Counted again for the active columns only: the others
    are settled (the alive formats read every cell), whatever is read for another column."""
    rows = np.flatnonzero(active[ranked.column])
    code, count = ranked.code[rows], ranked.count[rows]
    starts = np.searchsorted(ranked.column[rows], np.arange(ranked.n_columns + 1))
    shape = (len(formats), ranked.n_columns)
    reads, fails = np.zeros(shape, "int64"), np.zeros(shape, "int64")
    complete = np.zeros(shape, dtype=bool)
    if before is not None:
        reads[:, ~active], fails[:, ~active], complete[:, ~active] = (
            old[:, ~active] for old in before
        )
    for i, f in enumerate(formats):
        known, bad = readings.known[f, code], readings.bad[f, code]
        reads[i] += _sums(np.where(known & ~bad, count, 0), starts)
        fails[i] += _sums(np.where(known & bad, count, 0), starts)
        complete[i] |= active & (_sums(~known, starts) == 0)
    return reads, fails, complete


def _sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of `values`: run i is [starts[i], starts[i + 1])."""
    running = np.concatenate([[0], np.cumsum(values, dtype="int64")])
    return running[starts[1:]] - running[starts[:-1]]


def _decide(readings, ranked, formats, alive, reads, total, share) -> NumberFits:
    """The rule over the formats still alive, every one of them read over every cell."""
    n_columns, code = len(total), ranked.code
    native = np.stack(
        [
            ranked.per_column(ranked.count * ~(readings.bad[f, code] | readings.regrouped[f, code]))
            for f in formats
        ]
    )
    score = np.where(alive, reads * (total.max(initial=0) + 1) + native, -1)
    chosen = np.argmax(score, axis=0)  # the first maximum: the order breaks ties
    columns = np.arange(n_columns)
    best = reads[chosen, columns]
    fits = alive.any(axis=0) & (total > 0) & (best >= share * total)
    ambiguous = np.zeros(n_columns, dtype=bool)
    tied = alive & (reads == best) & fits
    tied[chosen, columns] = False
    if tied.any():
        chosen_format = np.asarray(formats)[chosen]
        best_values = readings.values[chosen_format[ranked.column], code]
        for i, f in enumerate(formats):
            if not tied[i].any():
                continue
            other = readings.values[f, code]
            differ = ~((other == best_values) | (np.isnan(other) & np.isnan(best_values)))
            ambiguous |= tied[i] & (ranked.per_column(differ) > 0)
    return NumberFits(np.where(fits, chosen, -1), np.where(fits, total - best, 0), ambiguous & fits)


class _Ranked:
    """Entries grouped by column, each column's most frequent first (then first seen)."""

    def __init__(self, entries: Entries, counts: np.ndarray, n_columns: int):
        # By column, then count (descending); stable: first seen among equals. Runs of equal
        # keys are the common case (unique cells), which a stable sort passes through fast.
        key = entries.column * (int(counts.max(initial=0)) + 1) - counts
        order = np.argsort(key, kind="stable")
        self.column = entries.column[order]
        self.code = entries.code[order]
        self.count = counts[order].astype("int64")
        self.n_columns = n_columns
        self.starts = np.searchsorted(self.column, np.arange(n_columns + 1))
        self.rank = np.arange(len(order)) - self.starts[self.column]
        self.mass = np.concatenate([[0], np.cumsum(self.count)])  # counts before each entry

    def per_column(self, weights: np.ndarray) -> np.ndarray:
        return _sums(weights, self.starts)

    def reach_for(self, reach: np.ndarray, need: np.ndarray) -> np.ndarray:
        """Per column, how many entries (by rank) hold `need` more cells than the first
        `reach`, and at least twice `reach`; at most all of them."""
        size = np.diff(self.starts)
        start = self.starts[:-1] + np.minimum(reach, size)
        end = np.searchsorted(self.mass, self.mass[start] + need, side="left")
        return np.minimum(np.maximum(end - self.starts[:-1], 2 * reach), size)
