"""The console's last prediction results: kept on disk so the paged table and the CSV download
need no second upload, in any gunicorn worker (a worker's memory is not shared).

A result is written once, when it is made, as a directory of four files: the answer without its
per-row lists (meta.json), one JSON line per row (rows.jsonl) with the byte offset of every page
of PAGE_SIZE rows (pages.idx), and the CSV download (predictions.csv). A page view reads its own
page's bytes only, and the download streams the file, whatever the result's size.

The directory is named by a hash of the browser's session id (its owner, to count a session's
results) and a MAC of the result's random id keyed by the session id: the id alone, leaked in a
link, opens nothing in another browser. Bounds: a result whose answer is above MAX_RESULT_BYTES
is not kept; each session keeps its MAX_PER_SESSION newest; all sessions together keep at most
MAX_RESULTS and MAX_BYTES, making room by dropping the oldest result of the session that holds
the most (so one browser cannot push out everyone else's); each result for MAX_AGE_SECONDS.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import hmac
import itertools
import math
import os
import re
import secrets
import shutil
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

MAX_RESULTS = 50
MAX_PER_SESSION = 5
MAX_BYTES = 256 * 2**20
MAX_RESULT_BYTES = 64 * 2**20  # one answer's JSON (~1M rows with two class probabilities)
MAX_AGE_SECONDS = 3600
PAGE_SIZE = 50
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
ENTRY = re.compile(r"^(?P<owner>[0-9a-f]{16})-[0-9a-f]{64}$")
PER_ROW = ("predictions", "probabilities", "flagged_rows")
# Text a spreadsheet would run as a formula when it starts a cell (OWASP's CSV injection list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
OFFSET = struct.Struct("<Q")


@dataclass(frozen=True)
class Kept:
    """A kept result: the answer without its per-row lists, and where its files are."""

    path: str
    answer: dict

    @property
    def pages(self) -> int:
        return max(1, -(-self.answer["rows"] // PAGE_SIZE))

    @property
    def csv_path(self) -> str:
        return os.path.join(self.path, "predictions.csv")

    def page(self, page: int) -> tuple[list[dict], int]:
        """The rows of page `page` (1-based, clamped) and the number of pages: its bytes only."""
        page = min(max(page, 1), self.pages)
        if not self.answer["rows"]:
            return [], 1
        with open(os.path.join(self.path, "pages.idx"), "rb") as index:
            index.seek((page - 1) * OFFSET.size)
            start, stop = struct.unpack("<2Q", index.read(2 * OFFSET.size))
        with open(os.path.join(self.path, "rows.jsonl"), "rb") as rows:
            rows.seek(start)
            data = rows.read(stop - start)
        return [orjson.loads(line) for line in data.splitlines()], self.pages


def _owner(sid: str) -> str:
    return hashlib.sha256(b"sluice-console-owner\0" + sid.encode()).hexdigest()[:16]


def _dir(folder: str, result_id: str, sid: str) -> str:
    name = hmac.new(sid.encode(), result_id.encode(), hashlib.sha256).hexdigest()
    return os.path.join(folder, f"{_owner(sid)}-{name}")


def _entries(folder: str) -> list[tuple[float, int, str, str]]:
    """(mtime, bytes, path, owner) of every kept result, oldest first; stale partial writes
    (a worker that died mid-write) are removed on the way."""
    entries = []
    for entry in os.scandir(folder):
        found = ENTRY.match(entry.name)
        mtime = entry.stat().st_mtime
        if found:
            size = sum(f.stat().st_size for f in os.scandir(entry.path))
            entries.append((mtime, size, entry.path, found["owner"]))
        elif entry.name.endswith(".part") and mtime < time.time() - MAX_AGE_SECONDS:
            shutil.rmtree(entry.path, ignore_errors=True)
    return sorted(entries)


def _prune(folder: str, owner: str, incoming: int) -> None:
    """Drop expired results, this session's oldest beyond its quota, then the oldest of the
    session holding the most until the new one fits the global bounds."""
    now = time.time()
    kept = []
    for entry in _entries(folder):
        if entry[0] < now - MAX_AGE_SECONDS:
            shutil.rmtree(entry[2], ignore_errors=True)  # ignore: another worker pruned it
        else:
            kept.append(entry)
    mine = [entry for entry in kept if entry[3] == owner]
    for entry in mine[: max(0, len(mine) - MAX_PER_SESSION + 1)]:
        shutil.rmtree(entry[2], ignore_errors=True)
        kept.remove(entry)
    while kept and (len(kept) >= MAX_RESULTS or sum(e[1] for e in kept) + incoming > MAX_BYTES):
        counts = collections.Counter(entry[3] for entry in kept)
        most = max(counts.values())
        victim = next(entry for entry in kept if counts[entry[3]] == most)
        shutil.rmtree(victim[2], ignore_errors=True)
        kept.remove(victim)


def _private(folder: str) -> bool:
    """Whether `folder` is a directory of this account's that no one else can read: the shared
    temporary directory may hold one made by someone else under the same name."""
    info = os.lstat(folder)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def too_large(size: int) -> bool:
    """Whether an answer of `size` bytes of JSON is more than the console keeps."""
    return size > MAX_RESULT_BYTES


def save(folder: str, answer: dict, size: int, sid: str) -> str | None:
    """Keep a prod answer (`size` bytes as JSON) for this session; its id, or None when it is
    too large or there is no private place to keep it."""
    if too_large(size):
        return None
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not _private(folder):
        return None
    _prune(folder, _owner(sid), size)
    result_id = secrets.token_hex(16)
    path = _dir(folder, result_id, sid)
    partial = f"{path}.{os.getpid()}.part"
    os.mkdir(partial, 0o700)
    _write(partial, answer)
    os.rename(partial, path)  # readers never see half a result
    return result_id


def _write(path: str, answer: dict) -> None:
    meta = {key: value for key, value in answer.items() if key not in PER_ROW}
    meta["rows"] = len(answer.get("predictions") or [])
    meta["probabilities"] = bool(answer.get("probabilities"))
    offsets = []
    with (
        open(os.path.join(path, "rows.jsonl"), "wb") as rows,
        open(os.path.join(path, "predictions.csv"), "w", encoding="utf-8", newline="") as out,
    ):
        # CRLF (RFC 4180): with "\n" alone, csv leaves a cell's lone "\r" unquoted, cutting its row.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(csv_header(answer))
        shares = bool(_shown_classes(answer))
        for row in iter_rows(answer):
            if row["row"] % PAGE_SIZE == 0:
                offsets.append(rows.tell())
            rows.write(orjson.dumps(row) + b"\n")
            writer.writerow(csv_row(row, shares))
        offsets.append(rows.tell())
    with open(os.path.join(path, "pages.idx"), "wb") as index:
        index.write(b"".join(OFFSET.pack(offset) for offset in offsets))
    with open(os.path.join(path, "meta.json"), "wb") as handle:
        handle.write(orjson.dumps(meta))


def load(folder: str, result_id: str, sid: str) -> Kept | None:
    """This session's result `result_id`, or None when it is unknown, another's or gone."""
    if not RESULT_ID.fullmatch(result_id):
        return None
    path = _dir(folder, result_id, sid)
    try:
        with open(os.path.join(path, "meta.json"), "rb") as handle:
            if os.fstat(handle.fileno()).st_mtime < time.time() - MAX_AGE_SECONDS:
                return None
            return Kept(path, orjson.loads(handle.read()))
    except (FileNotFoundError, ValueError):
        return None


def flags_by_row(answer: dict) -> dict[int, str]:
    """Each flagged row's reasons in words: `column: reason; ...`."""
    flagged = {}
    for entry in answer.get("flagged_rows") or []:
        columns = entry.get("columns") or {}
        words = "; ".join(f"{name}: {str(why).replace('_', ' ')}" for name, why in columns.items())
        flagged[int(entry["row"])] = words or "flagged"
    return flagged


def iter_rows(answer: dict) -> Iterator[dict]:
    """Every row of an answer as the table shows it: row, prediction, probabilities, flag."""
    flagged = flags_by_row(answer)
    probabilities = answer.get("probabilities") or []
    for index, prediction in enumerate(answer.get("predictions") or []):
        yield {
            "row": index,
            "prediction": prediction,
            "probabilities": probabilities[index] if index < len(probabilities) else None,
            "flag": flagged.get(index),
        }


def page_rows(answer: dict, page: int) -> tuple[list[dict], int]:
    """Page `page` of an answer held in memory (one too large to keep) and the page count."""
    pages = max(1, -(-len(answer.get("predictions") or []) // PAGE_SIZE))
    start = (min(max(page, 1), pages) - 1) * PAGE_SIZE
    return list(itertools.islice(iter_rows(answer), start, start + PAGE_SIZE)), pages


def _shown_classes(answer: dict) -> list[str]:
    return (
        [str(name) for name in answer.get("classes") or []] if answer.get("probabilities") else []
    )


def spreadsheet_safe(value):
    """`value` for a CSV cell: text a spreadsheet would run as a formula gets a leading `'`
    (numbers, and text that reads as a finite number such as "-1.5", stay as they are)."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        if math.isfinite(float(value)):
            return value
    except ValueError:
        pass
    return "'" + value


def csv_header(answer: dict) -> list[str]:
    """row, prediction, one probability column per class when the answer has them, flags."""
    classes = [f"probability_{name}" for name in _shown_classes(answer)]
    return [spreadsheet_safe(name) for name in ("row", "prediction", *classes, "flags")]


def csv_row(row: dict, with_shares: bool) -> list:
    """A table row as CSV cells (its class probabilities when the header names them)."""
    shares = list(row["probabilities"] or []) if with_shares else []
    flag = row["flag"] or ""
    return [row["row"], spreadsheet_safe(row["prediction"]), *shares, spreadsheet_safe(flag)]
