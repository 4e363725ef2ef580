"""The example Airflow DAG's task functions (examples/airflow/sluice_retrain_dag.py) against the
real stack: the file imports without Airflow, and train -> retrain -> wait -> decision runs
through the public port."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import pytest

from testkit.stack import post_csv
from tests.datasets import shop, to_csv

DAG_FILE = pathlib.Path(__file__).parents[2] / "examples" / "airflow" / "sluice_retrain_dag.py"


@pytest.fixture(scope="module")
def dag():
    spec = importlib.util.spec_from_file_location("sluice_retrain_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dag_file_imports_without_airflow_and_builds_no_dag(dag):
    if importlib.util.find_spec("airflow") is not None:
        pytest.skip("Airflow is installed here: the DAG is built")
    assert dag.DAG is None and not hasattr(dag, "dag")


def test_check_decision_fails_the_task_only_when_asked_to_require_a_promotion(dag):
    answer = {
        "model": "m",
        "version": "3",
        "promoted": False,
        "reason": "not better beyond the noise",
        "champion_version": "2",
        "data": {"rows": 435},
    }
    summary = dag.check_decision(answer)
    assert summary == {
        "model": "m",
        "version": "3",
        "promoted": False,
        "reason": "not better beyond the noise",
        "champion_version": "2",
        "rows": 435,
    }
    with pytest.raises(dag.SluiceError, match="v3 was not promoted"):
        dag.check_decision(answer, require_promotion=True)


def test_the_dag_tasks_train_retrain_wait_and_report_the_decision(dag, stack, model_name, tmp_path):
    base = stack.url("preprocess")
    path = tmp_path / "train.csv"
    path.write_bytes(to_csv(shop(300, 11)))
    first = dag.train(str(path), model_name, base)
    assert first["phase"] == "dev" and first["promoted"], first["reason"]

    with pytest.raises(dag.SluiceError, match="409 no_labels"):
        dag.retrain(model_name, base)

    frame = shop(25, 12)
    scored = post_csv(
        stack.analyze_url, to_csv(frame.drop(columns="bought")), phase="prod", model=model_name
    )
    assert scored.status_code == 200, scored.text
    batch_id = scored.json()["batch_id"]
    labels = "batch_id,row,bought\n" + "".join(
        f"{batch_id},{i},{v}\n" for i, v in enumerate(frame["bought"])
    )
    fed = post_csv(f"{base}/feedback", labels.encode(), model=model_name)
    assert fed.status_code == 200, fed.text

    location = dag.retrain(model_name, base)
    assert location.startswith("/jobs/")
    answer = dag.wait_for_job(location, base, timeout=240, poll=0.5)
    decision = dag.check_decision(answer)
    assert decision["model"] == model_name and decision["rows"] == 300 + 25
    assert decision["version"] != first["version"]
    assert decision["champion_version"] in (first["version"], decision["version"])
    assert decision["promoted"] == (decision["champion_version"] == decision["version"])


def test_a_failing_task_says_what_sluice_answered(dag, stack, model_name):
    base = stack.url("preprocess")
    with pytest.raises(dag.SluiceError, match="404 unknown_model"):
        dag.retrain("never-trained-retrain", base)
    with pytest.raises(dag.SluiceError, match="invalid_job_id"):
        dag.wait_for_job("/jobs/not-a-job", base)


def test_with_airflow_the_dag_chains_the_three_tasks(monkeypatch):
    """The DAG's wiring, built against a stand-in for Airflow's DAG and PythonOperator (the
    real one is not installed here): task ids, callables, the XCom template, the order."""
    built = {}

    class FakeDAG:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            built["dag"] = self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class FakeOperator:
        def __init__(self, task_id, python_callable, op_kwargs=None):
            self.task_id, self.callable, self.op_kwargs = task_id, python_callable, op_kwargs
            self.downstream = []
            built[task_id] = self

        def __rshift__(self, other):
            self.downstream.append(other.task_id)
            return other

    airflow = types.ModuleType("airflow")
    airflow.DAG = FakeDAG
    operators = types.ModuleType("airflow.operators")
    python = types.ModuleType("airflow.operators.python")
    python.PythonOperator = FakeOperator
    for name, module in (
        ("airflow", airflow),
        ("airflow.operators", operators),
        ("airflow.operators.python", python),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("sluice_retrain_dag_built", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert built["dag"].kwargs["dag_id"] == "sluice_retrain"
    assert built["dag"].kwargs["catchup"] is False
    assert built["retrain"].callable is module.retrain
    assert built["retrain"].downstream == ["wait_for_job"]
    assert built["wait_for_job"].callable is module.wait_for_job
    assert built["wait_for_job"].op_kwargs == {"location": "{{ ti.xcom_pull(task_ids='retrain') }}"}
    assert built["wait_for_job"].downstream == ["check_decision"]
    answer = {
        "model": "m",
        "version": "2",
        "promoted": True,
        "reason": "better",
        "champion_version": "2",
        "data": {"rows": 10},
    }
    pulled = {"wait_for_job": answer}
    ti = types.SimpleNamespace(xcom_pull=lambda task_ids: pulled[task_ids])
    assert built["check_decision"].callable(ti)["promoted"] is True
