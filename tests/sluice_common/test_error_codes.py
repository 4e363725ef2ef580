"""The error catalogue (sluice_common/error_codes.py) in step with the code and the docs: every
code the services answer is declared there, every entry is answered somewhere, and
docs/reference/errors.md is the catalogue's table."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

from sluice_common import error_codes
from sluice_common.errors import ApiError, markdown_page

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("sluice_common", "trainer", "preprocess")
DOCS_PAGE = ROOT / "docs" / "reference" / "errors.md"
# Entries no code names on purpose (none today): code -> why it stays documented.
RESERVED: dict[str, str] = {}


def _trees():
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text())


def _named_entries() -> dict[str, list[str]]:
    """`error_codes.NAME` references outside the catalogue: NAME -> where."""
    named: dict[str, list[str]] = {}
    for path, tree in _trees():
        if path.name == "error_codes.py":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "error_codes"
            ):
                named.setdefault(node.attr, []).append(f"{path}:{node.lineno}")
    return named


def _entries() -> dict[str, error_codes.ErrorCode]:
    return {
        name: value
        for name, value in vars(error_codes).items()
        if isinstance(value, error_codes.ErrorCode)
    }


def test_every_code_raised_is_catalogued():
    """No inline codes: ApiError takes a catalogue entry, and every entry named exists (a
    misspelt name would fail only when that error is raised, as a 500)."""
    functions = {"catalogue", "entry", "ErrorCode"}
    unknown = {
        name: where
        for name, where in _named_entries().items()
        if name not in _entries() and name not in functions
    }
    assert not unknown
    inline = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant | ast.JoinedStr) or len(node.args) > 2:
                    inline.append(f"{path}:{node.lineno}")
            if isinstance(node, ast.Dict):  # an error body written by hand
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        if isinstance(value, ast.Constant | ast.JoinedStr | ast.IfExp):
                            inline.append(f"{path}:{node.lineno}")
    assert not inline, f"codes written inline instead of error_codes.NAME: {inline}"


def test_every_catalogued_code_is_answered_somewhere():
    named = _named_entries()
    unused = [name for name, entry in _entries().items() if name not in named]
    assert sorted(unused) == sorted(
        name for name, entry in _entries().items() if entry.code in RESERVED
    ), f"catalogued but never answered (answer it, or list it in RESERVED): {unused}"


def test_entries_are_declared_once():
    tree = ast.parse((ROOT / "sluice_common" / "error_codes.py").read_text())
    assigned = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    assert len(assigned) == len(set(assigned)), "an entry's name is assigned twice"
    pairs = [(e.code, e.status) for e in error_codes.catalogue()]
    assert len(pairs) == len(set(pairs)), "a code with the same status declared twice"
    for entry in error_codes.catalogue():
        assert entry.code.isidentifier() and entry.code == entry.code.lower()
        assert entry.status is None or 400 <= entry.status < 600
        assert entry.meaning and "\n" not in entry.meaning and "|" not in entry.meaning
    # A code answered with two statuses is two entries; only http_error has none of its own.
    assert [e.code for e in error_codes.catalogue() if e.status is None] == ["http_error"]


def test_the_docs_page_is_the_catalogue():
    """docs/reference/errors.md is what `python -m sluice_common.errors` prints: the table of
    every entry, and no other code."""
    printed = subprocess.run(
        [sys.executable, "-m", "sluice_common.errors"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == markdown_page()
    assert DOCS_PAGE.read_text() == printed, (
        "regenerate it: python -m sluice_common.errors > docs/reference/errors.md"
    )
    rows = [line for line in printed.splitlines() if line.startswith("| `")]
    assert len(rows) == len(error_codes.catalogue())
    for entry in error_codes.catalogue():
        status = "its own" if entry.status is None else str(entry.status)
        assert f"| `{entry.code}` | {status} | {entry.meaning} |" in rows


def test_an_error_pickles_as_the_same_entry_with_its_fields():
    """Errors raised on Dask workers are re-raised on the trainer."""
    for entry in (error_codes.INVALID_BATCH_ID, error_codes.INVALID_BATCH_ID_IN_LABELS):
        err = ApiError(entry, "message", missing_columns=["a"], retry_after=3)
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is ApiError and again.error_code is entry
        assert (again.status, again.code, again.message) == (entry.status, entry.code, "message")
        assert again.to_dict() == {
            "error": {
                "code": entry.code,
                "message": "message",
                "missing_columns": ["a"],
                "retry_after": 3,
            }
        }


def test_the_catalogue_and_the_core_need_no_web_framework():
    """The core raises errors without importing Flask (the web layer renders them)."""
    core = ("trainer/fit", "trainer/pipeline", "trainer/model", "trainer/sources")
    core += ("trainer/monitoring", "sluice_common/errors.py", "sluice_common/error_codes.py")
    web = ("flask", "werkzeug", "sluice_common.web")
    found = []
    for path, tree in _trees():
        if not str(path).startswith(core):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            found += [f"{path}:{node.lineno} {n}" for n in names if n.startswith(web)]
    assert not found
