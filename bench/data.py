"""Deterministic benchmark tables: numbers, categories, a date, gaps; a binary text target."""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "churned"


def make_table(n_rows: int, seed: int = 20240601) -> pd.DataFrame:
    """A churn-like table whose label depends on every feature kind; ~2-5% cells missing."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(
        np.array(["basic", "plus", "premium"], dtype=object), n_rows, p=[0.5, 0.3, 0.2]
    )
    region = rng.choice(
        np.array(["north", "south", "east", "west", "central"], dtype=object), n_rows
    )
    channel = rng.choice(np.array([f"ch{i:02d}" for i in range(40)], dtype=object), n_rows)
    tenure = rng.integers(1, 72, n_rows)
    monthly = np.round(rng.normal(60, 20, n_rows).clip(10, 150), 2)
    tickets = rng.poisson(1.5, n_rows)
    usage = np.round(rng.gamma(2.0, 30.0, n_rows), 3)
    score = np.round(rng.uniform(0, 1, n_rows), 4)
    days = rng.integers(0, 1500, n_rows)
    signup = (np.datetime64("2020-01-01") + days.astype("timedelta64[D]")).astype(str)
    logit = (
        -1.0
        + 0.9 * (plan == "basic")
        - 0.6 * (plan == "premium")
        + 0.5 * (region == "south")
        - 0.04 * tenure
        + 0.02 * (monthly - 60)
        + 0.45 * tickets
        + 0.8 * (score - 0.5)
        + 0.002 * (days - 750)
        + rng.normal(0, 0.5, n_rows)
    )
    churned = np.where(rng.random(n_rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "plan": plan,
            "region": region,
            "channel": channel,
            "tenure_months": tenure.astype("float64"),
            "monthly_charges": monthly,
            "support_tickets": tickets.astype("float64"),
            "usage_gb": usage,
            "score": score,
            "signup_date": signup.astype(object),
            TARGET: churned,
        }
    )
    # Gaps: empty cells in numbers and categories (both read as missing by Sluice and pandas).
    frame.loc[rng.random(n_rows) < 0.05, "monthly_charges"] = np.nan
    frame.loc[rng.random(n_rows) < 0.02, "usage_gb"] = np.nan
    frame.loc[rng.random(n_rows) < 0.03, "region"] = None
    frame.loc[rng.random(n_rows) < 0.02, "channel"] = None
    return frame


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV with a header; missing cells are empty; integral floats written as integers."""
    out = frame.copy()
    for name in ("tenure_months", "support_tickets"):
        out[name] = out[name].astype("Int64")
    return out.to_csv(index=False).encode("utf-8")


def query_csv(n_rows: int, seed: int = 7) -> bytes:
    """Rows to score in prod: the same columns without the target, from another seed."""
    return to_csv_bytes(make_table(n_rows, seed).drop(columns=[TARGET]))


def train_csv(n_rows: int, seed: int = 20240601) -> bytes:
    """Rows to train on in dev."""
    return to_csv_bytes(make_table(n_rows, seed))
