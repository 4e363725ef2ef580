"""How Sluice reads a cell: the one definition of each typing rule.

Missing-value tokens, numbers in a column's number format, category keys and dates are each
defined here once. The trainer fits the rules (which number format, which date formats) at
training time; the model reads prod cells with the rules it was trained with.

This file is logged with every model version and loaded by the model under a name of its own,
so a version keeps reading cells its way after Sluice changes. It must stay self-contained:
numpy, pandas and pyarrow only.

Each rule has one meaning and up to two mechanisms: per cell in plain Python (small batches)
and per column in Arrow's kernels (large ones), driven by the same patterns. Where a rule is
applied per distinct value (category keys, dates), both sizes call the very same function.
Each column reader returns, besides the values, per-row masks of the cells it read another way
or not at all (the counts are their sums), so an answer can name the rows as well as count them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Python's whitespace (str.isspace) up to U+3000, named so both mechanisms strip the same set.
WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
# Cells that mean "no value" (compared after stripping, ASCII case-insensitively). It includes
# pandas' default NA strings, so `mlflow models serve` (which reads CSV with pandas) and Sluice
# agree on which cells are missing.
MISSING_TOKENS = frozenset(
    {
        "", "na", "n/a", "nan", "null", "none", "nil", "?", "-", "--", "#n/a", "#na",
        "missing", "#n/a n/a", "-nan", "1.#ind", "1.#qnan", "-1.#ind", "-1.#qnan", "<na>",
    }
)  # fmt: skip
_MISSING_ARRAY = pa.array(sorted(MISSING_TOKENS), pa.string())
# Booleans as pandas' CSV reader spells them; keys write them one way.
TRUE_WORDS = frozenset({"True", "TRUE", "true"})
FALSE_WORDS = frozenset({"False", "FALSE", "false"})


def clean_cell(value: str) -> str | None:
    """A text cell stripped of surrounding whitespace, or None when it is a missing token."""
    value = value.strip(WHITESPACE)
    if value.isascii() and value.lower() in MISSING_TOKENS:
        return None
    return value


def clean_array(values: pa.Array) -> pa.Array:
    """`clean_cell` over an Arrow string array (nulls stay null)."""
    values = pc.utf8_trim(values.cast(pa.large_string()), WHITESPACE)
    # ascii_lower: a token is ASCII, so only ASCII case folding may make a cell match one.
    missing = pc.is_in(pc.ascii_lower(values), value_set=_MISSING_ARRAY)
    return pc.if_else(missing, pa.scalar(None, pa.large_string()), values)


# --- Numbers ---------------------------------------------------------------------------------

CURRENCY = r"(?:[$€£¥₹₽₩₪₺฿₫₴₦]|EUR|USD|GBP|CHF|JPY|SEK|NOK|DKK|PLN|CZK)"
_SPACE = "[ \u00a0\u202f]"
# Thousands separators a format may use, each with the characters that write it.
THOUSANDS = {"": "", ",": ",", ".": r"\.", " ": _SPACE, "'": "['\u2019]"}
DECIMALS = {".": r"\.", ",": ","}
_EXPONENT = "(?:[eE][-+]?[0-9]+)?"
MINUS = "\u2212"  # typographic minus; characters, not escapes: RE2 has no \u escapes
_SIGN = f"[-+{MINUS}]"


@dataclass(frozen=True)
class NumberFormat:
    """How a column writes numbers: the decimal mark and the thousands separator ("" for
    none). Currency signs or codes, a percent sign, a leading sign and accounting parentheses
    are allowed around the number; anything else does not fit and is unreadable."""

    decimal: str = "."
    thousands: str = ""

    def __post_init__(self):
        if self.decimal not in DECIMALS or self.thousands not in THOUSANDS:
            raise ValueError(f"unsupported number format {self.decimal!r}/{self.thousands!r}")
        if self.decimal == self.thousands:
            raise ValueError("the decimal mark and the thousands separator must differ")

    @property
    def body(self) -> str:
        """The digits: grouped (when the format groups), then decimals and exponent."""
        point, group = DECIMALS[self.decimal], THOUSANDS[self.thousands]
        # Grouped digits never start with 0: "0,125" is not a thousand and a hundred and 25.
        integer = f"[1-9][0-9]{{0,2}}(?:{group}[0-9]{{3}})+|[0-9]+" if group else "[0-9]+"
        return f"(?:(?:{integer})(?:{point}[0-9]*)?|{point}[0-9]+){_EXPONENT}"

    @property
    def pattern(self) -> str:
        """The whole cell (already stripped), with named groups for what surrounds the body."""
        return (
            rf"^(?P<open>\()?(?P<sign>{_SIGN})?(?:{CURRENCY}{_SPACE}?)?(?P<sign2>{_SIGN})?"
            rf"(?P<body>{self.body})(?:{_SPACE}?{CURRENCY})?(?:{_SPACE}?%)?(?P<close>\))?$"
        )

    @property
    def plain_pattern(self) -> str:
        """Cells that are only an optionally signed body: most cells of most columns."""
        return rf"^[-+]?{self.body}$"

    @property
    def regroupings(self) -> tuple[NumberFormat, ...]:
        """Formats with this decimal mark and another thousands separator. A column's decimal
        mark is its convention; how its numbers are grouped is not: `1,234.5` in a column
        trained on `1234.5` is one number, while `1,5` in that column is not read."""
        return tuple(
            fmt
            for fmt in NUMBER_FORMATS
            if fmt.decimal == self.decimal and fmt.thousands not in ("", self.thousands)
        )

    @property
    def groups_with_a_decimal_mark(self) -> bool:
        """Whether this format's thousands separator is another convention's decimal mark,
        so a lone group (`1,234`) reads differently there."""
        return self.thousands in DECIMALS

    def to_dict(self) -> dict:
        return {"decimal": self.decimal, "thousands": self.thousands}

    @classmethod
    def from_dict(cls, data: dict | None) -> NumberFormat:
        return cls(**data) if data else cls()

    def _regex(self) -> re.Pattern:
        return _compiled(self.pattern)

    def parse(self, text: str) -> float | None:
        """One stripped, non-missing cell as a finite number, or None when it does not fit."""
        match = self._regex().fullmatch(text)
        if match is None:
            return None
        open_, sign, sign2, body, close = match.group("open", "sign", "sign2", "body", "close")
        if bool(open_) != bool(close) or (sign and sign2) or (open_ and (sign or sign2)):
            return None
        number = float(self._plain_body(body))
        if not math.isfinite(number):
            return None
        negative = bool(open_) or (sign or sign2 or "") in ("-", MINUS)
        return -number if negative else number

    def _plain_body(self, body: str) -> str:
        if self.thousands:
            body = re.sub(THOUSANDS[self.thousands], "", body)
        return body.replace(self.decimal, ".") if self.decimal != "." else body

    def parse_array(self, cells: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """`parse` over cleaned Arrow cells: float64 values (NaN where missing or unreadable)
        and a mask of the present cells that did not fit.

        Each step reads only the cells the previous ones left: bodies without grouping
        (`read_plain`: most cells of most columns), bodies in this format's grouping, then
        the whole pattern, whose parts are extracted from the cells that match it (a match
        costs a tenth of an extraction)."""
        plain, values = read_plain(cells, self.decimal)
        rest = ~plain if cells.null_count == 0 else ~plain & _valid(cells)
        if rest.any():
            index = np.flatnonzero(rest)
            values[index] = self._parse_rest(cells.take(pa.array(index)))
        infinite = np.isinf(values)  # a body beyond float64 (1e999): not a number
        values[infinite] = np.nan
        return values, (rest & np.isnan(values)) | infinite

    def _parse_rest(self, texts: pa.Array) -> np.ndarray:
        """Present cells that are not plain bodies: float64 (NaN where they do not fit)."""
        numbers = np.full(len(texts), np.nan)
        left = np.arange(len(texts))
        if self.thousands:  # grouped bodies: the separators dropped, then cast
            grouped = _matches(texts, self.plain_pattern)
            if grouped.any():
                numbers[grouped] = _to_numpy(
                    _cast_float(self._plain_body_array(texts.filter(pa.array(grouped))))
                )
                left, texts = left[~grouped], texts.filter(pa.array(~grouped))
        fits = _matches(texts, self.pattern)
        if fits.any():
            parts = self._parse_parts(texts.filter(pa.array(fits)))
            numbers[left[fits]] = _to_numpy(parts)
        return numbers

    def _plain_body_array(self, bodies: pa.Array) -> pa.Array:
        if self.thousands:
            bodies = pc.replace_substring_regex(bodies, THOUSANDS[self.thousands], "")
        if self.decimal != ".":
            bodies = pc.replace_substring(bodies, self.decimal, ".")
        return bodies

    def _parse_parts(self, cells: pa.Array) -> pa.Array:
        parts = pc.extract_regex(cells, self.pattern)  # null where the cell does not match
        # flatten() carries the struct's nulls into each field (field() would not).
        field = dict(zip([f.name for f in parts.type], parts.flatten(), strict=True))
        has = {name: pc.not_equal(value, "") for name, value in field.items()}
        signed = pc.and_(has["sign"], has["sign2"])
        bad = pc.or_(
            pc.or_(pc.xor(has["open"], has["close"]), signed),
            pc.and_(has["open"], pc.or_(has["sign"], has["sign2"])),
        )
        numbers = _cast_float(self._plain_body_array(field["body"]))
        minus = pa.array(["-", MINUS])
        negative = pc.or_(
            has["open"],
            pc.or_(pc.is_in(field["sign"], value_set=minus), pc.is_in(field["sign2"], minus)),
        )
        numbers = pc.if_else(negative, pc.negate(numbers), numbers)
        return pc.if_else(bad, pa.scalar(None, pa.float64()), numbers)


_PATTERNS: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    regex = _PATTERNS.get(pattern)
    if regex is None:
        regex = _PATTERNS[pattern] = re.compile(pattern)
    return regex


def _cast_float(bodies: pa.Array) -> pa.Array:
    """Bodies that matched a number pattern as float64 (each one a valid float literal)."""
    return pc.cast(bodies, pa.float64())


def _to_numpy(numbers: pa.Array) -> np.ndarray:
    """float64 values, NaN where null (a writable copy)."""
    return np.array(numbers.to_numpy(zero_copy_only=False), dtype="float64")


def _valid(cells: pa.Array) -> np.ndarray:
    return cells.is_valid().to_numpy(zero_copy_only=False)


def _matches(cells: pa.Array, pattern: str) -> np.ndarray:
    """Which cells match a pattern (False where null)."""
    matched = pc.match_substring_regex(cells, pattern)
    if matched.true_count == 0:
        return np.zeros(len(cells), dtype=bool)
    return matched.fill_null(False).to_numpy(zero_copy_only=False)


def read_plain(cells: pa.Array, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """Which cells are only an optionally signed body without grouping (`1.5`, `-3`, `2e5`),
    and their numbers: float64, NaN for the other cells, infinite where a body overflows.

    Such a cell reads the same in every format with this decimal mark (no separator is in
    it), and cleaning leaves it as it is (no whitespace, and a missing-value token has no
    digit or is not plain). A column of them is read by one cast: Arrow's float parser reads
    a finite number from exactly the texts that are plain bodies with a decimal point (held
    to the pattern by a property test), and the other texts it reads ("nan", "inf") come out
    NaN or infinite, so only those are matched against the pattern."""
    if decimal == ".":
        try:
            numbers = _to_numpy(_cast_float(cells))
        except pa.ArrowInvalid:
            pass  # some cell is not a number: match the pattern
        else:
            plain = _valid(cells) if cells.null_count else np.ones(len(cells), dtype=bool)
            odd = np.flatnonzero(plain & ~np.isfinite(numbers))
            if len(odd):
                spelled = odd[~_matches(cells.take(pa.array(odd)), _PLAIN_POINT)]
                plain[spelled], numbers[spelled] = False, np.nan
            return plain, numbers
    pattern = NumberFormat(decimal).plain_pattern
    matched = pc.match_substring_regex(cells, pattern)
    hits = matched.true_count
    if hits == 0:
        return np.zeros(len(cells), dtype=bool), np.full(len(cells), np.nan)
    plain = matched.fill_null(False).to_numpy(zero_copy_only=False)
    bodies = cells.filter(matched)
    if decimal != ".":
        bodies = pc.replace_substring(bodies, decimal, ".")
    values = np.full(len(cells), np.nan)
    values[plain] = _to_numpy(_cast_float(bodies))
    return plain, values


_PLAIN_POINT = NumberFormat(".").plain_pattern

# Candidate formats, in the order that breaks ties (plain first; see fit_number_format).
NUMBER_FORMATS = (
    NumberFormat(".", ""),
    NumberFormat(".", ","),
    NumberFormat(",", ""),
    NumberFormat(",", "."),
    NumberFormat(".", " "),
    NumberFormat(",", " "),
    NumberFormat(".", "'"),
    NumberFormat(",", "'"),
)


# --- Category keys ---------------------------------------------------------------------------

# A plain number as pandas reads one; such cells get one spelling as category keys.
PLAIN_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


# 02134 is a code (a ZIP code, an account), not the number 2134: kept as written.
LEADING_ZERO = re.compile(r"[-+]?0[0-9]")


def number_key(number: float) -> str:
    """A number written one way: integral values without a decimal part ("1", not "1.0")."""
    if math.isfinite(number) and number % 1 == 0 and abs(number) < 1e15:
        return str(int(number))
    return repr(float(number))


def category_key(value) -> str | None:
    """The key a category is known by: text stripped, numbers and booleans written one way
    ("1", "1.0" and 1.0 are the same level; "true" and True too; "02134" stays as written).
    None when missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return number_key(float(value))
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else number_key(float(value))
    text = clean_cell(str(value))
    if text is None:
        return None
    if PLAIN_NUMBER.fullmatch(text) and not LEADING_ZERO.match(text):
        return number_key(float(text))
    if text in TRUE_WORDS:
        return "True"
    if text in FALSE_WORDS:
        return "False"
    return text


# --- Dates -----------------------------------------------------------------------------------

_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")
# Formats people and spreadsheets write, ISO 8601 first (pandas reads every ISO variant:
# date, date and time with T or a space, fractions, offsets). Ambiguous pairs (day/month
# order) are both here: at training the column decides; in prod a cell read differently by
# two formats is not read at all.
DATE_FORMATS = (
    "ISO8601",
    *(f"%Y/%m/%d{t}" for t in _TIMES[:3]),
    *(f"{d}{t}" for d in ("%d/%m/%Y", "%m/%d/%Y", "%d/%m/%y", "%m/%d/%y") for t in _TIMES),
    *(f"{d}{t}" for d in ("%d.%m.%Y", "%d.%m.%y", "%d-%m-%Y", "%m-%d-%Y") for t in _TIMES[:3]),
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%B %d, %Y",
    "%d-%b-%Y",
    "%d-%b-%y",
    "%a, %d %b %Y %H:%M:%S",
    "%a, %d %b %Y %H:%M:%S %z",
)


STAMP = "datetime64[us]"  # pandas' unit: years 1 to 9999, where nanoseconds end in 2262


@dataclass
class DateCells:
    """Dates read from a column: UTC times (NaT where missing or unreadable) and, per row,
    which cells were read another way or not at all."""

    stamps: np.ndarray  # datetime64[us]
    other_format: int  # read with a format other than the column's own, unambiguously
    unreadable: int  # present but not a date in any format, or ambiguous
    other_format_rows: np.ndarray  # bool, per row: the cells counted in other_format
    unreadable_rows: np.ndarray  # bool, per row: the cells counted in unreadable


def _parse_dates(texts: np.ndarray, fmt: str) -> np.ndarray:
    """One format over distinct texts: datetime64[us] in UTC (NaT where it does not fit)."""
    parsed = pd.to_datetime(np.asarray(texts, dtype=object), format=fmt, errors="coerce", utc=True)
    return parsed.tz_localize(None).to_numpy(dtype=STAMP)


def read_distinct_dates(texts: list[str], formats: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct cleaned texts as dates, and which were read with a format not the column's.

    The column's formats are tried first, in order. A text none of them reads is tried with
    every format in DATE_FORMATS and kept only when all the formats that read it agree: so
    07/15/2023 is read (only month-first fits), 07/08/2023 is not (it is ambiguous).
    """
    distinct = np.asarray(texts, dtype=object)
    values = np.full(len(distinct), np.datetime64("NaT"), dtype=STAMP)
    todo = np.ones(len(distinct), dtype=bool)
    for fmt in formats:
        if not todo.any():
            break
        index = np.flatnonzero(todo)
        parsed = _parse_dates(distinct[index], fmt)
        values[index] = parsed
        todo[index] = np.isnat(parsed)
    other = np.zeros(len(distinct), dtype=bool)
    if todo.any():
        index = np.flatnonzero(todo)
        readings = np.stack([_parse_dates(distinct[index], fmt) for fmt in DATE_FORMATS])
        read = ~np.isnat(readings)
        pick = readings[read.argmax(axis=0), np.arange(len(index))]  # NaT where none read
        accepted = read.any(axis=0) & np.all(~read | (readings == pick), axis=0)
        values[index[accepted]] = pick[accepted]
        other[index[accepted]] = True
    return values, other


DATE_PARTS = ("year", "month", "day", "weekday", "dayofyear", "days_since_epoch")
TIME_PARTS = ("hour", "minute")


def date_parts(stamps: np.ndarray, parts: list[str]) -> list[np.ndarray]:
    """The requested parts of UTC times as float columns (NaN where the time is missing)."""
    missing = np.isnat(stamps)
    days = stamps.astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    years = stamps.astype("datetime64[Y]")
    day_count = days.astype("int64")
    minutes = (stamps - days).astype("timedelta64[m]").astype("int64")
    computed = {
        "year": lambda: years.astype("int64") + 1970,
        "month": lambda: months.astype("int64") % 12 + 1,
        "day": lambda: (days - months).astype("int64") + 1,
        "weekday": lambda: (day_count + 3) % 7,  # 1970-01-01 was a Thursday; Monday is 0
        "dayofyear": lambda: (days - years).astype("int64") + 1,
        "hour": lambda: minutes // 60,
        "minute": lambda: minutes % 60,
        "days_since_epoch": lambda: stamps.astype("datetime64[s]").astype("int64") / 86400.0,
    }
    return [np.where(missing, np.nan, computed[part]().astype("float64")) for part in parts]


# --- Reading a column ------------------------------------------------------------------------
# A column arrives as a list of cells (small batches: str, None, or typed values from pandas
# or JSON) or as an Arrow array (large batches: text from Sluice's parser, or typed).


def _is_missing(value) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, (float, np.floating)) and math.isnan(value))
    )


# One group of three digits after a `,` or `.` and nothing else ("1,234", "-$1.234"): a
# thousand and some in one convention, a number below ten in the other. A column whose own
# format groups digits that way reads it; one that was trained without grouping does not
# guess, and counts it as unreadable.
_NOT_NUMBER_MARK = "[^0-9.,]"
_ONE_GROUP = "^[0-9]{1,3}[.,][0-9]{3}$"


def _may_regroup(fmt: NumberFormat, text: str) -> bool:
    """Whether a cell may be read with `fmt`, a regrouping of the column's own format."""
    if not fmt.groups_with_a_decimal_mark:
        return True  # spaces and apostrophes are never a decimal mark
    return _compiled(_ONE_GROUP).fullmatch(re.sub(_NOT_NUMBER_MARK, "", text)) is None


@dataclass
class NumberCells:
    """Numbers read from a column: float64 (NaN where missing or unreadable) and, per row,
    which cells were read another way or not at all."""

    values: np.ndarray
    unreadable: int  # present but not a number in the column's decimal convention
    regrouped: int  # read with another thousands separator than the column's own
    unreadable_rows: np.ndarray  # bool, per row: the cells counted in unreadable
    regrouped_rows: np.ndarray  # bool, per row: the cells counted in regrouped


_NO_ROWS: dict[int, np.ndarray] = {}


def _no_rows(n: int) -> np.ndarray:
    """An all-False row mask, shared and read-only (single rows are a hot path)."""
    mask = _NO_ROWS.get(n)
    if mask is None:
        mask = np.zeros(n, dtype=bool)
        mask.setflags(write=False)
        if n <= 64:
            _NO_ROWS[n] = mask
    return mask


def read_number(value, fmt: NumberFormat) -> tuple[float | None, bool]:
    """One cell as a number (NaN when missing, None when present but not readable: text that
    fits no grouping of the column's decimal mark, booleans, infinities), and whether it was
    read with another thousands separator."""
    if _is_missing(value):
        return math.nan, False
    if isinstance(value, (bool, np.bool_)):
        return None, False
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return (number if math.isfinite(number) else None), False
    if isinstance(value, str):
        text = clean_cell(value)
        if text is None:
            return math.nan, False
        number = fmt.parse(text)
        if number is not None:
            return number, False
        for other in fmt.regroupings:
            number = other.parse(text) if _may_regroup(other, text) else None
            if number is not None:
                return number, True
    return None, False


def read_number_texts(
    cleaned: pa.Array, fmt: NumberFormat
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`read_number` over cleaned Arrow text: float64 values, a mask of the present cells that
    were not read, and a mask of those read with another thousands separator."""
    numbers, bad = fmt.parse_array(cleaned)
    regrouped = np.zeros(len(numbers), dtype=bool)
    for other in fmt.regroupings:
        if not bad.any():
            break
        index = np.flatnonzero(bad)
        texts = cleaned.take(pa.array(index))
        more, still = other.parse_array(texts)
        if other.groups_with_a_decimal_mark:  # the rule of _may_regroup, in Arrow
            core = pc.replace_substring_regex(texts, _NOT_NUMBER_MARK, "")
            one_group = pc.match_substring_regex(core, _ONE_GROUP).fill_null(False)
            still |= one_group.to_numpy(zero_copy_only=False)
        read = index[~still]
        numbers[read], bad[read], regrouped[read] = more[~still], False, True
    return numbers, bad, regrouped


def _read_raw_texts(
    values: pa.Array, fmt: NumberFormat
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`read_number_texts(clean_array(values), fmt)`, cleaning only the cells that are not
    plain bodies: a plain body is its own cleaned cell (see `read_plain`), read in one cast."""
    plain, numbers = read_plain(values, fmt.decimal)
    bad = np.isinf(numbers)
    numbers[bad] = np.nan
    regrouped = np.zeros(len(values), dtype=bool)
    rest = ~plain if values.null_count == 0 else ~plain & _valid(values)
    if rest.any():
        index = np.flatnonzero(rest)
        cleaned = clean_array(values.take(pa.array(index)))
        numbers[index], bad[index], regrouped[index] = read_number_texts(cleaned, fmt)
    return numbers, bad, regrouped


def read_numbers(values: list | pa.Array, fmt: NumberFormat) -> NumberCells:
    """A column as float64 (see `read_number`), with the rows read another way or not at all."""
    if isinstance(values, list):
        read = [read_number(value, fmt) for value in values]
        numbers = np.array([math.nan if n is None else n for n, _ in read], dtype="float64")
        unreadable = sum(n is None for n, _ in read)
        regrouped = sum(r for _, r in read)
        # Masks only when something is to be marked: most cells of most rows read as trained.
        bad = np.array([n is None for n, _ in read]) if unreadable else _no_rows(len(read))
        other = np.array([r for _, r in read]) if regrouped else _no_rows(len(read))
        return NumberCells(numbers, unreadable, regrouped, bad, other)
    kind = values.type
    none = np.zeros(len(values), dtype=bool)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        numbers, bad, regrouped = _read_raw_texts(values, fmt)
        return NumberCells(numbers, int(bad.sum()), int(regrouped.sum()), bad, regrouped)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False).astype("float64")
        finite = np.isfinite(numbers)
        bad = ~finite & ~np.isnan(numbers)
        return NumberCells(np.where(finite, numbers, np.nan), int(bad.sum()), 0, bad, none)
    present = values.is_valid().to_numpy(zero_copy_only=False).astype(bool)  # not numbers
    return NumberCells(np.full(len(values), np.nan), int(present.sum()), 0, present, none)


def distinct_cells(values: list | pa.Array) -> tuple[list, np.ndarray]:
    """The distinct cells of a column and, per row, the position of its cell (-1: null)."""
    if isinstance(values, list):
        seen: dict = {}
        positions = np.empty(len(values), dtype="int64")
        for row, value in enumerate(values):
            if _is_missing(value):
                positions[row] = -1
                continue
            if not isinstance(value, (str, int, float, bool, np.generic)):
                value = str(value)  # lists or objects from JSON: read as their text
            key = (type(value), value)
            position = seen.get(key)
            if position is None:
                position = seen[key] = len(seen)
            positions[row] = position
        return [value for _, value in seen], positions
    encoded = pc.dictionary_encode(values)
    positions = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    return encoded.dictionary.to_pylist(), positions


def category_keys(values: list | pa.Array) -> np.ndarray:
    """`category_key` of every cell of a column (object array, None where missing), computed
    once per distinct cell."""
    distinct, positions = distinct_cells(values)
    keys = np.asarray([category_key(value) for value in distinct] + [None], dtype=object)
    return keys[positions]  # -1 (a null cell) takes the trailing None


@dataclass
class CategoryCells:
    """Category codes of a column (NaN where missing) and, per row, which present cells were
    levels the model did not keep (never seen, or rare in training: the spec keeps only how
    many levels were rare, so the two cannot be told apart)."""

    codes: np.ndarray
    unseen: int
    unseen_rows: np.ndarray  # bool, per row: the cells counted in unseen


def read_categories(
    values: list | pa.Array, index: dict[str, int], other: int | None
) -> CategoryCells:
    """Category codes and the rows whose present cell is not a kept level.

    Each distinct cell's key comes from `category_key`, so a row's code never depends on the
    other rows. Unseen levels take the `other` code (rare levels' group) when there is one.
    """
    distinct, positions = distinct_cells(values)
    keys = [category_key(value) for value in distinct]
    codes = np.array(
        [np.nan if key is None else index.get(key, -1) for key in keys] + [np.nan], dtype="float64"
    )
    unseen = codes == -1
    codes[unseen] = np.nan if other is None else other
    rows = unseen[positions]  # -1 (a null cell): the trailing NaN, never unseen
    return CategoryCells(codes[positions], int(np.count_nonzero(rows)), rows)


def read_date_cells(values: list | pa.Array, formats: list[str]) -> DateCells:
    """A column as dates (see `read_distinct_dates`); numbers and booleans are not dates."""
    if isinstance(values, pa.Array) and pa.types.is_timestamp(values.type):
        values = values.cast(pa.string())  # ISO text, which ISO8601 reads
    distinct, positions = distinct_cells(values)
    numbers = (bool, int, float, np.bool_, np.integer, np.floating)
    typed = np.array([isinstance(value, numbers) for value in distinct] + [False])
    texts = [None if bad else clean_cell(str(v)) for v, bad in zip(distinct, typed, strict=False)]
    stamps = np.full(len(distinct) + 1, np.datetime64("NaT"), dtype=STAMP)  # last: null rows
    other = np.zeros(len(distinct) + 1, dtype=bool)
    index = np.array([i for i, text in enumerate(texts) if text is not None], dtype="int64")
    if len(index):
        stamps[index], other[index] = read_distinct_dates([texts[i] for i in index], formats)
    present = np.zeros(len(distinct) + 1, dtype=bool)
    present[index] = True
    unreadable = (present & np.isnat(stamps)) | typed
    other_rows, unreadable_rows = other[positions], unreadable[positions]
    return DateCells(
        stamps=stamps[positions],
        other_format=int(np.count_nonzero(other_rows)),
        unreadable=int(np.count_nonzero(unreadable_rows)),
        other_format_rows=other_rows,
        unreadable_rows=unreadable_rows,
    )
