"""Resident memory of process groups from /proc, sampled in a background thread (Linux)."""

from __future__ import annotations

import os
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _pgrp_and_rss(pid: str) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open(f"/proc/{pid}/statm", "rb") as handle:
            statm = handle.read()
    except OSError:  # the process ended between listdir and open
        return None
    # Fields after the command name, which may itself hold spaces and parentheses.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[2]), int(statm.split()[1]) * PAGE


def group_rss(pgids: dict[str, int]) -> dict[str, int]:
    """Bytes resident in each named process group (sum over its processes; shared pages twice)."""
    wanted = {pgid: name for name, pgid in pgids.items()}
    totals = dict.fromkeys(pgids, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        found = _pgrp_and_rss(entry)
        if found is not None and found[0] in wanted:
            totals[wanted[found[0]]] += found[1]
    return totals


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def group_pss(pgids: dict[str, int]) -> dict[str, int]:
    """Proportional set size of each process group: shared pages split, so sums add up."""
    wanted = {pgid: name for name, pgid in pgids.items()}
    totals = dict.fromkeys(pgids, 0)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _pgrp_and_rss(entry)
            if found is not None and found[0] in wanted:
                totals[wanted[found[0]]] += _pss(int(entry))
    return totals


def group_processes(pgids: dict[str, int]) -> dict[str, list[dict]]:
    """The processes of each group with their RSS and command line, largest first."""
    wanted = {pgid: name for name, pgid in pgids.items()}
    found: dict[str, list[dict]] = {name: [] for name in pgids}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = _pgrp_and_rss(entry)
        if info is None or info[0] not in wanted:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found[wanted[info[0]]].append({"pid": int(entry), "rss": info[1], "cmd": command[:160]})
    for processes in found.values():
        processes.sort(key=lambda p: -p["rss"])
    return found


class PeakSampler:
    """Sample group_rss every `interval` seconds until stopped; keep per-group and sum peaks."""

    def __init__(self, pgids: dict[str, int], interval: float = 0.1, stack: tuple[str, ...] = ()):
        self.pgids = pgids
        self.interval = interval
        self.stack = stack or tuple(pgids)
        self.peaks = dict.fromkeys(pgids, 0)
        self.stack_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = group_rss(self.pgids)
            for name, value in rss.items():
                self.peaks[name] = max(self.peaks[name], value)
            self.stack_peak = max(self.stack_peak, sum(rss[name] for name in self.stack))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def settled_rss(pgids: dict[str, int], seconds: float = 2.0, interval: float = 0.25) -> dict:
    """Idle reading: RSS of each group after letting it settle for `seconds`."""
    rss = group_rss(pgids)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(interval)
        rss = group_rss(pgids)
    return rss
