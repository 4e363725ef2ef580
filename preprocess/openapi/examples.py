"""The document's examples: the first lines of examples/*.csv, and answers captured from a
running stack (the JSON files beside this module; their schemas are checked by the tests)."""

from __future__ import annotations

import json
import os
from functools import cache

FOLDER = os.path.join(os.path.dirname(__file__), "examples")


def csv_example(name: str, lines: int) -> str:
    """The first `lines` lines of the CSV example `name`."""
    with open(os.path.join(FOLDER, name), encoding="utf-8") as handle:
        return "".join(handle.readlines()[:lines])


@cache
def _answer(name: str) -> str:
    with open(os.path.join(FOLDER, f"{name}.json"), encoding="utf-8") as handle:
        return handle.read()


def answer_example(name: str):
    """The captured answer `name` (a fresh copy: the document is built from plain dicts)."""
    return json.loads(_answer(name))
