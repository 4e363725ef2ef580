"""A real, throwaway Dask cluster for tests: `dask scheduler` and N `dask worker`s on loopback.

Each process is distributed's own CLI (the `dask` next to this Python), started in a session of
its own, with every port pinned on the command line: the scheduler's, and each worker's
`--worker-port`, `--nanny-port` and HTTP port (`--no-dashboard` still serves /health and
/metrics, by default on 0.0.0.0 at a random port, so it is pinned to loopback too). Workers run
with `--nthreads 1` (by default), the memory limit given, and cwd and PYTHONPATH the repository
root, so tasks import `trainer` and `sluice_common`; or, with `stock=True`, as a cluster a user
started from an environment holding the locked packages and no Sluice checkout: cwd the
cluster's temp dir and no PYTHONPATH, so `import trainer` fails there until the trainer ships
its code (trainer/pipeline/shipping.py).

    with dask_cluster(n_workers=2, memory_limit="1GiB") as cluster:
        client = Client(cluster.address)       # tcp://127.0.0.1:<port>
        cluster.kill_worker(1)                 # SIGKILL the nanny and its worker process
        cluster.start_worker(1)                # back on the same ports
        cluster.restart()                      # everything stopped and started again

or as a fixture of a test module (a session instance per definition site):
`dask = cluster_fixture(name="dask", n_workers=2)`. Logs are in `cluster.directory`;
`cluster.logs()` gives their ends, and every error this module raises carries them. The
lifecycle is testkit.servers': its watchdog kills the cluster's processes and removes the dir
if this process dies without close(), even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from testkit.servers import HOST, Throwaway, free_port, listening
from testkit.stack import ROOT

STOP_TIMEOUT = 15  # a worker closes its tasks and its nanny, then exits; then SIGKILL
# Every process of the cluster carries this variable (value: the cluster's dir), its children
# too: that is how the watchdog finds them after we are gone, and only them.
MARK = "SLUICE_DASK_CLUSTER"


class DaskUnavailable(RuntimeError):
    """No `dask` command (distributed's CLI) next to this Python or on PATH."""


class DaskClusterError(RuntimeError):
    """A process did not start, or the scheduler did not see the workers; carries the logs."""


def find_dask() -> str:
    """distributed's `dask` command next to this Python (the venv's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "dask")
    command = beside if os.access(beside, os.X_OK) else shutil.which("dask")
    if not command:
        raise DaskUnavailable(
            "distributed's `dask` command not found next to this Python or on PATH; "
            "scripts/ensure_venv.sh installs it (distributed in requirements.lock)"
        )
    try:
        import distributed  # noqa: F401  (the readiness probe's Client)
    except ImportError as error:
        raise DaskUnavailable(f"distributed does not import here: {error}") from None
    return command


class DaskCluster(Throwaway):
    """One scheduler and n_workers workers on 127.0.0.1, logs and scratch space in a temp dir.

    Ports: from port_base on when given (scheduler, its HTTP port, then worker, nanny and HTTP
    port of each worker: 2 + 3 * n_workers in a row), else free ports picked at the first
    start; either way fixed for the cluster's life, so restarts keep the addresses. env adds
    variables to every process (SLUICE_DATA_ROOT, AWS_*, ...); DASK_* variables of our own
    environment are not passed on, so a stray setting cannot change the cluster. stock: no
    repository on the processes' path or as their cwd (see the module's docstring).
    """

    error = DaskClusterError
    prefix = "sluice-dask-"
    # At EOF: SIGKILL every process carrying our mark (the dir is unique to this cluster), twice
    # (a nanny may start a worker in between).
    watchdog_script = (
        "cat >/dev/null; "
        f'sweep() {{ for p in /proc/[0-9]*; do grep -qzxF -- "{MARK}=$1" "$p/environ" '
        '2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null; done; }; '
        'sweep "$1"; sleep 0.2; sweep "$1"'
    )

    @property
    def watchdog_env(self) -> dict[str, str]:
        """Ours without the mark: the watchdog must not kill itself."""
        return {key: value for key, value in os.environ.items() if key != MARK}

    def __init__(
        self,
        n_workers: int = 2,
        memory_limit: str = "1GiB",
        nthreads: int = 1,
        port_base: int | None = None,
        env: dict[str, str] | None = None,
        base_dir: str | None = None,
        stock: bool = False,
    ):
        if n_workers < 1:
            raise ValueError("n_workers must be at least 1")
        self.n_workers = n_workers
        self.memory_limit = memory_limit
        self.nthreads = nthreads
        self.port_base = port_base
        self.extra_env = dict(env or {})
        self.stock = stock
        self.dask: str | None = None
        self.ports: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        super().__init__(base_dir)

    # -- addresses ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> str:
        """The scheduler's address, for Client() and DASK_SCHEDULER_ADDRESS."""
        assert self.ports, "not started"
        return f"tcp://{HOST}:{self.ports['scheduler']}"

    def worker_name(self, i: int) -> str:
        if not 0 <= i < self.n_workers:
            raise IndexError(f"worker {i}: this cluster has workers 0..{self.n_workers - 1}")
        return f"worker-{i}"

    def worker_address(self, i: int) -> str:
        """Worker i's address as the scheduler lists it."""
        return f"tcp://{HOST}:{self.ports[self.worker_name(i) + '.worker']}"

    @property
    def worker_addresses(self) -> list[str]:
        return [self.worker_address(i) for i in range(self.n_workers)]

    @property
    def pinned_ports(self) -> set[int]:
        """Every TCP port the cluster's processes are told to listen on."""
        return set(self.ports.values())

    def running(self, name: str) -> bool:
        """Whether the process `scheduler` or `worker-<i>` (its nanny) is alive."""
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def client(self, timeout: float = 20):
        """A distributed.Client connected to the scheduler (the caller closes it)."""
        from distributed import Client

        return Client(self.address, timeout=timeout, set_as_default=False)

    # -- logs -----------------------------------------------------------------------------------

    def log_path(self, name: str) -> str:
        assert self.directory, "not started"
        return os.path.join(self.directory, f"{name}.log")

    def log(self, name: str, tail: int = 3000) -> str:
        """The end of one process's log (`scheduler`, `worker-0`, ...), over all its starts."""
        try:
            with open(self.log_path(name), errors="replace") as handle:
                return handle.read()[-tail:]
        except (FileNotFoundError, AssertionError):
            return "(no log)"

    def logs(self, tail: int = 3000) -> str:
        """The end of every process's log, each under a header: for failure messages."""
        names = ["scheduler", *(self.worker_name(i) for i in range(self.n_workers))]
        return "\n".join(f"--- {name} log ---\n{self.log(name, tail)}" for name in names)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> DaskCluster:
        """Start the scheduler and every worker not running; wait until the scheduler sees all."""
        if self._closed:
            raise DaskClusterError("this cluster was closed; make a new one")
        if self.directory is None:
            self._prepare()
        deadline = time.monotonic() + timeout
        if not self.running("scheduler"):
            self._spawn("scheduler", self._scheduler_command())
            self._wait_listening("scheduler", self.ports["scheduler"], deadline)
        for i in range(self.n_workers):
            if not self.running(self.worker_name(i)):
                self._spawn(self.worker_name(i), self._worker_command(i))
        self.wait_for_workers(self.worker_addresses, deadline - time.monotonic())
        return self

    def start_worker(self, i: int, timeout: float = 60) -> None:
        """Start worker i (again, after kill_worker) on its ports; wait for the scheduler."""
        name = self.worker_name(i)
        if not self.running(name):
            self._spawn(name, self._worker_command(i))
        self.wait_for_workers(
            [self.worker_address(j) for j in range(self.n_workers) if self.running(f"worker-{j}")],
            timeout,
        )

    def kill_worker(self, i: int, timeout: float = 10) -> None:
        """SIGKILL worker i's nanny and worker process (its whole process group); return once
        they are gone. The scheduler finds out by itself (its connection to the worker breaks)."""
        self._kill(self.worker_name(i), timeout)

    def kill_scheduler(self, timeout: float = 10) -> None:
        """SIGKILL the scheduler; its workers keep trying to reconnect (death timeout 60 s)."""
        self._kill("scheduler", timeout)

    def stop(self) -> None:
        """Stop every process (SIGTERM, SIGKILL after STOP_TIMEOUT s), workers first; the dir
        and ports stay for start()."""
        names = [self.worker_name(i) for i in range(self.n_workers)]
        for name in names:
            if self.running(name):
                self.processes[name].terminate()
        for name in names:
            self._reap(name, STOP_TIMEOUT)
        if self.running("scheduler"):
            self.processes["scheduler"].terminate()
        self._reap("scheduler", STOP_TIMEOUT)

    def restart(self, timeout: float = 60) -> DaskCluster:
        """stop() then start(): a fresh scheduler (no tasks, no data) and workers, same ports."""
        self.stop()
        return self.start(timeout)

    def halt(self) -> None:
        """Kill every process (the dir is about to go)."""
        for name in list(self.processes):
            with contextlib.suppress(Exception):
                self._kill(name, 10)

    # -- the scheduler's view -------------------------------------------------------------------

    def scheduler_workers(self, timeout: float = 10) -> dict[str, dict]:
        """The workers the scheduler lists now: address -> its info (name, nthreads, ...)."""
        with self.client(timeout) as client:
            return dict(client.scheduler_info(n_workers=-1)["workers"])

    def wait_for_workers(self, addresses: list[str], timeout: float = 60) -> None:
        """Wait until the scheduler lists exactly these workers; fail with the logs if a process
        exits or the time is up."""
        deadline = time.monotonic() + max(timeout, 1)
        expected = set(addresses)
        seen: set[str] = set()
        with self.client(max(deadline - time.monotonic(), 1)) as client:
            while True:
                seen = set(client.scheduler_info(n_workers=-1)["workers"])
                if seen == expected:
                    return
                for name in ["scheduler", *self._names_of(expected)]:
                    process = self.processes.get(name)
                    if process is None or process.poll() is not None:
                        status = process.returncode if process else "(never started)"
                        raise self._error(f"{name} exited with status {status}")
                if time.monotonic() > deadline:
                    raise self._error(
                        f"the scheduler lists {sorted(seen)} after {timeout:.0f} s, "
                        f"expected {sorted(expected)}"
                    )
                time.sleep(0.1)

    def _names_of(self, addresses: set[str]) -> list[str]:
        return [
            self.worker_name(i)
            for i in range(self.n_workers)
            if self.worker_address(i) in addresses
        ]

    def listening(self) -> list[tuple[int, str, str, int]]:
        """Every socket a process of the cluster listens on (TCP) or has bound (UDP), as
        (pid, kind, ip, port); for checking that nothing but the pinned loopback ports is open."""
        import psutil

        found = []
        for process in self._members():
            with contextlib.suppress(psutil.Error):
                for conn in process.net_connections(kind="inet"):
                    tcp = conn.type == socket.SOCK_STREAM
                    if tcp and conn.status != psutil.CONN_LISTEN:
                        continue
                    found.append(
                        (process.pid, "tcp" if tcp else "udp", conn.laddr.ip, conn.laddr.port)
                    )
        return found

    # -- internals ------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.dask = self.dask or find_dask()
        self.open_directory()
        os.makedirs(os.path.join(self.directory, "config"))  # DASK_CONFIG: no user config
        names = ["scheduler", "scheduler.http"]
        for i in range(self.n_workers):
            names += [f"worker-{i}.worker", f"worker-{i}.nanny", f"worker-{i}.http"]
        if self.port_base is None:
            self.ports = {name: free_port() for name in names}
        else:
            self.ports = {name: self.port_base + n for n, name in enumerate(names)}

    def _scheduler_command(self) -> list[str]:
        return [
            self.dask,
            "scheduler",
            "--host",
            HOST,
            "--port",
            str(self.ports["scheduler"]),
            "--no-dashboard",
            "--dashboard-address",
            f"{HOST}:{self.ports['scheduler.http']}",
            "--no-jupyter",
        ]

    def _worker_command(self, i: int) -> list[str]:
        name = self.worker_name(i)
        return [
            self.dask,
            "worker",
            self.address,
            "--host",
            HOST,
            "--worker-port",
            str(self.ports[f"{name}.worker"]),
            "--nanny-port",
            str(self.ports[f"{name}.nanny"]),
            "--no-dashboard",
            "--dashboard-address",
            f"{HOST}:{self.ports[f'{name}.http']}",
            "--nthreads",
            str(self.nthreads),
            "--memory-limit",
            str(self.memory_limit),
            "--name",
            name,
            "--local-directory",
            os.path.join(self.directory, name),
            "--death-timeout",
            "60",
        ]

    def _env(self, name: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("DASK_")}
        path = env.pop("PYTHONPATH", None)
        if not self.stock:
            env["PYTHONPATH"] = ROOT + (os.pathsep + path if path else "")
        env.update(
            PYTHONUNBUFFERED="1",
            DASK_CONFIG=os.path.join(self.directory, "config"),
            # The scheduler's scratch space (it has no --local-directory): in our dir, removed
            # with it, as is what the trainer ships there (trainer/pipeline/shipping.py).
            DASK_TEMPORARY_DIRECTORY=self.directory,
            SLUICE_DASK_PROCESS=name,
        )
        env.update(self.extra_env)
        env[MARK] = self.directory
        return env

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.log_path(name), "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(command)}\n".encode())
            log.flush()
            self.processes[name] = subprocess.Popen(
                command,
                cwd=self.directory if self.stock else ROOT,
                env=self._env(name),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A group of its own: kill_worker's SIGKILL reaches the nanny's worker process
                # too, and a Ctrl-C to the test run goes to close(), not straight here.
                start_new_session=True,
            )

    def _members(self, name: str | None = None) -> list:
        """The live processes of one named process (or all of them): the CLI and its children."""
        import psutil

        members = []
        for key in [name] if name else list(self.processes):
            process = self.processes.get(key)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                leader = psutil.Process(process.pid)
                members += [leader, *leader.children(recursive=True)]
        return members

    def _kill(self, name: str, timeout: float) -> None:
        """SIGKILL a process's group and its children; wait until none of them is left."""
        import psutil

        process = self.processes.get(name)
        if process is None:
            return
        members = self._members(name)
        if process.poll() is None:
            # Not reaped yet, so the group id is still ours to signal.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for member in members:  # a child that left the group
            with contextlib.suppress(psutil.Error):
                member.kill()
        process.wait(timeout=timeout)
        self._wait_gone(name, members, timeout)

    def _reap(self, name: str, timeout: float) -> None:
        """Wait for a process told to stop; SIGKILL it (and its group) when it takes too long."""
        process = self.processes.get(name)
        if process is None:
            return
        members = self._members(name)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        import psutil

        for member in members:  # a worker process its nanny left behind
            with contextlib.suppress(psutil.Error):
                member.kill()
        self._wait_gone(name, members, 10)

    def _wait_gone(self, name: str, members: list, timeout: float) -> None:
        import psutil

        deadline = time.monotonic() + timeout
        while True:
            alive = []
            for member in members:
                with contextlib.suppress(psutil.Error):
                    if member.is_running() and member.status() != psutil.STATUS_ZOMBIE:
                        alive.append(member.pid)
            if not alive:
                return
            if time.monotonic() > deadline:
                raise self._error(
                    f"{name}: processes {alive} still alive {timeout} s after SIGKILL"
                )
            time.sleep(0.05)

    def _wait_listening(self, name: str, port: int, deadline: float) -> None:
        process = self.processes[name]
        self.wait_ready(
            lambda: None if listening(port) else f"{name} does not listen on {HOST}:{port}",
            deadline - time.monotonic(),
            lambda: None if process.poll() is None else f"{name} exited: {process.returncode}",
            interval=0.05,
        )

    def _error(self, what: str) -> DaskClusterError:
        return DaskClusterError(f"dask cluster in {self.directory}: {what}\n{self.logs()}")


@contextlib.contextmanager
def dask_cluster(n_workers: int = 2, memory_limit: str = "1GiB", **kwargs) -> Iterator[DaskCluster]:
    """A started DaskCluster, killed and removed on leaving, also when the body raised."""
    with DaskCluster(n_workers, memory_limit, **kwargs) as cluster:
        yield cluster


def cluster_fixture(name: str = "dask_cluster", scope: str = "session", **kwargs):
    """A pytest fixture (named `name`) of a running DaskCluster(**kwargs); skipped, saying why,
    when distributed's CLI is missing. Assign it to a module-level name in a test module."""
    import pytest  # the tests' only: bench uses the cluster without pytest

    @pytest.fixture(scope=scope, name=name)
    def fixture() -> Iterator[DaskCluster]:
        try:
            find_dask()
        except DaskUnavailable as error:
            pytest.skip(str(error))
        with DaskCluster(**kwargs) as cluster:
            yield cluster

    return fixture
