"""Settings declared once (sluice_common/settings): the generated files match the declarations,
Compose and the shell scripts name declared settings with the declared defaults, no Python
code reads a variable by name outside the declarations, and the jobs table's own database."""

from __future__ import annotations

import ast
import logging
import os
import re

import pytest
import sqlalchemy as sa
import yaml

from sluice_common import settings
from sluice_common.database import jobs_url
from sluice_common.settings import SETTINGS
from sluice_common.settings.render import (
    SECTIONS,
    compose_default,
    env_example,
    markdown,
    shell_value,
)
from testkit.stack import ROOT

PACKAGES = ("trainer", "preprocess", "sluice_common", "tracking", "scripts")
# ${NAME:-default}, ${NAME-default} and ${NAME} in shell scripts and the Compose files.
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
LOCAL_SCRIPTS = ("scripts/local.sh", "start.sh", "scripts/ensure_venv.sh")
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.mlflow-ui.yml", "scripts/compose.sh")


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def python_files():
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(folder, name), ROOT)


def test_the_generated_files_are_up_to_date():
    # Regenerate both with: python -m sluice_common.settings --write
    assert read("docs/reference/configuration.md") == markdown()
    assert read(".env.example") == env_example()


def test_every_setting_is_in_a_documented_section_with_a_meaning():
    for setting in SETTINGS.values():
        assert setting.section in SECTIONS, setting.name
        assert setting.meaning.strip(), setting.name
        assert setting.type in (str, int, float, bool), setting.name
        assert setting.default is None or isinstance(setting.default, setting.type), setting.name
        assert not (setting.env_example and setting.internal), setting.name


def same_value(setting, written: str, expected: str) -> bool:
    """Two defaults as a shell writes them, compared as the setting's type reads them."""
    return setting.parse(written) == setting.parse(expected)


def shell_references(path: str):
    for match in REFERENCE.finditer(read(path)):
        name, default = match.groups()
        if name.isupper():
            yield name, default


def test_compose_passes_declared_settings_with_the_declared_defaults():
    for path in COMPOSE_FILES:
        for name, default in shell_references(path):
            setting = settings.declared(name)
            assert setting.env_example, f"{path}: {name} is not in .env.example"
            if default is not None and "$" not in default:
                assert same_value(setting, default, compose_default(setting)), (path, name)
    listed = {s.name for s in SETTINGS.values() if s.env_example}
    named = "".join(read(path) for path in COMPOSE_FILES)
    assert not {name for name in listed if name not in named}, "listed but never passed on"


def test_compose_environment_keys_are_declared_settings():
    compose = yaml.safe_load(read("docker-compose.yml"))
    for service, spec in compose["services"].items():
        for key, written in (spec.get("environment") or {}).items():
            if key in SETTINGS:
                continue
            # A third-party image's own variable, made only of declared settings.
            names = [name for name, _ in REFERENCE.findall(str(written))]
            assert names, f"{service}: {key} is neither declared nor made of declared settings"
            for name in names:
                settings.declared(name)


def test_the_local_scripts_apply_the_declared_defaults():
    for path in LOCAL_SCRIPTS:
        for name, default in shell_references(path):
            setting = settings.declared(name)
            if default is not None and "$" not in default:
                assert same_value(setting, default, shell_value(setting.default)), (path, name)


def environment_reads(tree: ast.AST):
    """Names read from os.environ directly: os.environ.get(x), os.environ[x], os.getenv(x),
    x in os.environ (writes and passing the whole mapping on are fine)."""

    def is_environ(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "getenv" or (
                node.func.attr == "get" and is_environ(node.func.value)
            ):
                yield node.lineno
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            if isinstance(node.ctx, ast.Load):
                yield node.lineno
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            yield node.lineno


def named_reads(tree: ast.AST):
    """Upper-case names read from a mapping called env, or from a Flask config."""
    for node in ast.walk(tree):
        key = receiver = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get" and node.args:
                key, receiver = node.args[0], node.func.value
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key, receiver = node.slice, node.value
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            continue
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", key.value):
            continue
        name = getattr(receiver, "id", None) or getattr(receiver, "attr", None)
        if name in ("env", "config"):  # (`environ` in the code is a WSGI request's)
            yield key.value


def derived_config_keys(trees) -> set[str]:
    """Flask config keys the code computes (app.config["X"] = ...), not settings."""
    keys = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                if getattr(node.value, "attr", None) == "config":
                    keys.add(getattr(node.slice, "value", None))
    return keys


def test_python_reads_the_environment_only_through_the_declarations():
    trees = {path: ast.parse(read(path)) for path in python_files()}
    derived = derived_config_keys(trees.values())
    for path, tree in trees.items():
        if path.startswith(os.path.join("sluice_common", "settings")):
            continue
        lines = list(environment_reads(tree))
        assert not lines, f"{path}:{lines} reads os.environ: use sluice_common.settings"
        for name in named_reads(tree):
            assert name in SETTINGS or name in derived, f"{path} reads {name}, not declared"


def test_values_are_typed_and_bad_numbers_refused():
    config = settings.read(
        "trainer", {"TRAIN_SEED": "7", "TRAINER_WARM_UP": "no", "HEAVY_SLOTS": ""}
    )
    assert config["TRAIN_SEED"] == 7 and config["TRAINER_WARM_UP"] is False
    assert config["HEAVY_SLOTS"] == 2  # empty: the default
    assert config["MONITORING_ALPHA"] == 0.01
    assert "TRAINER_URL" not in config and "TRAINER_URL" in settings.read("preprocess", {})
    assert "AWS_ACCESS_KEY_ID" not in config  # boto3's own, passed through
    with pytest.raises(ValueError):
        settings.read("preprocess", {"MAX_UPLOAD_MB": "lots"})
    with pytest.raises(KeyError):
        settings.value("NOT_A_SLUICE_SETTING", {})


def jobs_tables(url: str) -> list[str]:
    return sa.inspect(sa.create_engine(url)).get_table_names()


def test_the_jobs_table_has_a_database_of_its_own(tmp_path, caplog):
    from trainer.jobs.runner import JobStore

    jobs = f"sqlite:///{tmp_path / 'jobs.db'}"
    monitoring = f"sqlite:///{tmp_path / 'monitoring.db'}"
    with caplog.at_level(logging.WARNING):
        url = jobs_url({"JOBS_DB_URL": jobs, "MONITORING_DB_URL": monitoring}, str(tmp_path))
    assert url == jobs and not caplog.records
    JobStore(url)
    assert "sluice_jobs" in jobs_tables(jobs)
    assert not os.path.exists(tmp_path / "monitoring.db")


def test_monitoring_db_url_still_holds_the_jobs_with_a_warning(tmp_path, caplog):
    from trainer.jobs.runner import JobStore

    monitoring = f"sqlite:///{tmp_path / 'monitoring.db'}"
    with caplog.at_level(logging.WARNING, logger="sluice_common.database"):
        url = jobs_url({"MONITORING_DB_URL": monitoring}, str(tmp_path))
    assert url == monitoring
    assert "set JOBS_DB_URL" in caplog.text
    JobStore(url)
    assert "sluice_jobs" in jobs_tables(monitoring)
    # Neither set: the monitoring store's default, without a warning.
    caplog.clear()
    assert jobs_url({}, str(tmp_path)) == monitoring and not caplog.records
