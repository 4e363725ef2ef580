"""MLflow's artifacts as one tar stream, out of and into the artifacts destination.

    python -m tracking.artifacts_io export  > artifacts.tar
    python -m tracking.artifacts_io import  < artifacts.tar   (refuses a destination with files)
    python -m tracking.artifacts_io count                       (files and bytes, as JSON)

The destination is the one the tracking server uses (tracking/stores.py: a directory, or an
s3:// prefix), resolved from the same environment, so the backup scripts run this inside the
mlflow container (Compose) or with the local stack's settings. Member names are paths relative
to the destination; MLflow records mlflow-artifacts:/ URIs, so a restore anywhere resolves
them. A summary (files, bytes) goes to stderr as one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from tracking import stores

MULTIPART_BYTES = 64 * 1024 * 1024  # uploads above this go in parts of this size
SPOOL_BYTES = 16 * 1024 * 1024


class ArtifactsError(Exception):
    """The destination cannot be read or written as asked; the message says why."""


def destination() -> tuple[str, dict]:
    env = stores.resolved_env(os.environ)
    state = os.path.abspath(env.get("SLUICE_MLFLOW_STATE") or ".")
    return stores.artifacts_destination(env, state), env


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def s3_objects(client, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    """(key relative to the prefix, size) of every object under it, in key order."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                yield item["Key"][len(prefix) :], item["Size"]


def local_files(root: str) -> Iterator[tuple[str, int]]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                yield os.path.relpath(path, root), os.path.getsize(path)


def listing(dest: str, env: dict) -> Iterator[tuple[str, int]]:
    if dest.startswith("s3://"):
        bucket, prefix = split_s3(dest)
        return s3_objects(stores.s3_client(env), bucket, prefix)
    if "://" in dest:
        raise ArtifactsError(f"artifacts at {dest!r}: only directories and s3:// are supported")
    return local_files(dest) if os.path.isdir(dest) else iter(())


def export(dest: str, env: dict, out: BinaryIO) -> dict:
    """Every artifact as a tar member, streamed (no object is held in memory whole)."""
    files = total = 0
    with tarfile.open(fileobj=out, mode="w|") as tar:
        if dest.startswith("s3://"):
            client = stores.s3_client(env)
            bucket, prefix = split_s3(dest)
            for key, size in s3_objects(client, bucket, prefix):
                info = tarfile.TarInfo(key)
                info.size, info.mode = size, 0o600
                body = client.get_object(Bucket=bucket, Key=prefix + key)["Body"]
                tar.addfile(info, body)
                files, total = files + 1, total + size
        else:
            for name, size in listing(dest, env):
                info = tarfile.TarInfo(name)
                info.size, info.mode = size, 0o600
                with open(os.path.join(dest, name), "rb") as handle:
                    tar.addfile(info, handle)
                files, total = files + 1, total + size
    return {"files": files, "bytes": total}


def safe_name(name: str) -> str:
    """A member name that stays inside the destination (a backup is data, not instructions)."""
    normal = os.path.normpath(name)
    if os.path.isabs(normal) or normal == ".." or normal.startswith("../") or "\0" in name:
        raise ArtifactsError(f"the backup holds an unsafe path {name!r}")
    return normal


def import_(dest: str, env: dict, stream: BinaryIO) -> dict:
    """Write each regular-file member under the destination; refuse one that has files."""
    if next(iter(listing(dest, env)), None) is not None:
        raise ArtifactsError(
            f"the artifacts destination {dest} already holds files: restore into a fresh stack"
        )
    files = total = 0
    client = stores.s3_client(env) if dest.startswith("s3://") else None
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue  # directories are implied; links and devices are never written
            name = safe_name(member.name)
            source = tar.extractfile(member)
            if client is not None:
                from boto3.s3.transfer import TransferConfig

                bucket, prefix = split_s3(dest)
                # A member of a tar stream cannot seek, and boto3 needs to (to retry a part):
                # spool it, in memory up to SPOOL_BYTES, on disk beyond.
                with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                    shutil.copyfileobj(source, spool, 1024 * 1024)
                    spool.seek(0)
                    client.upload_fileobj(
                        spool,
                        bucket,
                        prefix + name,
                        Config=TransferConfig(
                            multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES
                        ),
                    )
            else:
                path = os.path.join(dest, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as handle:
                    shutil.copyfileobj(source, handle, 1024 * 1024)
            files, total = files + 1, total + member.size
    return {"files": files, "bytes": total}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("export", "import", "count"):
        print("\n".join(__doc__.strip().splitlines()[2:5]), file=sys.stderr)
        return 2
    import botocore.exceptions

    dest, env = destination()
    try:
        if argv[0] == "export":
            summary = export(dest, env, sys.stdout.buffer)
        elif argv[0] == "import":
            summary = import_(dest, env, sys.stdin.buffer)
        else:
            files = total = 0
            for _, size in listing(dest, env):
                files, total = files + 1, total + size
            summary = {"files": files, "bytes": total}
            print(json.dumps(summary))
    except (
        ArtifactsError,
        tarfile.TarError,
        OSError,
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
    ) as err:
        print(f"artifacts: {err}", file=sys.stderr)
        return 1
    summary["destination"] = "s3" if dest.startswith("s3://") else "directory"
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
