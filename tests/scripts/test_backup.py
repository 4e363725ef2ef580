"""Backup and restore in local mode (scripts/backup.sh, scripts/restore.sh) with the real
services: a backup of a running stack restores into a fresh one that serves the same champion
with the same predictions and keeps the monitoring history.
(Compose: tests/stack/test_compose.py.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time

import pytest
import requests

from testkit.stack import ROOT, LocalStack, post_csv
from tests.datasets import shop, to_csv
from tracking import artifacts_io

BACKUP = os.path.join(ROOT, "scripts", "backup.sh")
RESTORE = os.path.join(ROOT, "scripts", "restore.sh")
MODEL = "shop"


def script(command: str, stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [command, "--local", *args], env=stack.env, capture_output=True, text=True, timeout=600
    )


def monitored_rows(stack: LocalStack) -> int:
    answer = requests.get(
        f"{stack.url('preprocess')}/monitoring", params={"model": MODEL}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["rows_scored"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A running stack with a champion, prod traffic in monitoring, and a backup of it."""
    stack = LocalStack(str(tmp_path_factory.mktemp("source") / "home"))
    stack.start()
    try:
        dev = post_csv(stack.analyze_url, to_csv(shop(1500, 1)), phase="dev", model=MODEL)
        assert dev.status_code == 200, dev.text
        queries = to_csv(shop(400, 2).drop(columns="bought"))
        prod = post_csv(stack.analyze_url, queries, phase="prod", model=MODEL, proba="true")
        assert prod.status_code == 200, prod.text
        deadline = time.monotonic() + 15
        while monitored_rows(stack) < 400 and time.monotonic() < deadline:
            time.sleep(0.5)
        rows = monitored_rows(stack)
        directory = str(tmp_path_factory.mktemp("backups") / "b1")
        done = script(BACKUP, stack, directory)
        assert done.returncode == 0, done.stdout + done.stderr
        yield {
            "stack": stack,
            "backup": directory,
            "queries": queries,
            "prod": prod.json(),
            "rows": rows,
            "output": done.stdout,
        }
    finally:
        stack.stop()


@pytest.mark.stack
def test_the_backup_lists_every_file_with_its_checksum_and_what_the_stack_held(source):
    with open(os.path.join(source["backup"], "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["format"] == "sluice-backup" and manifest["mode"] == "local"
    assert set(manifest["files"]) == {"mlflow.db", "monitoring.db", "artifacts.tar", "signing.key"}
    for name, entry in manifest["files"].items():
        path = os.path.join(source["backup"], name)
        assert os.path.getsize(path) == entry["bytes"] > 0
        assert os.stat(path).st_mode & 0o077 == 0, f"{name} is readable by others"
    assert os.stat(source["backup"]).st_mode & 0o077 == 0
    stack = manifest["stack"]
    assert stack["aliases"] == {f"{MODEL}@champion": source["prod"]["version"]}
    assert stack["registered_models"] == 1 and stack["model_versions"] == 1
    assert stack["monitoring_batches"] >= 1
    assert manifest["artifacts"]["files"] > 3  # the model's files at least
    assert "backup written to" in source["output"]


@pytest.mark.stack
def test_a_restore_into_a_fresh_stack_serves_the_same_predictions_and_history(source, tmp_path):
    target = LocalStack(str(tmp_path / "home"))
    try:
        done = script(RESTORE, target, source["backup"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "it matches the manifest" in done.stdout
        prod = post_csv(
            target.analyze_url, source["queries"], phase="prod", model=MODEL, proba="true"
        )
        assert prod.status_code == 200, prod.text
        assert prod.json()["version"] == source["prod"]["version"]
        assert prod.json()["predictions"] == source["prod"]["predictions"]
        assert prod.json()["probabilities"] == source["prod"]["probabilities"]
        assert monitored_rows(target) >= source["rows"] + 400  # history plus this batch
    finally:
        target.stop()


@pytest.mark.stack
def test_a_damaged_backup_is_refused_before_anything_is_written(source, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in os.listdir(source["backup"]):
        data = open(os.path.join(source["backup"], name), "rb").read()
        if name == "artifacts.tar":
            data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
        (damaged / name).write_bytes(data)
    target = LocalStack(str(tmp_path / "home"))
    done = script(RESTORE, target, str(damaged))
    assert done.returncode == 1
    assert "artifacts.tar does not match its checksum" in done.stderr
    assert not os.path.exists(os.path.join(target.home, "mlflow.db"))
    assert not target.healthy("mlflow")


@pytest.mark.stack
def test_a_restore_into_a_stack_with_data_is_refused(source):
    stack = source["stack"]
    done = script(RESTORE, stack, source["backup"])
    assert done.returncode == 1
    assert "runs under" in done.stderr or "already holds" in done.stderr, done.stderr
    assert stack.healthy("preprocess")  # the running stack was left alone


def test_an_unfinished_backup_is_not_a_backup(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "artifacts.tar").write_bytes(b"")
    done = script(RESTORE, LocalStack(str(tmp_path / "home")), str(tmp_path / "b"))
    assert done.returncode == 1 and "has no manifest.json" in done.stderr


@pytest.mark.stack
def test_a_backup_into_a_directory_with_files_is_refused(source, tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    done = script(BACKUP, source["stack"], str(tmp_path))
    assert done.returncode == 1 and "is not empty" in done.stderr
    assert (tmp_path / "old.txt").read_text() == "keep me"


def tar_of(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt"])
def test_an_artifact_path_outside_the_destination_is_refused(tmp_path, name):
    destination = tmp_path / "artifacts"
    with pytest.raises(artifacts_io.ArtifactsError, match="unsafe path"):
        artifacts_io.import_(str(destination), {}, tar_of({name: b"x"}))
    assert not (tmp_path / "escape.txt").exists()


def test_artifacts_round_trip_through_the_tar_stream(tmp_path):
    source = tmp_path / "src"
    (source / "1" / "run" / "artifacts").mkdir(parents=True)
    (source / "1" / "run" / "artifacts" / "model.ubj").write_bytes(os.urandom(300_000))
    (source / "top.txt").write_text("x")
    stream = io.BytesIO()
    summary = artifacts_io.export(str(source), {}, stream)
    assert summary == {"files": 2, "bytes": 300_001}
    stream.seek(0)
    target = tmp_path / "dst"
    assert artifacts_io.import_(str(target), {}, stream) == summary
    for path in ("1/run/artifacts/model.ubj", "top.txt"):
        assert (target / path).read_bytes() == (source / path).read_bytes()
    stream.seek(0)
    with pytest.raises(artifacts_io.ArtifactsError, match="already holds files"):
        artifacts_io.import_(str(target), {}, stream)


def test_artifacts_round_trip_through_s3_with_multipart(s3, tmp_path, monkeypatch):
    """Directory -> tar -> bucket (a file big enough for parts) -> tar -> directory."""
    monkeypatch.setattr(artifacts_io, "MULTIPART_BYTES", 5 * 1024 * 1024)
    monkeypatch.setattr(artifacts_io, "SPOOL_BYTES", 1024 * 1024)  # spools to disk too
    source = tmp_path / "src"
    (source / "7" / "models").mkdir(parents=True)
    big = os.urandom(12 * 1024 * 1024)
    (source / "7" / "models" / "booster.ubj").write_bytes(big)
    (source / "MLmodel").write_text("flavors: {}")
    stream = io.BytesIO()
    artifacts_io.export(str(source), {}, stream)
    bucket = s3.create_bucket(f"restore-{os.urandom(4).hex()}")
    destination = f"s3://{bucket}/artifacts"
    stream.seek(0)
    assert artifacts_io.import_(destination, s3.env(), stream)["files"] == 2
    head = s3.client().head_object(Bucket=bucket, Key="artifacts/7/models/booster.ubj")
    assert head["ContentLength"] == len(big) and head["ETag"].strip('"').endswith("-3")
    back = io.BytesIO()
    assert artifacts_io.export(destination, s3.env(), back) == {
        "files": 2,
        "bytes": len(big) + len("flavors: {}"),
    }
    back.seek(0)
    target = tmp_path / "dst"
    artifacts_io.import_(str(target), {}, back)
    assert (target / "7" / "models" / "booster.ubj").read_bytes() == big
    stream.seek(0)
    with pytest.raises(artifacts_io.ArtifactsError, match="already holds files"):
        artifacts_io.import_(destination, s3.env(), stream)


@pytest.mark.stack
def test_a_restore_over_leftover_artifacts_is_refused_before_the_database_is_written(
    source, tmp_path
):
    target = LocalStack(str(tmp_path / "home"))
    leftover = tmp_path / "home" / "artifacts" / "9" / "old.bin"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"someone else's model")
    done = script(RESTORE, target, source["backup"])
    assert done.returncode == 1
    assert "already holds 1 files" in done.stderr, done.stderr
    assert not os.path.exists(os.path.join(target.home, "trainer", "signing.key"))
    facts = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "python"), "-m", "tracking.inventory", "describe"],
        env={**target.env, "SLUICE_MLFLOW_STATE": target.home, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
    )
    assert json.loads(facts.stdout).get("runs") in (None, 0), facts.stdout
    assert leftover.read_bytes() == b"someone else's model"


def copy_backup(source_dir: str, target) -> None:
    target.mkdir()
    for name in os.listdir(source_dir):
        (target / name).write_bytes(open(os.path.join(source_dir, name), "rb").read())


def rewrite_manifest(directory, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.stack
def test_the_counts_are_those_of_the_copied_database(source):
    """Read from the backup's own mlflow.db (an oracle independent of the stack's answer)."""
    import sqlite3

    with open(os.path.join(source["backup"], "manifest.json"), encoding="utf-8") as handle:
        stack = json.load(handle)["stack"]
    with sqlite3.connect(os.path.join(source["backup"], "mlflow.db")) as conn:
        for key in ("runs", "registered_models", "model_versions"):
            assert stack[key] == conn.execute(f"SELECT COUNT(*) FROM {key}").fetchone()[0]
    with sqlite3.connect(os.path.join(source["backup"], "monitoring.db")) as conn:
        count = conn.execute("SELECT COUNT(*) FROM monitoring_batches").fetchone()[0]
    assert stack["monitoring_batches"] == count


@pytest.mark.stack
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("files"), "lists no checksum"),
        (lambda m: m["files"].pop("mlflow.db"), "lists no checksum for mlflow.db"),
        (lambda m: m["database"].update(mlflow="/etc/hostname"), "not one a backup writes"),
        (lambda m: m["files"].update({"../x": m["files"]["mlflow.db"]}), "never holds"),
    ],
)
def test_a_manifest_that_does_not_cover_what_is_restored_is_refused(
    source, tmp_path, change, message
):
    edited = tmp_path / "edited"
    copy_backup(source["backup"], edited)
    rewrite_manifest(edited, change)
    target = LocalStack(str(tmp_path / "home"))
    done = script(RESTORE, target, str(edited))
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not os.path.exists(os.path.join(target.home, "mlflow.db"))


@pytest.mark.stack
def test_an_artifact_path_outside_is_refused_before_the_database_is_written(source, tmp_path):
    import hashlib

    edited = tmp_path / "edited"
    copy_backup(source["backup"], edited)
    tar = edited / "artifacts.tar"
    with tarfile.open(tar, "a") as archive:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    rewrite_manifest(
        edited,
        lambda m: m["files"]["artifacts.tar"].update(bytes=tar.stat().st_size, sha256=digest),
    )
    target = LocalStack(str(tmp_path / "home"))
    done = script(RESTORE, target, str(edited))
    assert done.returncode == 1 and "unsafe path" in done.stderr, done.stderr
    assert not os.path.exists(os.path.join(target.home, "mlflow.db"))
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.stack
def test_a_local_stack_on_postgresql_backs_up_and_restores_into_another_database(
    postgres,
    tmp_path,
):
    """pg_dump and pg_restore with the password in PGPASSWORD, never on the command line."""
    from urllib.parse import urlsplit

    def database_env(url: str) -> dict:
        parts = urlsplit(url)
        return {
            "SLUICE_DB_HOST": parts.hostname,
            "SLUICE_DB_PORT": str(parts.port),
            "SLUICE_DB_NAME": parts.path.lstrip("/"),
            "SLUICE_DB_USER": parts.username,
            "SLUICE_DB_PASSWORD": postgres.password,
        }

    first = LocalStack(
        str(tmp_path / "first"), extra_env=database_env(postgres.create_database("bk_first"))
    )
    second = LocalStack(
        str(tmp_path / "second"), extra_env=database_env(postgres.create_database("bk_second"))
    )
    first.start()
    try:
        dev = post_csv(first.analyze_url, to_csv(shop(800, 3)), phase="dev", model=MODEL)
        assert dev.status_code == 200, dev.text
        queries = to_csv(shop(200, 4).drop(columns="bought"))
        before = post_csv(first.analyze_url, queries, phase="prod", model=MODEL, proba="true")
        assert before.status_code == 200, before.text
        directory = str(tmp_path / "backup")
        done = script(BACKUP, first, directory)
        assert done.returncode == 0, done.stdout + done.stderr
        assert postgres.password not in done.stdout + done.stderr
        manifest = json.loads(open(os.path.join(directory, "manifest.json")).read())
        assert manifest["database"] == {
            "kind": "postgresql",
            "file": "database.dump",
            "monitoring": "included",
        }
        assert manifest["stack"]["model_versions"] == 1
    finally:
        first.stop()
    try:
        done = script(RESTORE, second, directory)
        assert done.returncode == 0, done.stdout + done.stderr
        after = post_csv(second.analyze_url, queries, phase="prod", model=MODEL, proba="true")
        assert after.status_code == 200, after.text
        assert after.json()["predictions"] == before.json()["predictions"]
        assert after.json()["probabilities"] == before.json()["probabilities"]
    finally:
        second.stop()
