"""Two public entries (preprocess) against one trainer: single-row prod latency, interleaved.

    .venv/bin/python -m bench.entry_ab BEFORE_URL AFTER_URL [--model churn] [--rounds 2400]

Run a second preprocess from another checkout (e.g. `git archive <commit> | tar -x -C DIR`,
then gunicorn with the same flags as scripts/local.sh, TRAINER_URL pointing at the running
trainer and SLUICE_INTERNAL_TOKEN_FILE at its token) beside the stack's own. Each round sends
one row of examples/churn_query.csv to both, in alternating order, on kept-alive connections;
the first 200 rounds warm up. Both share the trainer and the machine's load of the moment, so
their difference is the entries' own.
"""

from __future__ import annotations

import argparse
import http.client
import os
import time
import uuid
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM_UP = 200


def _body() -> tuple[bytes, dict]:
    with open(os.path.join(ROOT, "examples", "churn_query.csv"), "rb") as handle:
        header, row = handle.read().split(b"\n")[:2]
    boundary = uuid.uuid4().hex
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="data_file"; filename="q.csv"'
        "\r\nContent-Type: text/csv\r\n\r\n"
    ).encode()
    body = part + header + b"\n" + row + b"\n" + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def measure(urls: dict[str, str], model: str, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per request of each entry, warm-up rounds left out."""
    body, headers = _body()
    conns = {}
    for name, url in urls.items():
        parts = urlsplit(url)
        conns[name] = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    times: dict[str, list[float]] = {name: [] for name in urls}
    order = list(urls)
    for i in range(rounds):
        for name in order if i % 2 else reversed(order):
            started = time.perf_counter()
            conns[name].request("POST", f"/analyze?phase=prod&model={model}", body, headers)
            answer = conns[name].getresponse()
            answer.read()
            if answer.status != 200:
                raise SystemExit(f"{name} answered {answer.status}")
            if i >= WARM_UP:
                times[name].append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--model", default="churn")
    parser.add_argument("--rounds", type=int, default=2400)
    args = parser.parse_args()
    times = measure({"before": args.before, "after": args.after}, args.model, args.rounds)
    for name, values in times.items():
        values.sort()
        p50, p90, p99 = (values[int(len(values) * q)] for q in (0.5, 0.9, 0.99))
        print(f"{name}: n {len(values)}  p50 {p50:.2f} ms  p90 {p90:.2f}  p99 {p99:.2f}")


if __name__ == "__main__":
    main()
