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

import yaml

from sluice_common.web.internal import ensure_secret_file

SCHEME = "sluice-hmac-sha256-v1"
SIGNATURE_TAG = "sluice.signature"
KEY_FILE = "signing.key"
# Written into a verified local copy by the trainer (see registry.SIGNED_MARKER).
SIGNED_MARKER_NAME = ".sluice-signature"
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
    return ensure_secret_file(os.path.join(state_dir, KEY_FILE)).encode()


# Files MLflow writes into a model directory itself: a download from `models:/<name>/<v>`
# and one from `models:/m-<id>` differ in it, and nothing loads it.
UNSIGNED_FILES = frozenset({"registered_model_meta", SIGNED_MARKER_NAME})
# Everything a Sluice model directory may hold; any other file is refused.
ALLOWED_FILES = frozenset(
    {
        "MLmodel",
        "sluice_model.py",
        "artifacts/booster.ubj",
        "artifacts/feature_spec.json",
        "artifacts/sluice_cells.py",
        "artifacts/monitoring_profile.json",
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "input_example.json",
        "serving_input_example.json",
        # Names (not values) of environment variables the model read while MLflow checked it.
        "environment_variables.txt",
    }
)
# The python_function flavor's keys MLflow writes for a models-from-code pyfunc. Any other key
# can change what loads (`data` points the loader at another directory's model file).
ALLOWED_FLAVOR_KEYS = frozenset(
    {
        "artifacts",
        "cloudpickle_version",
        "code",
        "env",
        "loader_module",
        "model_code_path",
        "python_version",
        "streamable",
    }
)
ARTIFACT_PATHS = {
    "booster": "artifacts/booster.ubj",
    "cell_rules": "artifacts/sluice_cells.py",
    "feature_spec": "artifacts/feature_spec.json",
}
# Versions logged since monitoring also carry their reference profile; older ones do not.
PROFILE_PATHS = {**ARTIFACT_PATHS, "monitoring_profile": "artifacts/monitoring_profile.json"}


def manifest(model_dir: str) -> bytes:
    """Every file under `model_dir` by relative path, with its SHA-256, in a fixed order
    (MLflow's own download metadata aside). Links are refused: a signed directory must hold
    its own bytes."""
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
            relative = os.path.relpath(path, model_dir).replace(os.sep, "/")
            if relative in UNSIGNED_FILES:
                continue
            lines.append(f"{relative}\t{file_digest(path)}")
    return "\n".join(sorted(lines)).encode()


def signature(model_dir: str, key: bytes, bound_to: str = "") -> str:
    """The HMAC of a model directory's manifest, bound to `bound_to` (the model name and the
    run that logged it), so a signature cannot be replayed onto another name's version."""
    message = SCHEME.encode() + b"\n" + bound_to.encode() + b"\n" + manifest(model_dir)
    return f"{SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def verify(model_dir: str, key: bytes, claimed: str | None, bound_to: str = "") -> None:
    """Raise UntrustedVersion unless the directory has Sluice's shape and `claimed` is this
    key's signature of it."""
    if not claimed:
        raise UntrustedVersion("the version carries no Sluice signature")
    check_shape(model_dir)
    if not hmac.compare_digest(signature(model_dir, key, bound_to), claimed):
        raise UntrustedVersion("the version's files do not match its Sluice signature")


def check_shape(model_dir: str) -> dict[str, str]:
    """The directory holds only the files a Sluice model has, and MLflow's model file loads
    exactly Sluice's model code with Sluice's artifacts, nothing else; its artifact paths."""
    present = {line.split("\t")[0] for line in manifest(model_dir).decode().splitlines() if line}
    extra = sorted(present - ALLOWED_FILES)
    if extra:
        raise UntrustedVersion(f"model directory holds files Sluice does not write: {extra[:5]}")
    with open(os.path.join(model_dir, "MLmodel"), encoding="utf-8") as handle:
        meta = yaml.safe_load(handle) or {}
    flavors = meta.get("flavors") or {}
    if set(flavors) != {"python_function"}:
        raise UntrustedVersion("logged model has flavors other than python_function")
    flavor = flavors["python_function"] or {}
    if set(flavor) - ALLOWED_FLAVOR_KEYS:
        raise UntrustedVersion(f"logged model sets {sorted(set(flavor) - ALLOWED_FLAVOR_KEYS)}")
    if flavor.get("loader_module") != CODE_MODEL_LOADER:
        raise UntrustedVersion("logged model loads another way than from Sluice's model file")
    if flavor.get("code"):
        raise UntrustedVersion("logged model adds code paths")
    if os.path.basename(str(flavor.get("model_code_path", ""))) != "sluice_model.py":
        raise UntrustedVersion("logged model runs another model file")
    artifacts = flavor.get("artifacts") or {}
    paths = {name: str((entry or {}).get("path", "")) for name, entry in artifacts.items()}
    if paths not in (ARTIFACT_PATHS, PROFILE_PATHS):
        raise UntrustedVersion("logged model's artifacts are not Sluice's")
    return paths


def check_logged(model_dir: str, written: dict[str, str]) -> None:
    """Before signing: the logged model has Sluice's shape (`check_shape`) and each code and
    artifact file is the one Sluice wrote (`written` maps a file name to the SHA-256 of the
    local file it came from). Guards the moment between upload and signing."""
    paths = check_shape(model_dir)
    for relative in ("sluice_model.py", *paths.values()):
        if file_digest(os.path.join(model_dir, relative)) != written[os.path.basename(relative)]:
            raise UntrustedVersion(f"logged file {relative} differs from what Sluice wrote")


def file_digest(path: str) -> str:
    """SHA-256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
