"""Results folders of stacks that have stopped: `sluice-console-<pid>` beside ours, made by
this account (private, 0700), whose gunicorn master no longer runs. Nothing else removes
them, so each stopped stack would leave its kept predictions in $TMPDIR."""

from __future__ import annotations

import os
import re
import shutil
import stat

FOLDER = re.compile(r"sluice-console-(\d{1,10})")


def running(pid: int) -> bool:
    """Whether a process `pid` exists (another account's counts: it is not ours to judge)."""
    if pid <= 0:
        return True  # 0 and negatives name process groups, not a stopped master
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def ours(path: str) -> bool:
    """A real directory (not a link) of this account, readable by it alone (mode 0700)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) == 0o700
    )


def remove_stale(parent: str, keep: str) -> list[str]:
    """Remove the folders of stopped stacks under `parent` (never `keep`, ours); the removed."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = FOLDER.fullmatch(name)
        path = os.path.join(parent, name)
        if not match or os.path.abspath(path) == os.path.abspath(keep):
            continue
        if ours(path) and not running(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)  # ignore: a sibling worker removed it first
            removed.append(path)
    return removed
