"""SeaweedFS single-process modes for the s3 image, side by side (how s3.serve's mode was chosen).

    .venv/bin/python -m bench.s3_store [--quick] [--rounds 1]

Each mode runs on free loopback ports in a temp dir with the same identity file: `weed server`
as s3/serve.py runs it, and `weed mini` with every listener it opens pinned (WebDAV, the admin
UI's ports, Iceberg and Lance off or pinned). Measured: seconds from launch to the first signed
list_buckets and to the first PUT that succeeds; RSS of the process tree after start and after
the transfers; multipart upload and download of a 64 MiB object (16 MiB with --quick) in 8 MiB
parts; p50 of 200 PUTs and 200 GETs of 1 KB objects; seconds from SIGTERM to exit.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

from boto3.s3.transfer import TransferConfig

from s3 import serve
from testkit.servers import free_port

MIB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"/proc/{entry}/statm", "rb") as handle:
                rss[int(entry)] = int(handle.read().split()[1]) * PAGE
        except OSError:
            continue
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


def mini_command(weed, data_dir, s3_port, ports, config_path) -> list[str]:
    """`weed mini` with the same ports as weed_command, and its extra listeners pinned or off."""
    return [
        weed,
        "-logtostderr",
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",  # mini has no separate S3 bind: all or nothing
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={ports['s3.grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",  # its server still listens: pin both ports
        f"-admin.port={free_port()}",
        f"-admin.port.grpc={free_port()}",
    ]


def server_command(weed, data_dir, s3_port, ports, config_path) -> list[str]:
    return serve.weed_command(weed, data_dir, s3_port, ports, config_path)


MODES = {"server": server_command, "mini": mini_command}


def measure(mode: str, object_mib: int, small_count: int) -> dict:
    weed = serve.find_weed()
    directory = tempfile.mkdtemp(prefix="bench-s3-")
    access_key, secret_key = "bench", secrets.token_urlsafe(24)
    config_path = os.path.join(directory, "identities.json")
    serve.write_identities(config_path, access_key, secret_key)
    data_dir = os.path.join(directory, "data")
    os.makedirs(data_dir)
    s3_port = free_port()
    ports = {name: free_port() for name in serve.INTERNAL_PORTS}
    command = MODES[mode](weed, data_dir, s3_port, ports, config_path)
    endpoint = f"http://127.0.0.1:{s3_port}"
    log = open(os.path.join(directory, "weed.log"), "wb")
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT)
    result: dict = {"mode": mode}
    try:
        while not serve.ready(endpoint, access_key, secret_key):
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"{mode} did not start; see {log.name}")
            time.sleep(0.05)
        result["first_call_s"] = time.perf_counter() - started
        client = serve.client(endpoint, access_key, secret_key, timeout=60)
        client.create_bucket(Bucket="bench")
        while True:
            try:
                client.put_object(Bucket="bench", Key="first", Body=b"x")
                break
            except Exception:
                if time.perf_counter() - started > 60:
                    raise
                time.sleep(0.05)
        result["first_put_s"] = time.perf_counter() - started
        time.sleep(1)  # let start-up allocations settle
        result["rss_start_mib"] = tree_rss(process.pid) / MIB

        parts = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
        body = os.urandom(object_mib * MIB)
        begun = time.perf_counter()
        client.upload_fileobj(io.BytesIO(body), "bench", "big", Config=parts)
        result["upload_mib_s"] = object_mib / (time.perf_counter() - begun)
        sink = io.BytesIO()
        begun = time.perf_counter()
        client.download_fileobj("bench", "big", sink, Config=parts)
        result["download_mib_s"] = object_mib / (time.perf_counter() - begun)
        assert sink.getvalue() == body, "download differs from upload"

        small = os.urandom(1024)
        puts, gets = [], []
        for i in range(small_count):
            begun = time.perf_counter()
            client.put_object(Bucket="bench", Key=f"small/{i}", Body=small)
            puts.append(time.perf_counter() - begun)
        for i in range(small_count):
            begun = time.perf_counter()
            client.get_object(Bucket="bench", Key=f"small/{i}")["Body"].read()
            gets.append(time.perf_counter() - begun)
        result["put_p50_ms"] = statistics.median(puts) * 1000
        result["get_p50_ms"] = statistics.median(gets) * 1000
        result["rss_after_mib"] = tree_rss(process.pid) / MIB

        begun = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        result["exit_status"] = process.wait(timeout=60)
        result["stop_s"] = time.perf_counter() - begun
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
    return result


COLUMNS = (
    ("first_call_s", "first S3 call s", "{:.2f}"),
    ("first_put_s", "first PUT s", "{:.2f}"),
    ("rss_start_mib", "RSS start MiB", "{:.0f}"),
    ("rss_after_mib", "RSS after MiB", "{:.0f}"),
    ("upload_mib_s", "upload MiB/s", "{:.0f}"),
    ("download_mib_s", "download MiB/s", "{:.0f}"),
    ("put_p50_ms", "PUT 1KB p50 ms", "{:.1f}"),
    ("get_p50_ms", "GET 1KB p50 ms", "{:.1f}"),
    ("stop_s", "SIGTERM->exit s", "{:.1f}"),
    ("exit_status", "exit", "{}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB object instead of 64")
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode, interleaved")
    args = parser.parse_args()
    object_mib = 16 if args.quick else 64
    results = []
    for _ in range(args.rounds):
        for mode in MODES:
            print(f"measuring weed {mode} ...", flush=True)
            results.append(measure(mode, object_mib, 200))
    print(f"\n{'mode':<8}" + "".join(f"{title:>17}" for _, title, _ in COLUMNS))
    for row in results:
        cells = "".join(f"{fmt.format(row[key]):>17}" for key, _, fmt in COLUMNS)
        print(f"{row['mode']:<8}{cells}")
    print(f"({object_mib} MiB object in 8 MiB parts; 200 x 1 KB PUT then GET; one boto3 client)")


if __name__ == "__main__":
    main()
