"""Peak memory of parsing an upload, per byte of CSV (sets PARSE_MEMORY_PER_BYTE).

    .venv/bin/python -m bench.parse_memory [--mb 50] [--columns 10 1000]

Each size runs in a fresh process (peak RSS only grows), on short numeric cells: the most
cells per byte, the worst case for the ratio.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


def measure(columns: int, mb: float) -> None:
    import numpy as np

    from sluice_common.tables.parsing import parse_csv
    from sluice_common.tables.transport import table_to_arrow

    rng = np.random.default_rng(0)
    row = ",".join(str(x) for x in rng.integers(0, 10, columns)) + "\n"
    data = (
        ",".join(f"c{i}" for i in range(columns)) + "\n" + row * int(mb * 1e6 / len(row))
    ).encode()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    payload = table_to_arrow(parse_csv(data).table, {})
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    seconds = time.perf_counter() - started
    print(
        f"{columns:>6} columns, {len(data) / 1e6:.0f} MB: parse + Arrow {seconds:.1f} s, "
        f"peak +{growth / 2**20:,.0f} MiB = {growth / len(data):.1f}x the CSV "
        f"(Arrow body {len(payload) / len(data):.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--columns", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.mb)
        return
    for columns in args.columns:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.parse_memory",
                "--one",
                str(columns),
                "--mb",
                str(args.mb),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
