"""Model quality on real tables with name-like and free-text columns, against plain XGBoost.

    .venv/bin/python -m bench.quality              # every dataset, 5 folds each

Each dataset ships inside an installed package (no downloads). Sluice trains on the CSV as a
user would upload it; plain XGBoost (default settings) trains on the very same rows, once on
the numeric columns only and once with every text column as a pandas category
(`enable_categorical=True`), and all three are scored on the same held-out rows. The folds
shift Sluice's content-hash split so every row is held out once.
The datasets and the comparison are testkit/quality.py's (the tests run them too).
"""

from __future__ import annotations

import argparse

from testkit.quality import DATASETS, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    print("| dataset | rows | metric | Sluice | XGBoost, numeric columns | XGBoost, text as "
          "categories | Sluice dropped |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for dataset in DATASETS:
        result = evaluate(dataset, args.folds)
        print(
            f"| {result['dataset']} | {result['rows']} | {result['metric']} | "
            f"{result['sluice']:.4g} | {result['xgb_numeric']:.4g} | "
            f"{result['xgb_categorical']:.4g} | {'; '.join(result['dropped']) or '-'} |"
        )


if __name__ == "__main__":
    main()
