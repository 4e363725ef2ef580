"""The layout's rules, read from the code's imports (ast; nothing is imported or run).

- trainer/'s folders are layers along the data path, top to bottom: api, jobs, lifecycle,
  pipeline, sources, monitoring, fit, model. A module imports its own folder or lower ones.
- sluice_common: web (Flask) over tables over the Flask-free base (errors, codes, settings...).
- No Flask below the API: nothing under trainer/{pipeline,sources,monitoring,fit,model} or
  sluice_common's tables and base imports flask, werkzeug or sluice_common.web.
- No module imports another's private (_name) names.
- An import of Sluice code inside a function says why in a comment (cycle, optional heavy
  dependency, ...) on the line above its block or on its own line.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("trainer", "sluice_common", "preprocess", "tracking")
TRAINER_LAYERS = [
    "trainer.api",
    "trainer.jobs",
    "trainer.lifecycle",
    "trainer.pipeline",
    "trainer.sources",
    "trainer.monitoring",
    "trainer.fit",
    "trainer.model",
]
COMMON_LAYERS = ["sluice_common.web", "sluice_common.tables"]  # the rest of it: the base
FLASK_FREE = TRAINER_LAYERS[3:] + ["sluice_common.tables", "sluice_common.base"]


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the root
    line: int
    module: str  # the importing module
    target: str  # the module imported (or module.name for `from module import name`)
    name: str | None  # the name taken by `from ... import name`
    in_function: bool


def _module_of(path: str) -> str:
    module = path[:-3].replace(os.sep, ".")
    return module.removesuffix(".__init__")


def _sources() -> list[str]:
    found = []
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            found += [
                os.path.relpath(os.path.join(folder, name), ROOT)
                for name in files
                if name.endswith(".py")
            ]
    return sorted(found)


def _imports(path: str) -> list[Import]:
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
    module = _module_of(path)
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update(id(sub) for sub in ast.walk(node) if sub is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(
                    Import(path, node.lineno, module, alias.name, None, id(node) in inside)
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                found.append(
                    Import(
                        path,
                        node.lineno,
                        module,
                        f"{node.module}.{alias.name}",
                        alias.name,
                        id(node) in inside,
                    )
                )
    return found


ALL = [item for path in _sources() for item in _imports(path)]


def _layer(module: str, layers: list[str]) -> int | None:
    for position, prefix in enumerate(layers):
        if module == prefix or module.startswith(prefix + "."):
            return position
    return None


def _group(module: str) -> str:
    """The layer a module belongs to for the Flask rule (sluice_common's base named so)."""
    for prefix in TRAINER_LAYERS + COMMON_LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    if module.startswith("sluice_common"):
        return "sluice_common.base"
    return module


def test_the_sources_are_read():
    assert len(ALL) > 500 and any(item.module.startswith("trainer.fit") for item in ALL)


@pytest.mark.parametrize("layers", [TRAINER_LAYERS, COMMON_LAYERS + ["sluice_common"]])
def test_no_import_runs_back_up(layers):
    upward = []
    for item in ALL:
        mine, theirs = _layer(item.module, layers), _layer(item.target, layers)
        if mine is not None and theirs is not None and theirs < mine:
            upward.append(f"{item.path}:{item.line} {item.module} -> {item.target}")
    assert upward == []


def test_no_flask_below_the_api():
    found = [
        f"{item.path}:{item.line} {item.target}"
        for item in ALL
        if _group(item.module) in FLASK_FREE
        and item.target.split(".")[0] in ("flask", "werkzeug")
        or _group(item.module) in FLASK_FREE
        and item.target.startswith("sluice_common.web")
    ]
    assert found == []


def test_no_private_name_is_imported_from_another_module():
    found = [
        f"{item.path}:{item.line} {item.target}"
        for item in ALL
        if item.name
        and item.name.startswith("_")
        and not item.name.startswith("__")
        and item.target.split(".")[0] in PACKAGES
    ]
    assert found == []


def _says_why(item: Import) -> bool:
    lines = open(os.path.join(ROOT, item.path), encoding="utf-8").read().splitlines()
    if "#" in lines[item.line - 1]:
        return True
    above = item.line - 2
    while above >= 0:
        text = lines[above].strip()
        if text.startswith("#"):
            return True
        # Walk up over the rest of the block: other imports, their continuations, blanks.
        if not text or text.startswith(("import ", "from ")) or text.endswith((",", "(")):
            above -= 1
            continue
        if text == ")" or (text[0].isidentifier() and text.rstrip(",").isidentifier()):
            above -= 1
            continue
        return False
    return False


def test_imports_inside_functions_say_why():
    unexplained = [
        f"{item.path}:{item.line} {item.target}"
        for item in ALL
        if item.in_function and item.target.split(".")[0] in PACKAGES and not _says_why(item)
    ]
    assert unexplained == []


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks above on made-up modules: each rule fires where it should."""
    assert _layer("trainer.fit.rows", TRAINER_LAYERS) > _layer("trainer.api.views", TRAINER_LAYERS)
    assert _group("sluice_common.errors") == "sluice_common.base"
    assert _group("trainer.model.sluice_model") in FLASK_FREE
    assert _group("trainer.api.views") not in FLASK_FREE
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    x = 1\n    from trainer.fit import rows\n")
    good = tmp_path / "good.py"
    good.write_text("def f():\n    # Here: a cycle.\n    from trainer.fit import rows\n")
    rel = os.path.relpath
    assert not _says_why(Import(rel(bad, ROOT), 3, "m", "trainer.fit.rows", "rows", True))
    assert _says_why(Import(rel(good, ROOT), 3, "m", "trainer.fit.rows", "rows", True))
