"""A stand-in for the trainer: a small Flask app on a loopback port that answers every
trainer route preprocess relays with an answer of the right shape (answers captured from a
real stack, preprocess/openapi/examples), for tests of preprocess that need no MLflow."""

from __future__ import annotations

import contextlib

from flask import Flask, Response, jsonify, request

from preprocess.openapi.examples import answer_example
from sluice_common.web.errors import register_error_handlers
from testkit.servers import serve_wsgi


def _accepted():
    """The trainer's 202: the job and its Location."""
    job = answer_example("job_accepted")
    return jsonify(job), 202, {"Location": job["location"]}


def stand_in_app() -> Flask:
    """The stand-in's routes: the trainer's, each answering its captured example."""
    app = Flask("stand_in_trainer")
    register_error_handlers(app)  # unknown routes answer the one error shape, as the trainer's
    job = answer_example("job")

    @app.post("/ml")
    def ml():
        request.get_data()
        if request.args.get("async") == "true":
            return _accepted()
        return jsonify(answer_example("dev" if request.args.get("phase") == "dev" else "prod"))

    @app.get("/jobs")
    def jobs():
        return jsonify({"jobs": [job]})

    @app.route("/jobs/<job_id>", methods=["GET", "DELETE"])
    def one_job(job_id):
        return jsonify({**job, "job_id": job_id}), 202 if request.method == "DELETE" else 200

    @app.get("/monitoring")
    def monitoring():
        return jsonify({"model": "default", "version": "1", "batches": 0, "drift": {}})

    @app.get("/monitoring/report")
    def report():
        return Response("<!DOCTYPE html><title>report</title>", content_type="text/html")

    @app.post("/feedback")
    def feedback():
        request.get_data()
        return jsonify(answer_example("feedback"))

    @app.get("/metrics")
    def metrics():
        return Response("# trainer metrics\n", content_type="text/plain; version=1.0.0")

    @app.get("/livez")
    def livez():
        return jsonify({"status": "alive", "service": "trainer"})

    _model_routes(app)
    return app


def _model_routes(app: Flask) -> None:
    @app.get("/models")
    def models():
        return jsonify(answer_example("models"))

    @app.get("/models/<name>")
    def model(name):
        return jsonify({**answer_example("model"), "name": name})

    @app.post("/models/<name>/champion")
    def champion(name):
        request.get_data()
        return jsonify({**answer_example("champion"), "model": name})

    @app.route("/models/<name>/challenger", methods=["PUT", "GET", "DELETE"])
    def challenger(name):
        request.get_data()
        if request.method == "PUT":
            return jsonify({**answer_example("challenger"), "model": name}), 201
        if request.method == "GET":
            return jsonify({**answer_example("comparison"), "model": name})
        return jsonify({"model": name, "ended": answer_example("comparison")})

    @app.post("/models/<name>/retrain")
    def retrain(name):
        request.get_data()
        return _accepted()


def running_stand_in() -> contextlib.AbstractContextManager[str]:
    """The stand-in trainer served on a free loopback port; yields its URL."""
    return serve_wsgi(stand_in_app())
