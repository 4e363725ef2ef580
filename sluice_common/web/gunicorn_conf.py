"""gunicorn settings both services run with (`gunicorn -c python:sluice_common.web.gunicorn_conf`).

Bounded request parsing: gunicorn's own limits on the request line and headers, so a long
line costs a quick 4xx instead of a rescan per chunk (unlimited, 8 MiB of request line took
~9 s of CPU). gunicorn answers those before Flask sees the request; its error pages are HTML,
so they are rewritten here in Sluice's one JSON error shape.

Prometheus multiprocess mode: the master gives its workers one directory for their metric
files (PROMETHEUS_MULTIPROC_DIR), empty at start, before it forks them; the workers import
the app (and prometheus_client) after the fork, so their values go to files there and
/metrics sums them (sluice_common/web/metrics.py).
"""

from __future__ import annotations

import gc
import glob
import json
import os
import re
import secrets
import shutil
import stat
import tempfile

from gunicorn import util

from sluice_common import error_codes, settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Which PROMETHEUS_MULTIPROC_DIR a Sluice master made: a master re-executed by SIGUSR2 inherits
# the variable, and must not take its parent's directory for the operator's.
MADE_ENV = "SLUICE_PROMETHEUS_DIR_MADE"
_made_dir: str | None = None  # the directory this master made, removed on exit

# Requests are read whole by each worker's event loop before a thread runs them, so slow
# clients cost a socket, not a thread (sluice_common/web/body_worker.py).
worker_class = "sluice_common.web.body_worker.BodyBufferingWorker"

# The longest request line gunicorn allows; a query string needs far less (model names are
# at most 64 characters, targets 512).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# Files the services create (their state, databases, model copies) are for this account only.
# gunicorn applies its setting to its temporary and socket files only; when_ready makes it the
# master's mask, which the workers it forks inherit (`--umask` in GUNICORN_CMD_ARGS changes it).
umask = 0o077


def _error_body(status: int, mesg: str) -> tuple[int, str, dict]:
    """Status, reason and our error body for a request gunicorn refused to parse."""
    if mesg.startswith("Request Line is too large"):
        return (
            error_codes.REQUEST_LINE_TOO_LONG.status,
            "URI Too Long",
            {
                "code": error_codes.REQUEST_LINE_TOO_LONG.code,
                "message": f"The request line is too long ({mesg}); send at most "
                f"{limit_request_line} bytes of URL and query string.",
            },
        )
    if status == 431:
        return (
            error_codes.HEADERS_TOO_LARGE.status,
            "Request Header Fields Too Large",
            {
                "code": error_codes.HEADERS_TOO_LARGE.code,
                "message": f"The request headers are too large ({mesg[:200]}); send at most "
                f"{limit_request_fields} headers of at most {limit_request_field_size} bytes.",
            },
        )
    return (
        status,
        "Bad Request" if status == 400 else "Error",
        {
            "code": (error_codes.BAD_REQUEST if status < 500 else error_codes.INTERNAL_ERROR).code,
            "message": f"The HTTP request could not be parsed: {mesg[:200]}.",
        },
    )


def write_json_error(sock, status_int, reason, mesg) -> None:
    """gunicorn's util.write_error, answering JSON instead of HTML."""
    status, reason, error = _error_body(int(status_int), str(mesg))
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = write_json_error


def _own_dir(path: str) -> bool:
    """Whether `path` is a real directory (no symlink) of this user: one a master of ours made."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def _wipe_metric_files(path: str) -> None:
    """Delete the files prometheus_client writes (*.db), and nothing else."""
    for name in glob.glob(os.path.join(glob.escape(path), "*.db")):
        os.remove(name)


def _pid_alive(pid: int) -> bool:
    """Whether a process of this pid runs (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiproc_dir_name(server) -> str:
    """`sluice-prometheus-<service>-<port>-<master pid>`: unique per master on one machine, and
    readable in a listing of the temporary directory."""
    service = str(server.proc_name or "gunicorn").split(":")[0]  # "trainer:create_app()"
    port = str((server.cfg.bind or ["unknown"])[0]).rsplit(":", 1)[-1]
    label = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part)[:40] for part in (service, port))
    return f"sluice-prometheus-{label}-{os.getpid()}"


def _remove_stale_dirs(base: str) -> None:
    """Remove what Sluice masters that were killed (no on_exit) left: their directories are
    named by their pid, and tests start many masters on ever new ports."""
    for path in glob.glob(os.path.join(glob.escape(base), "sluice-prometheus-*-*")):
        pid = path.rsplit("-", 1)[1]
        if pid.isdigit() and not _pid_alive(int(pid)) and _own_dir(path):
            shutil.rmtree(path, ignore_errors=True)


def on_starting(server) -> None:
    """Set PROMETHEUS_MULTIPROC_DIR for the workers, its metric files wiped, and this start's
    id (jobs of an earlier start that never finished are marked failed: trainer/jobs/runner.py)."""
    global _made_dir
    os.environ["SLUICE_BOOT_ID"] = secrets.token_hex(8)
    path = settings.value(MULTIPROC_ENV)
    if path and path != settings.value(MADE_ENV):
        # The operator's directory: other files in it are not ours to delete.
        os.makedirs(path, exist_ok=True)
        _wipe_metric_files(path)
        server.log.info("Prometheus metrics of the workers in %s (%s)", path, MULTIPROC_ENV)
        return
    base = tempfile.gettempdir()
    name = multiproc_dir_name(server)
    _remove_stale_dirs(base)
    path = os.path.join(base, name)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if _own_dir(path):  # a dead master of the same pid left it
            _wipe_metric_files(path)
        else:  # someone else's name squatting: a fresh name of our own
            path = tempfile.mkdtemp(prefix=name + "-tmp")  # never all digits: not a pid
    _made_dir = path
    os.environ[MULTIPROC_ENV] = os.environ[MADE_ENV] = path
    server.log.info("Prometheus metrics of the workers in %s", path)


def when_ready(server) -> None:
    """Before any worker is forked: the process's mask is the `umask` setting."""
    os.umask(server.cfg.umask)


def post_worker_init(worker) -> None:
    """After the app is loaded (and the trainer warmed up): what the worker holds now (modules,
    the app, ~260,000 objects in the trainer) goes to the collector's permanent generation.
    A full collection scanned all of it: ~0.3-1 s with the worker stopped, every few thousand
    requests; now it scans what came later (0.25 ms). Objects freed by their reference counts
    go as before. No collection first: the warm-up leaves ~60 unreachable objects, and one
    costs 0.2-0.5 s of the start."""
    gc.freeze()


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges; its counts stay in the sums."""
    if settings.value(MULTIPROC_ENV):
        from prometheus_client import multiprocess  # only after on_starting set the variable

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory this master made."""
    if _made_dir:
        shutil.rmtree(_made_dir, ignore_errors=True)
