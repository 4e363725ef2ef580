"""Hypothesis strategies for cells that look like numbers, written in every convention the
number rules know (and in some they do not): shared by the tests of reading numbers and of
deciding a column's number format."""

from __future__ import annotations

from hypothesis import strategies as st

from trainer.model import sluice_cells as cells

_SEPARATORS = ["", ",", ".", " ", "\u00a0", "\u202f", "'", "\u2019", "_"]


def _body(draw) -> str:
    """Digits grouped by a drawn separator (or by a wrong group size), with a drawn decimal
    mark and decimals, maybe an exponent."""
    integer = str(draw(st.integers(0, 10**9)))
    group = draw(st.sampled_from(_SEPARATORS))
    size = draw(st.sampled_from([3, 3, 3, 2]))
    if group and draw(st.booleans()):
        head = len(integer) % size or size
        chunks = [integer[:head]] + [integer[i : i + size] for i in range(head, len(integer), size)]
        integer = group.join(chunks)
    text = integer
    if draw(st.booleans()):
        mark = draw(st.sampled_from([".", ",", ".", ","]))
        text += mark + str(draw(st.integers(0, 99999))).zfill(draw(st.integers(0, 5)))
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(["e3", "E-2", "e+10", "e999", "e"]))
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from([".", ","])) + str(draw(st.integers(0, 999)))  # ".5"
    return text


@st.composite
def number_cell(draw) -> str:
    """A cell as people write numbers: a body with optional sign, currency, percent,
    accounting parentheses and spaces; sometimes junk, a missing token or padding."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.text(alphabet="0123456789.,' -+()$€%eEa\u2212\u00a0", max_size=10))
    if kind == 1:
        return draw(st.sampled_from(["", "NA", " n/a ", "-", "?", "null", "abc", "inf", "1.#IND"]))
    text = _body(draw)
    space = draw(st.sampled_from(["", "", " ", "\u00a0"]))
    if draw(st.integers(0, 5)) == 0:
        currency = draw(st.sampled_from(["$", "€", "EUR", "£"]))
        text = currency + space + text if draw(st.booleans()) else text + space + currency
    if draw(st.integers(0, 7)) == 0:
        text += space + "%"
    sign = draw(st.sampled_from(["", "", "", "-", "+", "\u2212", "--"]))
    text = sign + text
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(["(", ""])) + text + draw(st.sampled_from([")", ""]))
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from([" ", "\t", "\u3000"])) + text + " "
    return text


# Columns: mostly one convention with some others and some junk, so that every branch of the
# format decision (a clear winner, ties, near-misses around the share) is reached.
_PLAIN = st.sampled_from(["1.5", "2", "-3.25", "0.125", "10", "7.0", "1e3", ".5"])
_COMMA = st.sampled_from(["1,5", "2", "-3,25", "0,125", "10", "7,0"])
_GROUPED = st.sampled_from(["1,234", "3,750", "1,234.5", "1.234,5", "12.345.678", "1 234,5"])
_ODD = st.sampled_from(["$3", "(4)", "5%", "1'234.5", "1\u2019234", "\u22128", "€ 1.234,50"])


def column_cells(min_size: int = 1, max_size: int = 40) -> st.SearchStrategy[list[str | None]]:
    """The cells of one text column (None: a null cell)."""
    cell = st.one_of(
        _PLAIN, _PLAIN, _COMMA, _GROUPED, _ODD, number_cell(), st.none(),
        st.sampled_from(["x", "level_1", "NA", ""]),
    )  # fmt: skip
    return st.lists(cell, min_size=min_size, max_size=max_size)


__all__ = ["cells", "column_cells", "number_cell"]
