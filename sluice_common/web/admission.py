"""Admission control: a bounded number of heavy requests run at once per service.

Heavy means a dev training, or parsing and scoring a prod upload (or a label file) whose
estimated work is large: its size above HEAVY_PROD_MB, or its cells, counted cheaply from
the bytes that arrived (`work_cells`: rows x columns, and COLUMN_CELLS more per column),
above HEAVY_PROD_CELLS. Each service has
HEAVY_SLOTS slots shared by all its worker processes (one lock file per slot, held with
flock while the request runs, released by the kernel if the worker dies). A heavy request
that finds every slot busy waits up to ADMISSION_WAIT_SECONDS; at most ADMISSION_QUEUE wait
per worker process, so waiting requests never take every thread and /health and small prod
requests stay fast. The rest get 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time

from sluice_common import error_codes
from sluice_common.errors import ApiError

POLL_SECONDS = 0.05


class Admission:
    """Slots for heavy requests, shared across the worker processes of one service."""

    def __init__(self, lock_dir: str, slots: int, queue: int, wait_seconds: float):
        self.lock_dir = lock_dir
        self.slots = max(1, slots)
        self.queue = max(0, queue)
        self.wait_seconds = wait_seconds
        self._waiting = 0
        self._guard = threading.Lock()
        os.makedirs(lock_dir, exist_ok=True)

    def _try_slot(self):
        """An open, locked slot file, or None when every slot is taken."""
        for index in range(self.slots):
            handle = open(os.path.join(self.lock_dir, f"slot-{index}.lock"), "a+")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return handle
        return None

    def _busy(self, what: str) -> ApiError:
        retry = max(1, round(self.wait_seconds or 5))
        return ApiError(
            error_codes.BUSY,
            f"The service is running {self.slots} heavy request(s) ({what}) and its queue is "
            f"full; try again in about {retry} s.",
            retry_after=retry,
        )

    @contextlib.contextmanager
    def admit(self, what: str):
        """Run the block in a slot; ApiError 503 `busy` when none frees up in time."""
        handle = self._try_slot()
        if handle is None:
            with self._guard:
                if self._waiting >= self.queue:
                    raise self._busy(what)
                self._waiting += 1
            try:
                deadline = time.monotonic() + self.wait_seconds
                while handle is None and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                    handle = self._try_slot()
            finally:
                with self._guard:
                    self._waiting -= 1
            if handle is None:
                raise self._busy(what)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    @contextlib.contextmanager
    def hold(self, stop):
        """Run the block in a slot, waiting as long as it takes (a queued job) unless `stop()`
        says to give up; `stop` raises to give up (a cancelled job)."""
        handle = self._try_slot()
        while handle is None:
            stop()
            time.sleep(POLL_SECONDS * 4)
            handle = self._try_slot()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


# What a prod request costs is mostly per column and per cell, not per byte: pandas parsing
# and the Arrow conversion take ~130-200 us per column and ~0.1-0.4 us per cell (a 12-row
# upload of 20,000 columns, 0.6 MB, takes ~3-4 s; 45,000 rows of 10 columns, 1 MB, ~60 ms).
# So a column counts as this many cells besides its own.
COLUMN_CELLS = 1_000
# Lines of a CSV read for its header: at most the leading `#` lines parsing skips (1,000),
# an Excel `sep=` line, blank lines among them, then the header. A header further down comes
# after so many lines that the upload counts as heavy by its lines alone.
HEADER_LINES = 1_002
_DELIMITERS = (b",", b";", b"\t", b"|")
# Stripped from a line's start to see whether it is a comment: blanks, the NUL high bytes of
# UTF-16 and UTF-32 text, byte order marks.
_LEADING = b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"
# The fewest bytes an Arrow stream spends on a column (its schema field and buffers: ~40
# measured) and on a text cell (its 4-byte offset): a smaller body is known to be light.
ARROW_COLUMN_BYTES = 32
ARROW_CELL_BYTES = 4


def work_cells(rows: int, columns: int) -> int:
    """The estimated work of parsing and scoring a table, in cells: each of its rows x
    columns, and COLUMN_CELLS more per column."""
    return columns * (rows + COLUMN_CELLS)


def csv_shape(raw: bytes) -> tuple[int, int]:
    """Lines, and fields of the header (the widest line up to it), of a CSV's bytes, counted
    without decoding or parsing (in UTF-16 too: the delimiters' and line ends' bytes are
    there). An overestimate at worst: a quoted delimiter or line end counts."""
    newline = b"\n" if b"\n" in raw else b"\r"  # classic Mac files end lines with CR only
    if newline not in raw:
        # One line, or line ends in bytes that are not ASCII's: every byte may be a cell.
        return 1, max(1, len(raw))
    lines = raw.count(newline) + (0 if raw.endswith(newline) else 1)
    widest, start = 0, 0
    for _ in range(HEADER_LINES):
        end = raw.find(newline, start)
        stop = len(raw) if end < 0 else end
        for delimiter in _DELIMITERS:
            widest = max(widest, raw.count(delimiter, start, stop))
        head = raw[start : min(stop, start + 64)].replace(b"\x00", b"").lstrip(_LEADING)
        if end < 0 or (head and head[:1] != b"#" and head[:4].lower() != b"sep="):
            break  # the header
        start = end + 1
    return lines, widest + 1


def arrow_shape(raw: bytes) -> tuple[int, int]:
    """Rows and columns of an Arrow IPC stream, from its schema and record batch headers
    (no buffer decoded); (0, 0) when it is not one (reading it answers the 400)."""
    # Here, not at the top: the slot code needs none of pyarrow.
    import pyarrow as pa

    from sluice_common.tables.transport import batch_facts

    rows, columns = 0, 0
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(raw))
        for message in reader:
            if message.type == "schema":
                columns = len(pa.ipc.read_schema(message))
            elif message.type == "record batch":
                rows += batch_facts(message.metadata.to_pybytes())[0]
    except (pa.ArrowInvalid, OSError, ValueError, IndexError):
        return 0, 0
    return rows, columns


def work_above(raw: bytes, arrow: bool, limit: int) -> bool:
    """Whether `work_cells` of an upload's table (a CSV, or an Arrow stream from preprocess)
    is above `limit`."""
    if arrow:
        # At most len/4 cells and len/32 columns: a small body needs no reading.
        most = len(raw) / ARROW_CELL_BYTES + COLUMN_CELLS * len(raw) / ARROW_COLUMN_BYTES
        return most > limit and work_cells(*arrow_shape(raw)) > limit
    return work_cells(*csv_shape(raw)) > limit
