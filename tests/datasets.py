"""Small datasets for tests: generated here or bundled with scikit-learn (no downloads)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, load_iris

from scripts.make_examples import make_churn


def to_csv(frame: pd.DataFrame, **kwargs) -> bytes:
    """A DataFrame as CSV bytes (UTF-8 unless told otherwise)."""
    encoding = kwargs.pop("encoding", "utf-8")
    return frame.to_csv(index=False, **kwargs).encode(encoding)


def churn(rows: int = 600, seed: int = 7) -> pd.DataFrame:
    """Binary classification with text labels, categories, dates, ids and gaps."""
    return make_churn(rows, seed)


def iris() -> pd.DataFrame:
    """Multiclass classification with text labels."""
    data = load_iris(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = np.asarray(data.target_names)[data.target]
    return frame


def diabetes() -> pd.DataFrame:
    """Regression with a numeric target named `target`."""
    return load_diabetes(as_frame=True).frame.copy()


def shifted(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same schema with rows resampled: a different training set for a second version."""
    return frame.sample(frac=1.0, replace=True, random_state=seed).reset_index(drop=True)


COLORS = ["red", "green", "blue", "black"]


def shop(rows: int, seed: int) -> pd.DataFrame:
    """Two numeric columns and a categorical one; the class depends on all three. At 600 rows
    XGBoost is right on it but overconfident: a few confident mistakes hide its skill from
    the log loss."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(50, 10, rows).round(2),
            "weight": rng.gamma(2.0, 3.0, rows).round(3),
            "color": rng.choice(COLORS, rows, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    signal = (frame["size"] - 50) / 10 + (frame["color"] == "red") * 1.0 - frame["weight"] / 6
    frame["bought"] = np.where(signal + rng.normal(0, 0.7, rows) > 0, "yes", "no")
    return frame
