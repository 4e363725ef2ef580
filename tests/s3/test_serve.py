"""The S3 store: credentials enforced, multipart round trips, data across restarts, only the
pinned loopback ports, and the image's entrypoint (python -m s3.serve) end to end."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from s3 import serve
from testkit.stack import ROOT

MIB = 2**20
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def refused(call) -> str:
    """The error code of a call that must fail with HTTP 403."""
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return caught.value.response["Error"]["Code"]


def test_anonymous_requests_are_refused(s3):
    bucket = s3.create_bucket("anonymous")
    s3.client().put_object(Bucket=bucket, Key="secret.txt", Body=b"x")
    anonymous = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )
    assert refused(anonymous.list_buckets) == "AccessDenied"
    assert refused(lambda: anonymous.get_object(Bucket=bucket, Key="secret.txt")) == (
        "AccessDenied"
    )
    assert refused(lambda: anonymous.put_object(Bucket=bucket, Key="x", Body=b"x")) == (
        "AccessDenied"
    )


def test_a_wrong_secret_or_unknown_key_is_refused(s3):
    bucket = s3.create_bucket("wrong-secret")
    wrong = serve.client(s3.endpoint, s3.access_key, s3.secret_key + "x")
    assert refused(wrong.list_buckets) == "SignatureDoesNotMatch"
    assert refused(lambda: wrong.put_object(Bucket=bucket, Key="x", Body=b"x")) == (
        "SignatureDoesNotMatch"
    )
    unknown = serve.client(s3.endpoint, "nobody", s3.secret_key)
    assert refused(unknown.list_buckets) == "InvalidAccessKeyId"
    assert not serve.ready(s3.endpoint, s3.access_key, "not-the-secret-key")
    assert serve.ready(s3.endpoint, s3.access_key, s3.secret_key)


def test_a_multipart_upload_reads_back_byte_identical(s3, tmp_path):
    bucket = s3.create_bucket("multipart")
    data = os.urandom(18 * MIB)
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.write_bytes(data)
    client = s3.client()
    parts = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=6 * MIB)
    client.upload_file(str(source), bucket, "model/weights.bin", Config=parts)
    head = client.head_object(Bucket=bucket, Key="model/weights.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # S3's multipart ETag: md5 of md5s, -parts
    client.download_file(bucket, "model/weights.bin", str(copy), Config=parts)
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_ensure_buckets_is_idempotent(s3):
    names = ["idem-a", "idem-b"]
    serve.ensure_buckets(s3.endpoint, s3.access_key, s3.secret_key, names)
    s3.client().put_object(Bucket="idem-a", Key="k", Body=b"kept")
    serve.ensure_buckets(s3.endpoint, s3.access_key, s3.secret_key, names)
    assert s3.client().get_object(Bucket="idem-a", Key="k")["Body"].read() == b"kept"
    assert serve.probe(s3.endpoint, s3.access_key, s3.secret_key, names) == ""
    assert "idem-c" in serve.probe(s3.endpoint, s3.access_key, s3.secret_key, ["idem-c"])


def test_objects_survive_a_stop_and_start(s3):
    bucket = s3.create_bucket("restart")
    body = secrets.token_bytes(64 * 1024)
    s3.client().put_object(Bucket=bucket, Key="kept.bin", Body=body)
    endpoint = s3.endpoint
    s3.stop()
    with pytest.raises(OSError):
        socket.create_connection((s3.host, s3.s3_port), timeout=1).close()
    s3.start()
    assert s3.endpoint == endpoint
    assert s3.client().get_object(Bucket=bucket, Key="kept.bin")["Body"].read() == body
    # A new bucket still gets volumes after the restart.
    s3.client().put_object(Bucket=s3.create_bucket("after-restart"), Key="k", Body=b"x")


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, IPv4 and IPv6."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == LISTEN and inode in inodes:
                    address, port = local.split(":")
                    raw = bytes.fromhex(address)
                    # /proc prints each 32-bit word in host (little-endian) order.
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def test_it_listens_only_on_the_pinned_loopback_ports(s3):
    found = listening_sockets(s3.process.pid)
    assert {address for address, _ in found} == {"127.0.0.1"}
    assert {port for _, port in found} == s3.pinned_ports
    assert len(s3.pinned_ports) == 8  # master, volume, filer, S3 and the gRPC port of each


def test_the_command_pins_every_port_and_the_bind_address():
    ports = {name: 20000 + i for i, name in enumerate(serve.INTERNAL_PORTS)}
    command = serve.weed_command("weed", "/data", 8333, ports, "/run/id.json", bind="0.0.0.0")
    assert "-ip.bind=127.0.0.1" in command  # the internal ports answer without credentials
    assert "-s3.ip.bind=0.0.0.0" in command
    for flag in ("-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"):
        assert flag in command
    with pytest.raises(ValueError, match="master"):
        serve.weed_command("weed", "/data", 8333, {}, "/run/id.json")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set S3_SECRET_KEY"),
        ({"S3_SECRET_KEY": "short"}, "16-128"),
        ({"S3_SECRET_KEY": "x" * 20, "S3_BUCKETS": "Bad_Name"}, "S3_BUCKETS"),
        ({"S3_SECRET_KEY": "x" * 20, "S3_ACCESS_KEY": "a b"}, "S3_ACCESS_KEY"),
        ({"S3_SECRET_KEY": "x" * 20, "S3_PORT": "http"}, "must be numbers"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(env, message):
    with pytest.raises(serve.ConfigError, match=message):
        serve.settings(env)


def free_port_block(size: int) -> int:
    """The first of `size` consecutive loopback ports nobody listens on right now."""
    for _ in range(50):
        base = 20000 + secrets.randbelow(30000)
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {size} consecutive free ports")


def test_the_entrypoint_creates_the_buckets_checks_health_and_stops_on_sigterm(tmp_path):
    base = free_port_block(8)
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "S3_SECRET_KEY": secrets.token_urlsafe(18),
        "S3_BUCKETS": "sluice,sluice-backups",
        "S3_PORT": str(base + 7),
        "S3_PORTS_BASE": str(base),
        "S3_BIND": "127.0.0.1",
        "S3_DATA_DIR": str(tmp_path / "data"),
    }
    entrypoint = [sys.executable, "-m", "s3.serve"]

    def check() -> subprocess.CompletedProcess:
        return subprocess.run(
            [*entrypoint, "--check"], env=env, capture_output=True, text=True, timeout=30
        )

    assert check().returncode == 1  # nothing answers yet
    log_path = tmp_path / "entrypoint.log"
    log = open(log_path, "w")  # a file, not a pipe: weed logs more than a pipe holds
    server = subprocess.Popen(
        entrypoint, env=env, cwd=ROOT, stderr=log, stdout=log, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while (done := check()).returncode != 0:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.3)
        client = serve.client(f"http://127.0.0.1:{base + 7}", "sluice", env["S3_SECRET_KEY"])
        assert {b["Name"] for b in client.list_buckets()["Buckets"]} >= {"sluice", "sluice-backups"}
        assert check().returncode == 0
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # weed's filer holds its exit 15 s for its own metadata stream (a fixed timeout).
        assert server.wait(timeout=25) == 0
        assert time.monotonic() - stopped < 25
        assert "s3: ready at 127.0.0.1" in log_path.read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert os.path.isdir(tmp_path / "data" / "filerldb2")  # the metadata went to S3_DATA_DIR


def test_the_entrypoint_exits_with_one_line_when_weed_cannot_run(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "S3_SECRET_KEY": "x" * 20,
        "S3_DATA_DIR": str(tmp_path),
        "S3_WEED": str(tmp_path / "no-such-weed"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "s3.serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert done.stderr.startswith("s3: cannot run") and done.stderr.count("\n") == 1
