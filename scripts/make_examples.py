"""Write the example CSVs in examples/ (deterministic; run again to regenerate).

churn_train.csv: a customer table with numbers, categories, dates, an id column and gaps;
churn_query.csv: new customers without the target, for the prod phase.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd


def make_churn(n_rows: int, seed: int) -> pd.DataFrame:
    """A synthetic churn table whose label depends on several feature kinds."""
    rng = np.random.default_rng(seed)
    plans = rng.choice(["basic", "plus", "premium"], n_rows, p=[0.5, 0.3, 0.2])
    regions = rng.choice(["north", "south", "east", "west", "central"], n_rows)
    tenure = rng.integers(1, 72, n_rows)
    monthly = np.round(rng.normal(60, 20, n_rows).clip(10, 150), 2)
    tickets = rng.poisson(1.5, n_rows)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n_rows), "D")
    logit = (
        -1.0
        + 0.9 * (plans == "basic")
        - 0.6 * (plans == "premium")
        + 0.5 * (regions == "south")
        - 0.04 * tenure
        + 0.02 * (monthly - 60)
        + 0.45 * tickets
        + rng.normal(0, 0.5, n_rows)
    )
    churned = np.where(rng.random(n_rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{100000 + i}" for i in range(n_rows)],
            "plan": plans,
            "region": regions,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "support_tickets": tickets,
            "signup_date": signup.strftime("%Y-%m-%d"),
            "churned": churned,
        }
    )
    gaps = rng.random(n_rows) < 0.05
    frame.loc[gaps, "monthly_charges"] = np.nan
    frame.loc[rng.random(n_rows) < 0.03, "region"] = None
    return frame


def main() -> None:
    """Write churn_train.csv and churn_query.csv."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "examples"))
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    train = make_churn(args.rows, seed=7)
    query = make_churn(25, seed=8).drop(columns=["churned"])
    train.to_csv(os.path.join(args.out, "churn_train.csv"), index=False)
    query.to_csv(os.path.join(args.out, "churn_query.csv"), index=False)


if __name__ == "__main__":
    main()
