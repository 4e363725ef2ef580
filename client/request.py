"""Send a CSV to the Sluice stack and print the JSON answer.

    python client/request.py FILE PHASE [--target COL] [--model NAME] [--url URL] ...

PHASE is dev (train, log, register, maybe promote) or prod (predict with the champion).
Exits 0 on success, 1 on an error answer, 2 when the stack cannot be reached.
SLUICE_API_TOKEN, when set, is sent as a bearer token; SLUICE_URL overrides the default URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import requests

DEFAULT_URL = "http://127.0.0.1:8050/analyze"


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments: the seed's positional FILE PHASE plus options."""
    parser = argparse.ArgumentParser(
        description="Post a CSV to Sluice and print the answer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="the CSV file to send")
    parser.add_argument("phase", choices=["dev", "prod"], help="dev trains, prod predicts")
    parser.add_argument("--target", help="target column (dev; default: 'target', else the last)")
    parser.add_argument("--model", help="registered model name (default: the server's default)")
    parser.add_argument("--task", choices=["auto", "classification", "regression"])
    parser.add_argument("--promote", choices=["auto", "always", "never"])
    parser.add_argument("--proba", action="store_true", help="prod: class probabilities too")
    parser.add_argument(
        "--url", default=os.environ.get("SLUICE_URL", DEFAULT_URL), help="endpoint to post to"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Post the file and print the answer; the exit code says how it went."""
    args = build_parser().parse_args(argv)
    params = {"phase": args.phase}
    for key in ("target", "model", "task", "promote"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.proba:
        params["proba"] = "true"
    headers = {}
    if token := os.environ.get("SLUICE_API_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    try:
        with open(args.file, "rb") as handle:
            response = requests.post(
                args.url,
                params=params,
                files={"data_file": (os.path.basename(args.file), handle, "text/csv")},
                headers=headers,
                timeout=args.timeout,
            )
    except FileNotFoundError:
        print(f"request.py: no such file: {args.file}", file=sys.stderr)
        return 2
    except requests.ConnectionError:
        print(
            f"request.py: cannot reach Sluice at {args.url}. Is the stack running? "
            "Start it with ./start.sh",
            file=sys.stderr,
        )
        return 2
    except requests.Timeout:
        print(f"request.py: no answer from {args.url} within {args.timeout} s", file=sys.stderr)
        return 2
    try:
        answer = response.json()
    except ValueError:
        print(f"request.py: HTTP {response.status_code}, not JSON:", file=sys.stderr)
        print(response.text[:2000], file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
