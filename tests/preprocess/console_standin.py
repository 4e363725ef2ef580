"""A stand-in trainer for the console's tests: canned answers in the trainer's shapes, on a
loopback port (werkzeug's server in a thread), recording every request it receives."""

from __future__ import annotations

import io
import json
import os
import threading

import pyarrow as pa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

REAL_DEV_ANSWER = os.path.join(os.path.dirname(__file__), "console_real_dev_answer.json")
HOSTILE = "<script>alert(1)</script>"
JOB_ID = "a" * 32
PROD_JOB_ID = "c" * 32  # a finished prod job


def dev_answer(model: str, columns: list[str], rows: int) -> dict:
    """A dev answer as the trainer gives it (fields the console shows)."""
    return {
        "phase": "dev",
        "model": model,
        "version": "1",
        "run_id": "r" * 32,
        "target": columns[-1],
        "task": {"type": "classification", "reason": "target has text values"},
        "metrics": {"accuracy": 0.75, "log_loss": 0.5},
        "promoted": True,
        "reason": "no champion yet, and this first version beats the trivial baseline",
        "promotion": {
            "promoted": True,
            "rule": "first_version",
            "metric": "log_loss",
            "challenger_score": 0.5,
            "champion_score": None,
            "min_rows": 10,
            "baseline": {"score": 0.6, "rows": rows, "difference": -0.1, "interval": [-0.2, -0.05]},
        },
        "champion_version": "1",
        "features": {
            "used": [{"name": name, "kind": "categorical", "levels": 2} for name in columns[:-1]],
            "dropped": [{"name": HOSTILE, "reason": f"id-like {HOSTILE}"}],
        },
        "training": {"rows_train": rows, "rows_validation": 0},
    }


def prod_answer(model: str, rows: int) -> dict:
    """A prod answer of `rows` rows with probabilities; rows 1 and 7 flagged."""
    return {
        "phase": "prod",
        "model": model,
        "version": "3",
        "n_rows": rows,
        "predictions": [("yes" if i % 3 == 0 else HOSTILE) for i in range(rows)],
        "classes": ["yes", HOSTILE],
        "probabilities": [[round(i / rows, 4), round(1 - i / rows, 4)] for i in range(rows)],
        "warnings": {"unseen_categories_treated_as_missing": {"region": 2}},
        "flagged_rows": [
            {"row": 1, "columns": {"region": "unseen_categories_treated_as_missing"}},
            {"row": 7, "columns": {HOSTILE: "not_numeric_treated_as_missing"}},
        ],
        "flagged_rows_total": 2,
        "flagged_rows_omitted": 0,
        "ignored_columns": [],
        "batch_id": "b" * 32,
    }


def _error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, content_type="application/json")


class StandInTrainer:
    """The trainer's routes the console calls, answered from memory."""

    def __init__(self):
        self.requests: list[dict] = []
        self.prod_rows = 120
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()

    def app(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "args": request.args.to_dict(),
                "authorization": request.headers.get("Authorization"),
                "content_type": request.headers.get("Content-Type"),
                "body": body,
            }
        )
        return self.answer(request, body)(environ, start_response)

    def answer(self, request: Request, body: bytes) -> Response:
        path, method = request.path, request.method
        if path == "/ml":
            return self._ml(request, body)
        if path == "/models":
            return _json({"models": [
                {"name": "churn", "champion": "2", "challenger": None, "versions": 2},
                {"name": HOSTILE, "champion": None, "challenger": None, "versions": 1},
            ], "next_page": None})  # fmt: skip
        if path.endswith("/challenger"):
            return _error(404, "no_challenger", "'churn' has no challenger.")
        if path.endswith("/champion") and method == "POST":
            sent = json.loads(body)
            if not sent.get("reason"):
                return _error(400, "invalid_reason", f"reason is required {HOSTILE}")
            return _json({"model": "churn", "champion": sent["version"], "changed": True})
        if path.endswith("/retrain"):
            return _error(409, "no_labels", "No prod row of 'churn' has a label.")
        if path.startswith("/models/"):
            return _json(_model(request.path.split("/")[2]))
        if path == "/jobs":
            return _json({"jobs": [_job("running")]})
        if path == f"/jobs/{PROD_JOB_ID}":
            answer = prod_answer("churn", self.prod_rows)
            return _json({**_job("succeeded"), "phase": "prod", "answer": answer, "status": 200})
        if path.startswith("/jobs/"):
            return _json(_job("cancelled" if method == "DELETE" else "running"))
        if path == "/monitoring":
            return _json(_monitoring(request.args.get("model", "churn")))
        return _error(404, "not_found", "No such endpoint.")

    def _ml(self, request: Request, body: bytes) -> Response:
        table = pa.ipc.open_stream(io.BytesIO(body)).read_all()
        model = request.args.get("model", "default")
        if request.args.get("async") == "true":
            return Response(json.dumps({"job_id": JOB_ID}), 202, content_type="application/json")
        if model == "broken":
            return _error(422, "missing_target", f"No target column {HOSTILE} in the file.")
        if request.args.get("phase") == "dev":
            answer = dev_answer(model, table.column_names, table.num_rows)
            if model == "real":  # the parts of a real dev answer on a messy file
                with open(REAL_DEV_ANSWER, encoding="utf-8") as handle:
                    answer.update(json.load(handle))
            return _json(answer)
        return _json(prod_answer(model, self.prod_rows))


def _json(body: dict) -> Response:
    return Response(json.dumps(body), 200, content_type="application/json")


def _model(name: str) -> dict:
    version = {
        "created": "2026-01-01T00:00:00Z",
        "metrics": {"valid_log_loss": 0.5, "valid_accuracy": 0.7},
        "trusted": True,
        "promotion": {"promoted": True, "rule": "not_worse", "metric": "log_loss",
                      "reason": "not worse", "challenger_score": 0.5, "champion_score": 0.55},
    }  # fmt: skip
    return {
        "name": name,
        "champion": "2",
        "challenger": None,
        "versions": [
            {**version, "version": "2", "run_id": "2" * 32},
            {
                **version,
                "version": "1",
                "run_id": "1" * 32,
                "metrics": {"valid_log_loss": 0.6},
                "promotion": {
                    "promoted": False,
                    "rule": None,
                    "metric": "log_loss",
                    "reason": "promote=never: registered without promotion",
                },
            },
        ],
        "versions_total": 2,
        "history": [{"at": "2026-01-01T00:00:00Z", "from": None, "to": "1", "reason": HOSTILE}],
    }


def _job(state: str) -> dict:
    return {
        "job_id": JOB_ID,
        "state": state,
        "phase": "dev",
        "model": "churn",
        "created_at": "2026-01-01T00:00:00Z",
        "progress": {"stage": "boosting", "rounds_done": 5, "rounds_max": 10},
    }


def _monitoring(model: str) -> dict:
    feature = {"method": "psi", "rows": 500, "score": 0.4, "drifted": True, "status": "alert"}
    return {
        "model": model,
        "version": "2",
        "batches": 3,
        "rows_scored": 500,
        "status": "alert",
        "alerts": ["plan drifted"],
        "drift": {
            "features": {"plan": feature, HOSTILE: {**feature, "score": 0.01, "status": "ok"}},
            "prediction": {**feature, "status": "insufficient_data", "note": "needs 200 rows"},
            "settings": {"thresholds": {"warning": {"psi": 0.1}, "alert": {"psi": 0.25}}},
        },
        "performance": {
            "labelled_rows": 50,
            "rows_scored": 500,
            "coverage": 0.1,
            "primary": "log_loss",
            "baseline": {"log_loss": 0.5},
            "metrics": {"log_loss": 0.7},
            "timeline": {
                "times": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
                "metrics": {"log_loss": [0.6, 0.8]},
            },
        },
    }
