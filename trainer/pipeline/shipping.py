"""Sluice's own code sent to a Dask cluster, so that any cluster runs Sluice's tasks.

A cluster started with stock `dask scheduler` / `dask worker` commands from an environment
holding the locked third-party packages has no `trainer` or `sluice_common` on its path, yet
the scheduler unpickles every task graph and the workers run its tasks, both by module path.
So before its first graph the client sends both packages' Python files, as a scheduler plugin
and a worker plugin named by the files' digest: each process unpacks them into its local
directory and puts that first on its path. Workers that join later (or restart) get the worker
plugin from the scheduler before any task; a restarted scheduler gets both again with the next
job (`ship` asks it each time). Code from another digest (an older trainer) is forgotten.

The plugins' classes are the only code the cluster cannot import yet: this module is pickled
by value (cloudpickle), and imports nothing of Sluice's.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import os
import shutil
import sys
import zipfile

import cloudpickle
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

PACKAGES = ("sluice_common", "trainer")
PREFIX = "sluice-code-"  # the unpacked copies' folder names, then the digest
# This file is trainer/pipeline/shipping.py: the packages sit three levels up.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@functools.cache
def bundle() -> tuple[str, bytes]:
    """The packages' .py files as a zip (the same bytes for the same files) and its digest."""
    paths = []
    for package in PACKAGES:
        for folder, dirs, names in os.walk(os.path.join(SOURCE_ROOT, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths += [os.path.join(folder, name) for name in names if name.endswith(".py")]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(paths):
            info = zipfile.ZipInfo(os.path.relpath(path, SOURCE_ROOT), (1980, 1, 1, 0, 0, 0))
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read(), zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest()[:16], data


def install(digest: str, data: bytes, directory: str) -> str:
    """Unpack the code into directory (once), first on sys.path; Sluice modules imported from
    anywhere else (another digest, a checkout on PYTHONPATH) are forgotten, so the next import
    reads this code. Runs on the scheduler and on each worker."""
    target = os.path.join(directory, PREFIX + digest)
    if not os.path.isdir(target):
        partial = f"{target}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(partial)
        try:
            os.rename(partial, target)
        except OSError:  # another process of this host unpacked it first
            shutil.rmtree(partial, ignore_errors=True)
    sys.path[:] = [p for p in sys.path if not os.path.basename(p).startswith(PREFIX)]
    sys.path.insert(0, target)
    for name in list(sys.modules):
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if name.partition(".")[0] in PACKAGES and not module_file.startswith(target + os.sep):
            del sys.modules[name]
    importlib.invalidate_caches()
    return target


class CodeOnScheduler(SchedulerPlugin):
    """The code for the scheduler, which unpickles the task graphs."""

    idempotent = True  # registered again with the same digest: nothing to do

    def __init__(self, digest: str, data: bytes):
        self.name, self.digest, self.data = PREFIX + digest, digest, data

    async def start(self, scheduler) -> None:
        install(self.digest, self.data, scheduler.local_directory)


class CodeOnWorkers(WorkerPlugin):
    """The code for every worker, now and joining later."""

    idempotent = True  # registered again with the same digest: nothing to do

    def __init__(self, digest: str, data: bytes):
        self.name, self.digest, self.data = PREFIX + digest, digest, data

    def setup(self, worker) -> None:
        install(self.digest, self.data, worker.local_directory)


def ship(client) -> str:
    """Make sure the cluster behind client holds this trainer's code; one question to the
    scheduler when it does. Returns the digest."""
    digest, data = bundle()
    key = [PREFIX.rstrip("-"), digest]
    if client.get_metadata(key, default=False):
        return digest
    for plugin in (CodeOnScheduler(digest, data), CodeOnWorkers(digest, data)):
        client.register_plugin(plugin, name=plugin.name)
    client.set_metadata(key, True)
    return digest
