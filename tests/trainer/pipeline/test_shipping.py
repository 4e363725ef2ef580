"""Sluice's code as it is sent to a Dask cluster (trainer/pipeline/shipping.py): every Python
file of both packages, the same digest for the same files, and a process that installs it
imports that code, also over an older copy or a checkout it imported before. The cluster
itself runs it in tests/stack/test_cluster.py (a stock cluster)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest

from testkit.dask_cluster import DaskCluster, DaskUnavailable, find_dask
from testkit.stack import ROOT
from trainer.pipeline import shipping


def test_the_bundle_holds_every_python_file_of_both_packages_and_nothing_else():
    digest, data = shipping.bundle()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    expected = []
    for package in ("trainer", "sluice_common"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            if "__pycache__" not in folder:
                expected += [
                    os.path.relpath(os.path.join(folder, f), ROOT)
                    for f in files
                    if f.endswith(".py")
                ]
    assert sorted(names) == sorted(expected)
    assert "trainer/pipeline/cluster_parts.py" in names and "sluice_common/errors.py" in names
    shipping.bundle.cache_clear()
    assert shipping.bundle() == (digest, data)  # read again: the same bytes, the same digest


def fake_code(mark: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("trainer/__init__.py", f"MARK = {mark!r}\n")
        archive.writestr("trainer/extra.py", f"MARK = {mark!r}\n")
        archive.writestr("sluice_common/__init__.py", "")
    return buffer.getvalue()


SCRIPT = """
import json, sys
import trainer, trainer.model  # the checkout's, imported before the code arrives
from trainer.pipeline.shipping import install

folder, first, second = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
seen = []
for digest, data in (("aaaa", first), ("bbbb", second), ("bbbb", second)):
    target = install(digest, data, folder)
    import trainer, trainer.extra
    seen.append({
        "mark": trainer.MARK,
        "extra": trainer.extra.MARK,
        "from_target": trainer.__file__.startswith(target),
        "model_forgotten": "trainer.model" not in sys.modules,
        "copies_on_path": sum("sluice-code-" in p for p in sys.path),
    })
print(json.dumps(seen))
"""


def test_installed_code_replaces_a_checkout_and_an_older_copy(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path),
            fake_code("old").hex(),
            fake_code("new").hex(),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    marks = [(s["mark"], s["extra"]) for s in seen]
    assert marks == [("old", "old"), ("new", "new"), ("new", "new")]
    assert all(s["from_target"] and s["model_forgotten"] for s in seen)
    assert [s["copies_on_path"] for s in seen] == [1, 1, 1]
    assert sorted(os.listdir(tmp_path)) == ["sluice-code-aaaa", "sluice-code-bbbb"]


def test_a_stock_cluster_gets_the_code_once_and_again_after_a_restart():
    """Workers that start later get it from the scheduler; a restarted cluster (no plugins, no
    metadata) gets it with the next ship(); the client is the same throughout, as a trainer's
    is."""
    digest = shipping.bundle()[0]

    def where() -> str:  # nested: sent by value (tests/ is not on a stock cluster)
        import trainer

        return trainer.__file__

    def places(client) -> list[str]:
        futures = [client.submit(where, workers=[a], pure=False) for a in cluster.worker_addresses]
        return [*client.gather(futures), client.run_on_scheduler(where)]

    try:
        find_dask()
    except DaskUnavailable as error:
        pytest.skip(str(error))
    with DaskCluster(n_workers=2, stock=True) as cluster, cluster.client() as client:
        assert shipping.ship(client) == digest
        assert all(f"sluice-code-{digest}" in p for p in places(client))
        cluster.kill_worker(1)
        cluster.start_worker(1)  # a new process: the scheduler sends it the worker plugin
        assert all(f"sluice-code-{digest}" in p for p in places(client))
        cluster.restart()  # a new scheduler and workers: nothing shipped, nothing on record
        client.wait_for_workers(2, timeout=60)
        with pytest.raises(ModuleNotFoundError):
            client.run_on_scheduler(where)
        assert shipping.ship(client) == digest
        assert all(f"sluice-code-{digest}" in p for p in places(client))
