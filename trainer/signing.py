"""Which model versions Sluice made: an HMAC over every file of a logged model.

Loading a model version runs its code (the model file and its cell rules), and anyone who can
reach the MLflow server could register a version and point the champion alias at it. So the
trainer signs each version it registers, with a key only it holds, over the exact files it
logged, and loads a version only after checking that signature on the downloaded files,
before any of its code runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time

import yaml

SCHEME = "sluice-hmac-sha256-v1"
SIGNATURE_TAG = "sluice.signature"
KEY_FILE = "signing.key"
KEY_BYTES = 32
# How MLflow loads a models-from-code pyfunc; anything else (a pickled python_model) is refused.
CODE_MODEL_LOADER = "mlflow.pyfunc.loaders.code_model"


class UntrustedVersion(RuntimeError):
    """A model version whose files do not carry this trainer's signature."""


def load_key(state_dir: str, configured: str | None) -> bytes:
    """The signing key: SLUICE_SIGNING_KEY when set (every trainer replica must share it),
    else the key file in the state directory, created on first start (mode 0600)."""
    if configured:
        key = configured.encode()
        if len(key) < 32:
            raise ValueError("SLUICE_SIGNING_KEY must be at least 32 characters")
        return key
    path = os.path.join(state_dir, KEY_FILE)
    os.makedirs(state_dir, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:  # first start: this process creates the key, others wait for it below
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
    for _ in range(100):
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
        if text:
            return text.encode()
        time.sleep(0.05)  # another worker is writing it
    raise RuntimeError(f"signing key file {path} is empty")


def manifest(model_dir: str) -> bytes:
    """Every file under `model_dir` by relative path, with its SHA-256, in a fixed order.
    Links are refused: a signed directory must hold its own bytes."""
    lines = []
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                raise UntrustedVersion(f"model directory has a link: {name}")
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.islink(path):
                raise UntrustedVersion(f"model directory has a link: {name}")
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            relative = os.path.relpath(path, model_dir).replace(os.sep, "/")
            lines.append(f"{relative}\t{digest.hexdigest()}")
    return "\n".join(sorted(lines)).encode()


def signature(model_dir: str, key: bytes) -> str:
    """The HMAC of a model directory's manifest."""
    mac = hmac.new(key, SCHEME.encode() + b"\n" + manifest(model_dir), hashlib.sha256)
    return f"{SCHEME}:{mac.hexdigest()}"


def verify(model_dir: str, key: bytes, claimed: str | None) -> None:
    """Raise UntrustedVersion unless `claimed` is this key's signature of the directory."""
    if not claimed:
        raise UntrustedVersion("the version carries no Sluice signature")
    if not hmac.compare_digest(signature(model_dir, key), claimed):
        raise UntrustedVersion("the version's files do not match its Sluice signature")


def check_logged(model_dir: str, written: dict[str, str]) -> None:
    """Before signing: MLflow's model file loads only Sluice's model code and artifacts, and
    each of those files is the one Sluice wrote (`written` maps a file name to the SHA-256 of
    the local file it came from). Guards the moment between upload and signing."""
    with open(os.path.join(model_dir, "MLmodel"), encoding="utf-8") as handle:
        flavor = (yaml.safe_load(handle) or {}).get("flavors", {}).get("python_function", {})
    if flavor.get("loader_module") != CODE_MODEL_LOADER or "python_model" in flavor:
        raise UntrustedVersion("logged model loads another way than from Sluice's model file")
    if flavor.get("code") or flavor.get("code_paths"):
        raise UntrustedVersion("logged model adds code paths")
    paths = [os.path.basename(str(flavor.get("model_code_path", "")))]
    paths += [str(entry.get("path", "")) for entry in (flavor.get("artifacts") or {}).values()]
    if sorted(os.path.basename(path) for path in paths) != sorted(written):
        raise UntrustedVersion("logged model's files are not the ones Sluice wrote")
    for path in paths:
        full = os.path.realpath(os.path.join(model_dir, path))
        if not full.startswith(os.path.realpath(model_dir) + os.sep) or not os.path.isfile(full):
            raise UntrustedVersion(f"logged model file {path} is missing")
        if file_digest(full) != written[os.path.basename(path)]:
            raise UntrustedVersion(f"logged file {path} differs from what Sluice wrote")


def file_digest(path: str) -> str:
    """SHA-256 of a local file."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
