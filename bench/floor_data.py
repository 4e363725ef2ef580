"""The tables of the speed-floor bench (issue #24's shape): deterministic, generated here.

- `standard`: 16 float columns, 4 text categories, 1 integer, a binary text target; the label
  depends on most columns with noise, so early stopping keeps a few hundred trees;
- `wide`: 200 float columns and the same categories and target;
- `text_heavy`: 4 floats, 12 text categories (up to 500 levels) and 2 free-text columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "label"
SHAPES = ("standard", "wide", "text_heavy")


def _categories(rng, n_rows: int, count: int, levels: int) -> dict[str, np.ndarray]:
    return {
        f"cat_{i:02d}": rng.choice(
            np.array([f"level_{i}_{j:03d}" for j in range(levels)], dtype=object), n_rows
        )
        for i in range(count)
    }


def make_table(n_rows: int, shape: str = "standard", seed: int = 20261207) -> pd.DataFrame:
    """A table of `shape` (one of SHAPES) with `n_rows` rows and the target column."""
    rng = np.random.default_rng(seed)
    n_floats = {"standard": 16, "wide": 200, "text_heavy": 4}[shape]
    floats = rng.normal(0.0, 1.0, (n_rows, n_floats))
    columns: dict[str, np.ndarray] = {
        f"x_{i:03d}": np.round(floats[:, i] * 10 ** (i % 4), 4) for i in range(n_floats)
    }
    n_cats, levels = (12, 500) if shape == "text_heavy" else (4, 12)
    columns.update(_categories(rng, n_rows, n_cats, levels))
    count = rng.poisson(3.0, n_rows)
    columns["count"] = count
    weights = rng.normal(0.0, 1.0, min(n_floats, 16))
    logit = floats[:, : len(weights)] @ weights * 0.6
    logit += np.sin(floats[:, 0] * 2) + floats[:, 1] * floats[:, 2 % n_floats]
    logit += np.abs(floats[:, 3 % n_floats]) * np.cos(floats[:, 4 % n_floats] * 3)
    logit += np.maximum(floats[:, 5 % n_floats], floats[:, 6 % n_floats]) ** 2 * 0.5
    logit += 0.3 * (count - 3)
    cat_effect = {f"level_0_{j:03d}": rng.normal(0, 0.8) for j in range(levels)}
    logit += np.array([cat_effect[v] for v in columns["cat_00"]])
    logit += rng.normal(0.0, 1.5, n_rows)
    if shape == "text_heavy":
        words = np.array("alpha beta gamma delta epsilon zeta eta theta iota kappa".split())
        for name in ("comment", "note"):
            picks = rng.integers(0, len(words), (n_rows, 6))
            columns[name] = np.array([" ".join(words[p]) + f" #{k}" for k, p in enumerate(picks)])
    columns[TARGET] = np.where(rng.random(n_rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(columns)


def train_csv(n_rows: int, shape: str = "standard", seed: int = 20261207) -> bytes:
    """Rows to train on, as UTF-8 CSV bytes."""
    return make_table(n_rows, shape, seed).to_csv(index=False).encode("utf-8")


def query_csv(n_rows: int, shape: str = "standard", seed: int = 7) -> bytes:
    """Rows to score: the same columns without the target, from another seed."""
    frame = make_table(n_rows, shape, seed).drop(columns=[TARGET])
    return frame.to_csv(index=False).encode("utf-8")
