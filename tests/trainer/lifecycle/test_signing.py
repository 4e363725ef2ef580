"""Only Sluice's own models run: signatures over a version's files (unit) and the rogue-version
attack through the real services."""

from __future__ import annotations

import os
import shutil
import time

import mlflow
import pytest
import requests
import yaml
from mlflow import MlflowClient

from testkit.stack import post_csv
from tests.datasets import iris, to_csv
from trainer.lifecycle import signing
from trainer.lifecycle.signing import UntrustedVersion

KEY = b"k" * 32


def _model_dir(tmp_path) -> str:
    root = tmp_path / "model"
    (root / "artifacts").mkdir(parents=True)
    (root / "sluice_model.py").write_text("print('model')\n")
    (root / "artifacts" / "sluice_cells.py").write_text("RULES = 1\n")
    (root / "artifacts" / "booster.ubj").write_bytes(b"\x00booster")
    (root / "artifacts" / "feature_spec.json").write_text("{}")
    flavor = {
        "loader_module": signing.CODE_MODEL_LOADER,
        "model_code_path": "/somewhere/sluice_model.py",
        "code": None,
        "artifacts": {
            "booster": {"path": "artifacts/booster.ubj"},
            "cell_rules": {"path": "artifacts/sluice_cells.py"},
            "feature_spec": {"path": "artifacts/feature_spec.json"},
        },
    }
    (root / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": flavor}}))
    return str(root)


def _written(model_dir: str) -> dict[str, str]:
    names = ["sluice_model.py", "artifacts/sluice_cells.py", "artifacts/booster.ubj"]
    names.append("artifacts/feature_spec.json")
    return {os.path.basename(n): signing.file_digest(os.path.join(model_dir, n)) for n in names}


def test_a_signature_covers_every_byte_of_every_file(tmp_path):
    model = _model_dir(tmp_path)
    claimed = signing.signature(model, KEY)
    signing.verify(model, KEY, claimed)
    with pytest.raises(UntrustedVersion):
        signing.verify(model, b"other key" * 4, claimed)
    with pytest.raises(UntrustedVersion, match="no Sluice signature"):
        signing.verify(model, KEY, None)
    with open(os.path.join(model, "artifacts", "sluice_cells.py"), "a") as handle:
        handle.write("import os\n")
    with pytest.raises(UntrustedVersion, match="do not match"):
        signing.verify(model, KEY, claimed)


def test_an_added_file_breaks_the_signature(tmp_path):
    model = _model_dir(tmp_path)
    claimed = signing.signature(model, KEY)
    (tmp_path / "model" / "extra.py").write_text("x = 1\n")
    with pytest.raises(UntrustedVersion):
        signing.verify(model, KEY, claimed)


def test_only_sluices_own_files_and_loader_are_signed(tmp_path):
    model = _model_dir(tmp_path)
    written = _written(model)
    signing.check_logged(model, written)
    meta_path = os.path.join(model, "MLmodel")
    original = yaml.safe_load(open(meta_path))

    def with_flavor(**changes):
        meta = yaml.safe_load(yaml.safe_dump(original))
        meta["flavors"]["python_function"].update(changes)
        with open(meta_path, "w") as handle:
            yaml.safe_dump(meta, handle)

    for changes, message in (
        ({"loader_module": "mlflow.pyfunc.model"}, "another way"),
        ({"python_model": "p.pkl"}, "sets \\['python_model'\\]"),
        # `data` points the loader at another directory's MLmodel and its model file.
        ({"data": "evil"}, "sets \\['data'\\]"),
        ({"code": "code"}, "code paths"),
        ({"model_code_path": "/x/evil.py"}, "another model file"),
        ({"artifacts": {"booster": {"path": "../artifacts/booster.ubj"}}}, "not Sluice's"),
    ):
        with_flavor(**changes)
        with pytest.raises(UntrustedVersion, match=message):
            signing.check_logged(model, written)
    with_flavor()
    with open(os.path.join(model, "artifacts", "booster.ubj"), "ab") as handle:
        handle.write(b"!")
    with pytest.raises(UntrustedVersion, match="differs"):
        signing.check_logged(model, written)


def test_files_sluice_does_not_write_are_refused(tmp_path):
    model = _model_dir(tmp_path)
    written = _written(model)
    (tmp_path / "model" / "evil").mkdir()
    (tmp_path / "model" / "evil" / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(UntrustedVersion, match="does not write"):
        signing.check_logged(model, written)


def test_a_signature_is_bound_to_the_model_name_and_run(tmp_path):
    model = _model_dir(tmp_path)
    claimed = signing.signature(model, KEY, "churn\0run1")
    signing.verify(model, KEY, claimed, "churn\0run1")
    with pytest.raises(UntrustedVersion):
        signing.verify(model, KEY, claimed, "other\0run1")


def test_mlflows_download_metadata_is_not_part_of_the_signature(tmp_path):
    # A download from models:/m-<id> and one from models:/<name>/<version> differ only there.
    model = _model_dir(tmp_path)
    (tmp_path / "model" / "registered_model_meta").write_text("model_name: null\n")
    claimed = signing.signature(model, KEY)
    (tmp_path / "model" / "registered_model_meta").write_text("model_name: churn\n")
    signing.verify(model, KEY, claimed)


def test_the_key_is_made_once_and_kept(tmp_path):
    first = signing.load_key(str(tmp_path), None)
    assert len(first) == 64 and signing.load_key(str(tmp_path), None) == first
    assert os.stat(tmp_path / signing.KEY_FILE).st_mode & 0o777 == 0o600
    assert signing.load_key(str(tmp_path), "x" * 40) == b"x" * 40
    with pytest.raises(ValueError):
        signing.load_key(str(tmp_path), "short")


_PAYLOAD = """
import os
import mlflow

# Proof of execution: a file named after the process that ran this code.
os.makedirs({marker_dir!r}, exist_ok=True)
open(os.path.join({marker_dir!r}, str(os.getpid())), "w").close()


class Rogue(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return ["rogue"] * len(model_input)


mlflow.models.set_model(Rogue())
"""


def _register_rogue(stack, name: str, tmp_path, tags: dict | None = None) -> str:
    """What an attacker who can reach MLflow does: log a models-from-code file, register it
    under the model's name and point the champion alias at it."""
    marker_dir = str(tmp_path / "executed")
    code = tmp_path / "rogue_model.py"
    code.write_text(_PAYLOAD.format(marker_dir=marker_dir))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(stack.tracking_uri)
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=str(code))
        version = mlflow.register_model(info.model_uri, name, tags=tags).version
        MlflowClient().set_registered_model_alias(name, "champion", version)
    finally:
        mlflow.set_tracking_uri(previous)
    shutil.rmtree(marker_dir, ignore_errors=True)  # logging may run the code here, not there
    return str(version)


def _executed_elsewhere(tmp_path) -> list[str]:
    folder = tmp_path / "executed"
    if not folder.exists():
        return []
    return [pid for pid in os.listdir(folder) if pid != str(os.getpid())]


def test_a_rogue_champion_is_never_loaded_and_the_trusted_one_serves(stack, model_name, tmp_path):
    frame = iris()
    dev = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model_name)
    assert dev.status_code == 200, dev.text
    query = to_csv(frame.drop(columns="target").head(5))
    before = post_csv(stack.analyze_url, query, phase="prod", model=model_name).json()
    # The attacker even copies the real version's signature onto the rogue one.
    real = MlflowClient(stack.tracking_uri).get_model_version(model_name, "1")
    stolen = {signing.SIGNATURE_TAG: real.tags[signing.SIGNATURE_TAG]}
    rogue = _register_rogue(stack, model_name, tmp_path, tags=stolen)
    time.sleep(3)  # the test stack polls aliases every second
    for _ in range(6):
        answer = post_csv(stack.analyze_url, query, phase="prod", model=model_name).json()
        assert answer["version"] == "1" and answer["predictions"] == before["predictions"]
    assert _executed_elsewhere(tmp_path) == [], "the rogue model's code ran in the trainer"
    refused = []
    for _ in range(10):  # two workers: ask until the one that refused answers
        health = requests.get(f"{stack.url('trainer')}/health", timeout=5).json()
        refused += health["untrusted_versions"]
    assert {"model": model_name, "version": rogue} in [
        {"model": item["model"], "version": item["version"]} for item in refused
    ]
    # A dev run does not silently replace or compare against the rogue alias.
    again = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model_name).json()
    assert again["promoted"] is False and again["promotion"]["rule"] == "untrusted"
    fixed = post_csv(
        stack.analyze_url, to_csv(frame), phase="dev", model=model_name, promote="always"
    ).json()
    assert fixed["promoted"] is True
    answer = post_csv(stack.analyze_url, query, phase="prod", model=model_name).json()
    assert answer["version"] == fixed["version"]
    assert _executed_elsewhere(tmp_path) == []


def test_a_rogue_first_version_is_a_clear_error_not_code_execution(stack, model_name, tmp_path):
    _register_rogue(stack, model_name, tmp_path)
    query = to_csv(iris().drop(columns="target").head(2))
    response = post_csv(stack.analyze_url, query, phase="prod", model=model_name)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "untrusted_champion"
    assert _executed_elsewhere(tmp_path) == []
