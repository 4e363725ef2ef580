"""Send a CSV (or a reference to data) to the Sluice stack and print the JSON answer.

    python3 client/request.py FILE PHASE [--target COL] [--model NAME] [--url URL] ...
    python3 client/request.py PHASE --data-uri URI [--output-uri URI] [--key COL] [--wait]

PHASE is dev (train, log, register, maybe promote) or prod (predict with the champion).
FILE is uploaded; --data-uri instead names data the server reads itself (s3://bucket/prefix/,
or a path or glob under its SLUICE_DATA_ROOT), and then no file is sent. A data_uri request,
a large upload or --async is answered 202 with a job: printed as is, or with --wait followed
(GET /jobs/<id> about every second, progress on one stderr line) until it finishes, and then
its answer or its error is printed. Ctrl-C while waiting leaves the job running and says how
to follow it.
Exits 0 on success, 1 on an error answer (or a failed or cancelled job), 2 when the stack
cannot be reached (or the arguments are wrong), 130 on Ctrl-C.
SLUICE_API_TOKEN, when set, is sent as a bearer token; SLUICE_URL overrides the default URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from email.message import Message
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8050/analyze"
FINISHED = {"succeeded", "failed", "cancelled"}
POLL_TIMEOUT = 60.0  # at most, for one GET /jobs/<id>; the wait lasts as long as the job


class Unreachable(Exception):
    """The stack did not answer (refused, unresolvable, or silent past the timeout)."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments: the seed's positional FILE PHASE plus options."""
    parser = argparse.ArgumentParser(description="Post a CSV to Sluice and print the answer.")
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="the CSV file to send (not with --data-uri)"
    )
    parser.add_argument("phase", choices=["dev", "prod"], help="dev trains, prod predicts")
    parser.add_argument("--target", help="target column (dev; default: 'target', else the last)")
    parser.add_argument("--model", help="registered model name (default: the server's default)")
    parser.add_argument("--task", choices=["auto", "classification", "regression"])
    parser.add_argument("--promote", choices=["auto", "always", "never"])
    parser.add_argument("--proba", action="store_true", help="prod: class probabilities too")
    parser.add_argument(
        "--data-uri",
        metavar="URI",
        help="data the server reads instead of FILE: s3://bucket/prefix/, or a path or glob "
        "under SLUICE_DATA_ROOT (always answered with a job)",
    )
    parser.add_argument(
        "--output-uri",
        metavar="URI",
        help="prod with --data-uri: the .parquet or .csv file the predictions are written to",
    )
    parser.add_argument("--key", metavar="COL", help="prod: an input column copied to the output")
    parser.add_argument(
        "--async",
        dest="run_async",
        action="store_true",
        help="run as a job even for a small upload",
    )
    parser.add_argument(
        "--wait", action="store_true", help="when answered with a job, follow it to its end"
    )
    parser.add_argument(
        "--url", default=os.environ.get("SLUICE_URL", DEFAULT_URL), help="endpoint to post to"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds to wait for the answer (with --wait, for each look at the job: at most 60)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="with --wait: seconds between looks at the job (default 1)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments; FILE and --data-uri are checked here (exactly one of them)."""
    parser = build_parser()
    # Intermixed, so that `FILE --target t dev` still works with FILE optional.
    args = parser.parse_intermixed_args(argv)
    if args.file is None and args.data_uri is None:
        parser.error("FILE is needed unless --data-uri is given")
    if args.file is not None and args.data_uri is not None:
        parser.error("give FILE or --data-uri, not both")
    return args


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


def query(args: argparse.Namespace) -> dict[str, str]:
    """The request's query parameters, only those the user gave."""
    params = {"phase": args.phase}
    for key in ("target", "model", "task", "promote", "data_uri", "output_uri", "key"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.proba:
        params["proba"] = "true"
    if args.run_async:
        params["async"] = "true"
    return params


def exchange(
    request: urllib.request.Request, timeout: float, where: str
) -> tuple[int, bytes, Message]:
    """Status, body and headers of the answer, error statuses included; Unreachable if none."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:  # an answer, with an error status
        return err.code, err.read(), err.headers
    except TimeoutError as err:
        raise Unreachable(f"no answer from {where} within {timeout:g} s") from err
    except (urllib.error.URLError, ConnectionError) as err:
        raise Unreachable(
            f"cannot reach Sluice at {where} ({getattr(err, 'reason', err)}). "
            "Is the stack running? Start it with ./start.sh"
        ) from err


def decode(status: int, payload: bytes) -> Any:
    """The JSON answer, or None after saying on stderr that it was not JSON."""
    try:
        return json.loads(payload)
    except ValueError:
        print(f"request.py: HTTP {status}, not JSON:", file=sys.stderr)
        print(payload[:2000].decode(errors="replace"), file=sys.stderr)
        return None


def show(document: Any) -> None:
    """Print a JSON document on stdout the way every answer is printed."""
    print(json.dumps(document, indent=2, ensure_ascii=False))


def describe(job: dict[str, Any]) -> str:
    """One line saying where a job is: state, stage, rows read, boosting rounds."""
    parts = [f"job {job.get('job_id', '?')} {job.get('state', '?')}"]
    progress = job.get("progress") or {}
    if progress.get("stage"):
        parts.append(str(progress["stage"]))
    if progress.get("rows_read"):
        parts.append(f"{progress['rows_read']:,} rows read")
    done, most = progress.get("rounds_done"), progress.get("rounds_max")
    if done or most:
        parts.append(f"round {done or 0}/{most or '?'}")
    return ", ".join(parts)


class ProgressLine:
    """Progress on one stderr line: rewritten with \\r on a tty, else one line per change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def update(self, text: str) -> None:
        """Show text if it differs from what is shown."""
        if text == self.last:
            return
        if self.tty:
            padding = " " * max(0, len(self.last) - len(text))
            self.stream.write(f"\r{text}{padding}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()
        self.last = text

    def close(self) -> None:
        """End the rewritten line so that what follows starts on a fresh one."""
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
        self.last = ""


def job_address(url: str, location: str) -> str:
    """The job's URL: the Location path on the scheme, host and port of --url."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urljoin(f"{parts.scheme}://{parts.netloc}/", location)


def follow_hint(job_url: str) -> str:
    """How to look at (and cancel) a job from a shell."""
    auth = ""
    if os.environ.get("SLUICE_API_TOKEN"):  # named, never printed
        auth = ' -H "Authorization: Bearer $SLUICE_API_TOKEN"'
    return f"follow it with: curl{auth} {job_url}   (cancel: curl{auth} -X DELETE {job_url})"


def wait(
    job: dict[str, Any], job_url: str, headers: dict[str, str], interval: float, timeout: float
) -> int:
    """Poll the job until it finishes; print its answer (0) or its error (1)."""
    line = ProgressLine(sys.stderr)
    line.update(describe(job))
    try:
        while job.get("state") not in FINISHED:
            time.sleep(interval)
            request = urllib.request.Request(job_url, headers=headers, method="GET")
            try:
                status, payload, _ = exchange(request, timeout, job_url)
            except Unreachable as err:
                line.close()
                print(f"request.py: {err}", file=sys.stderr)
                hint = follow_hint(job_url)
                print(f"request.py: job {job.get('job_id')}: {hint}", file=sys.stderr)
                return 2
            polled = decode(status, payload)
            if status != 200 or not isinstance(polled, dict):
                line.close()
                if polled is not None:
                    show(polled)
                return 1
            job = polled
            line.update(describe(job))
    except KeyboardInterrupt:
        line.close()
        print(
            f"request.py: stopped waiting; job {job.get('job_id')} goes on. {follow_hint(job_url)}",
            file=sys.stderr,
        )
        return 130
    line.close()
    if job["state"] == "succeeded":
        show(job.get("answer", job))
        return 0
    show({"error": job.get("error") or {"code": job["state"], "message": f"job {job['state']}"}})
    return 1


def main(argv: list[str] | None = None) -> int:
    """Post the file (or the data reference) and print the answer; the exit code says how."""
    args = parse_args(argv)
    auth: dict[str, str] = {}
    if token := os.environ.get("SLUICE_API_TOKEN"):
        auth["Authorization"] = f"Bearer {token}"
    headers = dict(auth)
    body = None  # with --data-uri the POST has no body: the server reads the data itself
    if args.file is not None:
        try:
            with open(args.file, "rb") as handle:
                content = handle.read()
        except OSError as err:
            print(f"request.py: cannot read {args.file}: {err.strerror}", file=sys.stderr)
            return 2
        body, headers["Content-Type"] = multipart("data_file", args.file, content)
    url = f"{args.url}?{urllib.parse.urlencode(query(args))}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        status, payload, answer_headers = exchange(request, args.timeout, args.url)
    except Unreachable as err:
        print(f"request.py: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("request.py: interrupted", file=sys.stderr)
        return 130
    answer = decode(status, payload)
    if answer is None:
        return 1
    if status != 202 or not isinstance(answer, dict) or "job_id" not in answer:
        show(answer)
        return 0 if 200 <= status < 300 else 1
    location = answer_headers.get("Location") or answer.get("location")
    location = location or f"/jobs/{answer['job_id']}"
    job_url = job_address(args.url, location)
    if not args.wait:
        show(answer)
        print(f"request.py: job {answer['job_id']}: {follow_hint(job_url)}", file=sys.stderr)
        return 0
    return wait(answer, job_url, auth, args.poll_interval, min(args.timeout, POLL_TIMEOUT))


if __name__ == "__main__":
    sys.exit(main())
