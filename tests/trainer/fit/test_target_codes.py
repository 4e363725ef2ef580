"""Class codes of a target column against their per-row definition (a dict lookup per label)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sluice_common.errors import ApiError
from trainer.fit.target import classes_of
from trainer.model import sluice_cells as cells

_CELLS = st.sampled_from(["yes", "no", " yes", "1", "1.0", "2", "b", "", None])


@settings(max_examples=100, deadline=None)
@given(st.lists(_CELLS, min_size=1, max_size=30))
def test_class_codes_are_each_labels_place_among_the_classes(values):
    column = pa.array(values, type=pa.string())
    assume(any(key is not None for key in cells.category_keys(column)))  # read drops these
    try:
        target = classes_of(column, "t", "r")
    except ApiError:
        return  # a single class: the error is the rule's, not the codes'
    index = {label: code for code, label in enumerate(target.classes)}
    expected = np.array([index.get(label, -1) for label in cells.category_keys(column)])
    assert (target.keep == (expected >= 0)).all()
    assert target.y.tolist() == expected[expected >= 0].astype("float64").tolist()
