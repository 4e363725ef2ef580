"""The console's last prediction results: kept on disk so the paged table and the CSV download
need no second upload, in any gunicorn worker (a worker's memory is not shared).

A result is the prod answer's JSON as the trainer sent it, in a file named by a MAC of the
result's random id and the browser's session id: the id alone, leaked in a link, opens nothing
in another browser. The directory is bounded: at most MAX_RESULTS files and MAX_BYTES in all,
each kept at most MAX_AGE_SECONDS; the oldest go first.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import stat
import time

MAX_RESULTS = 50
MAX_BYTES = 256 * 2**20
MAX_AGE_SECONDS = 3600
PAGE_SIZE = 50
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")


def _file(folder: str, result_id: str, sid: str) -> str:
    name = hmac.new(sid.encode(), result_id.encode(), hashlib.sha256).hexdigest()
    return os.path.join(folder, f"{name}.json")


def _prune(folder: str, incoming: int) -> None:
    """Drop expired results, then the oldest until the new one fits the bounds."""
    entries = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".json"):
            stat = entry.stat()
            entries.append((stat.st_mtime, stat.st_size, entry.path))
    entries.sort()
    now, total = time.time(), sum(size for _, size, _ in entries)
    for position, (mtime, size, path) in enumerate(entries):
        too_many = len(entries) - position >= MAX_RESULTS
        if mtime < now - MAX_AGE_SECONDS or too_many or total + incoming > MAX_BYTES:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass  # another worker pruned it
            total -= size


def _private(folder: str) -> bool:
    """Whether `folder` is a directory of this account's that no one else can read: the shared
    temporary directory may hold one made by someone else under the same name."""
    info = os.lstat(folder)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def save(folder: str, answer: bytes, sid: str) -> str | None:
    """Keep a prod answer for this session; its id, or None when it is larger than the bound."""
    if len(answer) > MAX_BYTES:
        return None
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not _private(folder):
        return None
    _prune(folder, len(answer))
    result_id = secrets.token_hex(16)
    path = _file(folder, result_id, sid)
    partial = f"{path}.{os.getpid()}.part"
    with open(partial, "wb") as handle:
        handle.write(answer)
    os.replace(partial, path)  # readers never see half a file
    return result_id


def load(folder: str, result_id: str, sid: str) -> dict | None:
    """This session's result `result_id`, or None when it is unknown, another's or gone."""
    if not RESULT_ID.fullmatch(result_id):
        return None
    path = _file(folder, result_id, sid)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_mtime < time.time() - MAX_AGE_SECONDS:
                return None
            return json.loads(handle.read())
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


def page_rows(answer: dict, page: int) -> tuple[list[dict], int]:
    """The rows of page `page` (1-based) and the number of pages."""
    predictions = answer.get("predictions") or []
    pages = max(1, -(-len(predictions) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    start = (page - 1) * PAGE_SIZE
    flagged = flags_by_row(answer)
    probabilities = answer.get("probabilities") or []
    rows = []
    for index in range(start, min(start + PAGE_SIZE, len(predictions))):
        rows.append(
            {
                "row": index,
                "prediction": predictions[index],
                "probabilities": probabilities[index] if index < len(probabilities) else None,
                "flag": flagged.get(index),
            }
        )
    return rows, pages


def to_csv(answer: dict) -> str:
    """Every prediction as CSV: row, prediction, one probability column per class when the
    answer has them, and the row's flags."""
    classes = [str(name) for name in answer.get("classes") or []]
    probabilities = answer.get("probabilities") or []
    flagged = flags_by_row(answer)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    shown_classes = classes if probabilities else []
    writer.writerow(["row", "prediction", *(f"probability_{c}" for c in shown_classes), "flags"])
    for index, prediction in enumerate(answer.get("predictions") or []):
        shares = list(probabilities[index]) if index < len(probabilities) and shown_classes else []
        writer.writerow([index, prediction, *shares, flagged.get(index, "")])
    return out.getvalue()
