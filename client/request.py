"""Send a CSV to the Sluice stack and print the JSON answer (standard library only).

    python3 client/request.py FILE PHASE [--target COL] [--model NAME] [--url URL] ...

PHASE is dev (train, log, register, maybe promote) or prod (predict with the champion).
Exits 0 on success, 1 on an error answer, 2 when the stack cannot be reached.
SLUICE_API_TOKEN, when set, is sent as a bearer token; SLUICE_URL overrides the default URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

DEFAULT_URL = "http://127.0.0.1:8050/analyze"


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments: the seed's positional FILE PHASE plus options."""
    parser = argparse.ArgumentParser(description="Post a CSV to Sluice and print the answer.")
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


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file field, and its content type."""
    boundary = uuid.uuid4().hex
    safe_name = os.path.basename(filename).replace('"', "_")
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="{field}"; filename="{safe_name}"\r\n'.encode(),
            b"Content-Type: text/csv\r\n\r\n",
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"


def main(argv: list[str] | None = None) -> int:
    """Post the file and print the answer; the exit code says how it went."""
    args = build_parser().parse_args(argv)
    params = {"phase": args.phase}
    for key in ("target", "model", "task", "promote"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.proba:
        params["proba"] = "true"
    try:
        with open(args.file, "rb") as handle:
            content = handle.read()
    except OSError as err:
        print(f"request.py: cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 2
    body, content_type = multipart("data_file", args.file, content)
    headers = {"Content-Type": content_type}
    if token := os.environ.get("SLUICE_API_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    url = f"{args.url}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as err:  # an answer, with an error status
        status, payload = err.code, err.read()
    except TimeoutError:
        print(f"request.py: no answer from {args.url} within {args.timeout} s", file=sys.stderr)
        return 2
    except (urllib.error.URLError, ConnectionError) as err:
        print(
            f"request.py: cannot reach Sluice at {args.url} ({getattr(err, 'reason', err)}). "
            "Is the stack running? Start it with ./start.sh",
            file=sys.stderr,
        )
        return 2
    try:
        answer = json.loads(payload)
    except ValueError:
        print(f"request.py: HTTP {status}, not JSON:", file=sys.stderr)
        print(payload[:2000].decode(errors="replace"), file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
