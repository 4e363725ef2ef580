"""The row-set counts (`observations`, `duplicate_count`) against their sorting definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.fit import rows as rowsets


def _observations_by_sorting(read: dict, target: str, content: np.ndarray) -> np.ndarray:
    """The definition, written plainly: a row is an observation when each of its feature
    values is held by at least MIN_SHARING_ROWS distinct rows (distinct by content)."""
    shared = np.ones(len(content), dtype=bool)
    for name, values in read.items():
        if name == target:
            continue
        holders: dict = {}
        for value, row in zip(values.tolist(), content.tolist(), strict=True):
            holders.setdefault(repr(value), set()).add(row)
        shared &= np.array(
            [len(holders[repr(v)]) >= rowsets.MIN_SHARING_ROWS for v in values.tolist()]
        )
    return shared


@st.composite
def _tables(draw):
    n = draw(st.integers(1, 40))
    small = st.integers(0, 3)
    read = {
        "a": np.array(draw(st.lists(small, min_size=n, max_size=n)), dtype="float64"),
        "b": np.array(draw(st.lists(small, min_size=n, max_size=n)), dtype="int64"),
        "c": np.array(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)), dtype="int64"),
        "y": np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype="float64"),
    }
    if draw(st.booleans()):
        read["a"][0] = np.nan
    return read


@settings(max_examples=150, deadline=None)
@given(_tables())
def test_observations_and_duplicates_match_their_definition(read):
    content = rowsets.content_hashes(read)
    expected = _observations_by_sorting(read, "y", content)
    assert (rowsets.observations(read, "y", content) == expected).all()
    assert rowsets.duplicate_count(content) == len(content) - len(set(content.tolist()))


def test_a_value_of_one_distinct_row_makes_its_copies_one_record():
    read = {
        "x": np.array([1.0, 1.0, 2.0, 2.0, 3.0]),
        "y": np.array([0.0, 0.0, 1.0, 1.0, 0.0]),
    }
    content = rowsets.content_hashes(read)
    # 1.0 and 2.0 are each held by one distinct row (its two copies): not shared.
    assert not rowsets.observations(read, "y", content).any()
    read["z"] = np.array([5, 5, 5, 5, 5])
    read["x"] = np.array([1.0, 2.0, 1.0, 2.0, 1.0])
    content = rowsets.content_hashes(read)
    assert rowsets.observations(read, "y", content).tolist() == [True] * 5
