"""The number rules' Arrow mechanism as it was before the tiered reading (issue #24), kept as
an oracle: every column through the whole-column plain check, else through the extraction of
the pattern's parts, and every cell cleaned before it is read. The tiered mechanism in
`sluice_cells` must give the same values bit for bit and the same masks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.model import sluice_cells as cells
from trainer.model.sluice_cells import NumberFormat


def parse_array(fmt: NumberFormat, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    present = pc.is_valid(texts)
    plain = pc.match_substring_regex(texts, fmt.plain_pattern)
    if pc.all(pc.or_kleene(plain, pc.invert(present))).as_py() is not False:
        numbers = pc.cast(fmt._plain_body_array(texts), pa.float64())
    else:
        numbers = fmt._parse_parts(texts)
    values = numbers.to_numpy(zero_copy_only=False).astype("float64", copy=False)
    values = np.where(np.isfinite(values), values, np.nan)
    present_np = present.to_numpy(zero_copy_only=False)
    return values, present_np & np.isnan(values)


def read_number_texts(cleaned: pa.Array, fmt: NumberFormat):
    numbers, bad = parse_array(fmt, cleaned)
    regrouped = np.zeros(len(numbers), dtype=bool)
    for other in fmt.regroupings:
        if not bad.any():
            break
        index = np.flatnonzero(bad)
        texts = cleaned.take(pa.array(index))
        more, still = parse_array(other, texts)
        if other.groups_with_a_decimal_mark:
            core = pc.replace_substring_regex(texts, cells._NOT_NUMBER_MARK, "")
            one_group = pc.match_substring_regex(core, cells._ONE_GROUP).fill_null(False)
            still |= one_group.to_numpy(zero_copy_only=False)
        read = index[~still]
        numbers[read], bad[read], regrouped[read] = more[~still], False, True
    return numbers, bad, regrouped


def read_text_numbers(values: pa.Array, fmt: NumberFormat):
    """`read_numbers` of an Arrow text column: every cell cleaned, then read."""
    return read_number_texts(cells.clean_array(values), fmt)
