"""Retraining from labels with the real services, through the public port: a version keeps
its training rows, prod rows are labelled through /feedback, and POST /models/<name>/retrain
trains on the champion's rows plus the labelled rows (a job whose dev answer counts both)."""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient

from testkit.stack import post_csv, wait_job
from tests.datasets import shop, to_csv
from trainer.lifecycle import training_rows


def public(stack) -> str:
    return stack.url("preprocess")


def dev(stack, model: str, frame) -> dict:
    answer = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model)
    assert answer.status_code == 200, answer.text
    return answer.json()


def prod(stack, model: str, frame) -> dict:
    answer = post_csv(
        stack.analyze_url, to_csv(frame.drop(columns="bought")), phase="prod", model=model
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def label(stack, model: str, batch_id: str, rows: list[int], labels: list[str]) -> dict:
    text = "batch_id,row,bought\n" + "".join(
        f"{batch_id},{r},{v}\n" for r, v in zip(rows, labels, strict=True)
    )
    answer = post_csv(f"{public(stack)}/feedback", text.encode(), model=model)
    assert answer.status_code == 200, answer.text
    return answer.json()


def retrain(stack, model: str, **kwargs) -> requests.Response:
    return requests.post(f"{public(stack)}/models/{model}/retrain", timeout=60, **kwargs)


def error_of(answer: requests.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


@pytest.fixture(scope="module")
def account(stack):
    """MLflow's client, signed in with the session's account (tests/conftest.py)."""
    return MlflowClient(stack.tracking_uri)


def test_retrain_trains_on_the_champion_rows_plus_every_labelled_prod_row(
    stack, model_name, account
):
    # As an R export: a row-name column and an id-like email, which the champion drops.
    exported = shop(400, 1)
    exported.insert(0, "row", range(1, 401))
    exported.insert(1, "email", [f"user{i}@example.com" for i in range(400)])
    first = dev(stack, model_name, exported)
    assert first["promoted"], first["reason"]
    assert {"row", "email"} <= {item["name"] for item in first["features"]["dropped"]}
    data = first["data"]
    assert data["kept"] is True and data["rows"] == 400 and len(data["digest"]) == 16
    tags = account.get_model_version(model_name, first["version"]).tags
    assert tags[training_rows.DATA_DIGEST] == data["digest"]
    assert tags[training_rows.DATA_ROWS] == "400"
    # The stored rows are the table MLflow's dataset record names, by digest.
    run = account.get_run(first["run_id"])
    assert run.inputs.dataset_inputs[0].dataset.digest == data["digest"]

    # No labels yet: 409 saying to send them.
    error = error_of(retrain(stack, model_name), 409)
    assert error["code"] == "no_labels" and "/feedback" in error["message"]

    frame_a, frame_b = shop(30, 2), shop(20, 3)
    batch_a = prod(stack, model_name, frame_a)["batch_id"]
    batch_b = prod(stack, model_name, frame_b)["batch_id"]
    rows_a = list(range(0, 30, 2))  # 15 labelled rows of 30
    rows_b = list(range(20))  # all 20
    label(stack, model_name, batch_a, rows_a, frame_a["bought"].iloc[rows_a].tolist())
    label(stack, model_name, batch_b, rows_b, frame_b["bought"].iloc[rows_b].tolist())

    accepted = retrain(stack, model_name)
    assert accepted.status_code == 202, accepted.text
    # A second one while the first is queued or running: 409 naming it.
    again = retrain(stack, model_name)
    if again.status_code == 409:
        assert again.json()["error"]["code"] == "retrain_running"
        assert again.json()["error"]["location"] == accepted.headers["Location"]
    job = wait_job(public(stack), accepted)
    assert job["state"] == "succeeded", job
    assert job["phase"] == "retrain" and job["model"] == model_name
    answer = job["answer"]
    assert answer["phase"] == "dev" and answer["version"] != first["version"]
    assert answer["data"]["rows"] == 400 + 15 + 20
    assert answer["training"]["rows_train"] + answer["training"]["rows_validation"] == 435
    sources = answer["data"]["sources"]
    assert sources["champion"] == {
        "version": first["version"],
        "digest": data["digest"],
        "rows": 400,
        "columns_dropped": ["row", "email"],
    }
    assert sources["labelled"] == {"rows": 35, "batches": 2, "skipped": {}}
    # The retrain table lacks the columns the champion ignored: no schema change for that.
    assert answer["promotion"]["rule"] != "schema", answer["reason"]
    # The gate decided; a promotion is in the model's history as made by the retrain.
    detail = requests.get(f"{public(stack)}/models/{model_name}", timeout=60).json()
    by_retrain = [e for e in detail["history"] if e["to"] == answer["version"]]
    assert detail["champion"] == answer["champion_version"]
    assert [e["by"] for e in by_retrain] == (["retrain"] if answer["promoted"] else [])
    new_tags = account.get_model_version(model_name, answer["version"]).tags
    assert new_tags[training_rows.DATA_ROWS] == "435"
    assert account.get_run(answer["run_id"]).data.tags["sluice.retrain.from"] == first["version"]

    # The retrained version as champion, 5 more labels: the next retrain starts from the rows
    # its champion started from, and reads every labelled row again (none counted twice).
    moved = requests.post(
        f"{public(stack)}/models/{model_name}/champion",
        json={"version": answer["version"], "reason": "serve the retrained version"},
        timeout=60,
    )
    assert moved.status_code == 200, moved.text
    more = [1, 3, 5, 7, 9]
    label(stack, model_name, batch_a, more, frame_a["bought"].iloc[more].tolist())
    job = wait_job(public(stack), retrain(stack, model_name))
    assert job["state"] == "succeeded", job
    again = job["answer"]["data"]
    assert again["rows"] == 400 + 40
    assert again["sources"]["champion"] == {
        "version": answer["version"],
        "digest": data["digest"],
        "rows": 400,
        "without_labelled_rows": True,
        "columns_dropped": ["row", "email"],
    }
    assert again["sources"]["labelled"]["rows"] == 40


def test_versions_trained_on_the_same_rows_share_one_stored_table(stack, model_name, account):
    frame = shop(300, 7)
    first, second = dev(stack, model_name, frame), dev(stack, model_name, frame)
    assert first["data"]["digest"] == second["data"]["digest"]
    uri = [
        account.get_model_version(model_name, a["version"]).tags[training_rows.DATA_URI]
        for a in (first, second)
    ]
    assert uri[0] == uri[1]
    experiment = account.get_experiment_by_name(training_rows.EXPERIMENT)
    runs = account.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{training_rows.DIGEST_TAG}` = '{first['data']['digest']}'",
    )
    assert len(runs) == 1


def test_retrain_refuses_what_it_cannot_do_saying_what_to_do(stack, model_name):
    error = error_of(retrain(stack, "never-trained-retrain"), 404)
    assert error["code"] == "unknown_model" and "phase=dev" in error["message"]
    answer = post_csv(
        stack.analyze_url, to_csv(shop(300, 4)), phase="dev", model=model_name, promote="never"
    )
    assert answer.status_code == 200, answer.text
    assert error_of(retrain(stack, model_name), 409)["code"] == "no_champion"
    dev(stack, model_name, shop(300, 5))
    for body, code in (
        (b"[1]", "not_a_json_object"),
        (b"not json", "not_a_json_object"),
        (b"null", "not_a_json_object"),
        (b"[" * 30_000 + b"]" * 30_000, "not_a_json_object"),
        (b'{"promote": "always"}', "invalid_retrain_options"),
        (b'{"reason": "x"}', "invalid_retrain_options"),
    ):
        error = error_of(retrain(stack, model_name, data=body), 400)
        assert error["code"] == code, body
    assert error_of(retrain(stack, model_name), 409)["code"] == "no_labels"


def test_a_champion_change_during_a_retrain_wins_and_no_new_labels_is_refused(stack, model_name):
    first = dev(stack, model_name, shop(300, 11))
    assert first["promoted"], first["reason"]
    answer = post_csv(
        stack.analyze_url, to_csv(shop(300, 12)), phase="dev", model=model_name, promote="never"
    )
    assert answer.status_code == 200, answer.text
    second = answer.json()["version"]
    frame = shop(40, 13)
    batch = prod(stack, model_name, frame)["batch_id"]
    label(stack, model_name, batch, list(range(30)), frame["bought"].iloc[:30].tolist())

    # A rollback while the retrain of v1 runs: the gate leaves the rollback in place.
    accepted = retrain(stack, model_name)
    assert accepted.status_code == 202, accepted.text
    flip = {"version": second, "reason": "flip during retrain"}
    url = f"{public(stack)}/models/{model_name}/champion"
    assert requests.post(url, json=flip, timeout=60).status_code == 200
    job = wait_job(public(stack), accepted)
    assert job["state"] == "succeeded", job
    made = job["answer"]
    assert made["promoted"] is False and made["promotion"]["rule"] == "champion_changed"
    assert made["reason"].startswith(
        f"the champion changed from v{first['version']} to v{second} while this retrain"
    )
    assert made["champion_version"] == second
    detail = requests.get(f"{public(stack)}/models/{model_name}", timeout=60).json()
    assert detail["champion"] == second
    assert [e["by"] for e in detail["history"]] == ["gate", "api"]

    # The retrained version made champion by hand: no label since it read them, so no retrain.
    reason = {"version": made["version"], "reason": "serve the retrained version"}
    assert requests.post(url, json=reason, timeout=60).status_code == 200
    error = error_of(retrain(stack, model_name), 409)
    assert error["code"] == "no_new_labels" and "/feedback" in error["message"]
    assert f"v{made['version']}" in error["message"]


def test_a_retrain_keeps_the_champion_columns_and_needs_labels_for_its_target(stack, model_name):
    frame = shop(300, 21)
    frame.insert(3, "region", [("north", "south", "east")[i % 3] for i in range(300)])
    first = dev(stack, model_name, frame)
    assert "region" in [f["name"] for f in first["features"]["used"]], first["features"]
    scored = frame.head(40)
    batch = prod(stack, model_name, scored)["batch_id"]  # answered by v1, which read region
    label(stack, model_name, batch, list(range(25)), scored["bought"].iloc[:25].tolist())
    answer = post_csv(
        stack.analyze_url,
        to_csv(shop(300, 22)),  # no region
        phase="dev",
        model=model_name,
        promote="always",
    )
    assert answer.status_code == 200, answer.text
    second = answer.json()["version"]

    job = wait_job(public(stack), retrain(stack, model_name, json={"promote": "never"}))
    assert job["state"] == "succeeded", job
    made = job["answer"]
    assert "region" not in [f["name"] for f in made["features"]["used"]]
    labelled = made["data"]["sources"]["labelled"]
    assert labelled["rows"] == 25
    assert labelled["columns_dropped"]["columns"] == {"region": 25}
    assert labelled["columns_dropped"]["rows"] == 25
    assert f"champion v{second}" in labelled["columns_dropped"]["why"]
    assert "columns_missing" not in labelled

    # A champion for another target: every label is for bought, refused before any job.
    answer = post_csv(
        stack.analyze_url,
        to_csv(shop(300, 23)),
        phase="dev",
        model=model_name,
        target="color",
        promote="always",
    )
    assert answer.status_code == 200, answer.text
    error = error_of(retrain(stack, model_name), 409)
    assert error["code"] == "no_labels"
    assert "The 25 labelled prod row(s)" in error["message"]
    assert "another target than 'color'" in error["message"]
