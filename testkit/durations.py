"""Each test module's measured run time, so the slowest start first (tests/conftest.py).

pytest-xdist hands whole modules (--dist loadfile) to whichever worker runs low; a long module
handed out last leaves the other core idle while it runs. Starting the slowest first (longest
processing time first) keeps both cores busy to the end. The figures are relative: refresh them
from a run's JUnit file with `python -m testkit.durations JUNIT.xml`.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATIONS_FILE = os.path.join(ROOT, "tests", "module_durations.json")
# A module not measured yet: about a middling module's time.
UNMEASURED_SECONDS = 10.0


def read() -> dict[str, float]:
    """Seconds per module path (tests/stack/test_api.py); empty when the file is absent."""
    try:
        with open(DURATIONS_FILE, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def from_junit(path: str) -> dict[str, float]:
    """Seconds per module path summed over a JUnit file's test cases (setup to teardown)."""
    seconds: collections.Counter[str] = collections.Counter()
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "")
        # A test in a class is named module.Class: keep the module.
        while module and not os.path.exists(os.path.join(ROOT, *module.split(".")) + ".py"):
            module = module.rpartition(".")[0]
        if module:
            seconds[module.replace(".", "/") + ".py"] += float(case.get("time") or 0)
    return {module: round(total, 1) for module, total in seconds.most_common()}


if __name__ == "__main__":
    measured = from_junit(sys.argv[1])
    with open(DURATIONS_FILE, "w", encoding="utf-8") as handle:
        json.dump(measured, handle, indent=0)
        handle.write("\n")
    print(f"{len(measured)} modules, {sum(measured.values()):.0f} s in all -> {DURATIONS_FILE}")
