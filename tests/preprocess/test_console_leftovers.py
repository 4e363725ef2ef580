"""Results folders of stopped stacks are removed at start; live stacks', other accounts' and
anything not ours are left."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from preprocess.console import leftovers

pytestmark = pytest.mark.quick


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _folder(parent, name: str, mode: int = 0o700) -> str:
    path = os.path.join(parent, name)
    os.mkdir(path)
    with open(os.path.join(path, "result.json"), "w") as handle:
        handle.write("{}")
    os.chmod(path, mode)
    return path


def test_only_private_folders_of_stopped_masters_are_removed(tmp_path):
    dead = _dead_pid()
    assert not leftovers.running(dead)
    stale = _folder(tmp_path, f"sluice-console-{dead}")
    live = _folder(tmp_path, f"sluice-console-{os.getpid()}")
    mine = _folder(tmp_path, f"sluice-console-{dead + 1000000}")  # ours, kept whatever its pid
    shared = _folder(tmp_path, f"sluice-console-{dead}0", mode=0o755)
    other = _folder(tmp_path, f"sluice-other-{dead}")
    link = tmp_path / f"sluice-console-{dead}1"
    link.symlink_to(live)
    removed = leftovers.remove_stale(str(tmp_path), keep=mine)
    assert removed == [stale] and not os.path.exists(stale)
    for kept in (live, mine, shared, other, str(link)):
        assert os.path.lexists(kept), kept
    assert os.path.exists(os.path.join(live, "result.json"))


def test_the_app_sweeps_the_default_place_at_start(tmp_path, monkeypatch, trainer):
    from preprocess import create_app

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stale = _folder(tmp_path, f"sluice-console-{_dead_pid()}")
    create_app(
        {
            "TRAINER_URL": trainer.url,
            "SLUICE_INTERNAL_TOKEN": "i",
            "ADMISSION_DIR": str(tmp_path / "s"),
        }
    )
    assert not os.path.exists(stale)
