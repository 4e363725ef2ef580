"""Prod traffic on several models while dev runs retrain some of them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient

from testkit.stack import post_csv
from tests.datasets import churn, diabetes, iris, to_csv


def test_prod_traffic_during_concurrent_dev_runs(stack, model_name):
    frames = {"a": churn(1500), "b": iris(), "c": diabetes()}
    targets = {"a": "churned", "b": "target", "c": "target"}
    names = {key: f"{model_name}-{key}" for key in frames}
    queries = {key: frames[key].drop(columns=targets[key]).head(25) for key in frames}
    for key in frames:
        first = post_csv(stack.analyze_url, to_csv(frames[key]), phase="dev", model=names[key])
        assert first.status_code == 200, first.text
    expected = {}
    for key in frames:
        answer = post_csv(stack.analyze_url, to_csv(queries[key]), phase="prod", model=names[key])
        expected[key] = answer.json()["predictions"]

    # Retraining on the same data gives the same model, so every prod answer must equal the
    # reference whichever version served it. "b" gets two dev runs at the same moment.
    jobs = [("prod", key) for _ in range(10) for key in frames]
    jobs[5:5] = [("dev", "a"), ("dev", "b"), ("dev", "b")]

    def call(job):
        phase, key = job
        body = to_csv(frames[key] if phase == "dev" else queries[key])
        # promote=always: these small tables are below the gate's minimum of comparison rows,
        # and what is tested here is serialised promotion, not the gate.
        extra = {"promote": "always"} if phase == "dev" else {}
        response = post_csv(stack.analyze_url, body, phase=phase, model=names[key], **extra)
        return job, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, jobs))

    dev_versions = {"a": [], "b": []}
    for (phase, key), status, answer in results:
        assert status == 200, answer
        assert answer["model"] == names[key]
        if phase == "prod":
            assert answer["predictions"] == expected[key]
        else:
            assert answer["promoted"] is True
            dev_versions[key].append(int(answer["version"]))
    assert dev_versions["a"] == [2]
    assert sorted(dev_versions["b"]) == [2, 3]

    client = MlflowClient(stack.tracking_uri)
    for key, runs in {"a": 2, "b": 3, "c": 1}.items():
        versions = client.search_model_versions(f"name='{names[key]}'")
        assert len(versions) == runs, "every dev run registered exactly one version"
        champion = client.get_model_version_by_alias(names[key], "champion")
        # Serialised promotion: the last registered version wins, never an older one.
        assert int(champion.version) == runs
    final = post_csv(stack.analyze_url, to_csv(queries["b"]), phase="prod", model=names["b"])
    assert final.json()["version"] == "3"
