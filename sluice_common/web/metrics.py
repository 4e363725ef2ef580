"""Prometheus metrics of both services, served on GET /metrics in the Prometheus text format.

- `sluice_http_requests_total{service, endpoint, method, status}` and
  `sluice_http_request_duration_seconds{service, endpoint, method}`: every request, error
  answers (401, 404, 413, 500, ...) included. `endpoint` is the matched route ("/analyze",
  "/ml", ...) or "unmatched" (no route matched: 404s, and 405s, whose method no route has);
  `method` is a standard HTTP method or "other". Raw paths and ids never become labels, so the
  number of series stays bounded.
- `sluice_rows_scored_total{model, version}` and `sluice_prediction_duration_seconds{model,
  version}`: recorded by the trainer with `record_prediction` after scoring a batch.
- Whatever the callables in `app.extensions["metrics_collectors"]` yield at scrape time (the
  trainer's drift, live metrics and champion, computed from its database).

Under gunicorn the master sets PROMETHEUS_MULTIPROC_DIR before it forks the workers
(sluice_common/web/gunicorn_conf.py), so every worker writes its values to files there and /metrics
answers the sum over all workers. Without it (`flask run`, the test client) the values live in
this process. gunicorn's --preload imports the app before that hook runs and is not supported:
/metrics then says only what the answering worker counted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from time import perf_counter

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from sluice_common import settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
ENDPOINT_KEY = "sluice.endpoint"  # in the WSGI environ: the route the request matched
# Any other method a client makes up is "other": a label value per invented method would let
# one client grow the series without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _edges(text: str) -> tuple[float, ...]:
    """Histogram bucket edges written as a line of numbers."""
    return tuple(float(edge) for edge in text.split())


# /health answers in well under a millisecond, a dev run on a large upload takes a minute.
HTTP_BUCKETS = _edges("0.0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 30 60")
# Scoring a row takes ~0.1 ms, a large batch tens of seconds.
PREDICTION_BUCKETS = _edges(
    "0.0001 .00025 .0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 30"
)

REQUESTS = Counter(
    "sluice_http_requests_total",
    "HTTP requests answered, by route and status.",
    ["service", "endpoint", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "sluice_http_request_duration_seconds",
    "Time from receiving a request to its response being ready, by route.",
    ["service", "endpoint", "method"],
    buckets=HTTP_BUCKETS,
)
ROWS_SCORED = Counter(
    "sluice_rows_scored_total",
    "Rows scored in prod, by model version.",
    ["model", "version"],
)
PREDICTION_SECONDS = Histogram(
    "sluice_prediction_duration_seconds",
    "Time to score one prod batch, by model version.",
    ["model", "version"],
    buckets=PREDICTION_BUCKETS,
)

log = logging.getLogger(__name__)

MetricsCollector = Callable[[], Iterable[Metric]]
# Label children by their values: labels() costs more than the rest of the bookkeeping.
_prediction_children: dict[tuple[str, str], tuple] = {}


def record_prediction(model: str, version: str, rows: int, seconds: float) -> None:
    """Count a scored batch of `rows` rows and the `seconds` its scoring took."""
    key = (model, version)
    children = _prediction_children.get(key)
    if children is None:
        children = _prediction_children[key] = (
            ROWS_SCORED.labels(model, version),
            PREDICTION_SECONDS.labels(model, version),
        )
    children[0].inc(rows)
    children[1].observe(seconds)


class RequestMetrics:
    """WSGI middleware counting and timing every request the Flask app answers.

    It wraps `app.wsgi_app`, so it sees the answers of the token check and of the error
    handlers as well; the route Flask matched comes from `note_endpoint`.
    """

    def __init__(self, wsgi_app, service: str):
        self.wsgi_app = wsgi_app
        self.service = service
        self._counters: dict[tuple[str, str, str], object] = {}
        self._timers: dict[tuple[str, str], object] = {}

    def __call__(self, environ, start_response):
        start = perf_counter()
        status = "500"  # what the client gets when the app raises instead of answering

        def recording_start_response(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            return self.wsgi_app(environ, recording_start_response)
        finally:
            self._record(environ, status, perf_counter() - start)

    def _record(self, environ, status: str, seconds: float) -> None:
        endpoint = environ.get(ENDPOINT_KEY, UNMATCHED)
        method = environ.get("REQUEST_METHOD", "")
        if method not in METHODS:
            method = "other"
        key = (endpoint, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REQUESTS.labels(self.service, *key)
        counter.inc()
        timer = self._timers.get(key[:2])
        if timer is None:
            timer = self._timers[key[:2]] = REQUEST_SECONDS.labels(self.service, *key[:2])
        timer.observe(seconds)


def note_endpoint() -> None:
    """Leave the matched route in the environ for RequestMetrics (Flask forgets the request
    before the middleware could ask it)."""
    rule = request.url_rule
    if rule is not None:
        request.environ[ENDPOINT_KEY] = rule.rule


class _Collect:
    """A collector made of a function, for a registry built at scrape time."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]):
        self.collect = collect


def _multiprocess() -> bool:
    """Whether this process writes its values to PROMETHEUS_MULTIPROC_DIR."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _extra_families(collectors: list[MetricsCollector]) -> Iterable[Metric]:
    """What the app's extra collectors yield; one that fails is logged and left out."""
    for collect in list(collectors):
        try:
            families = list(collect())
        except Exception:
            log.exception("metrics collector %r failed; left out of this scrape", collect)
            continue
        yield from families


def collector_registry(app: Flask) -> CollectorRegistry:
    """A registry for one scrape: every worker's values (or this process's) and the app's
    extra collectors."""
    registry = CollectorRegistry(auto_describe=False)
    if _multiprocess():
        MultiProcessCollector(registry)
    else:
        if settings.value(MULTIPROC_ENV):
            log.warning(
                "%s is set but prometheus_client was imported before it was (gunicorn "
                "--preload?): /metrics has this worker's values only",
                MULTIPROC_ENV,
            )
        registry.register(_Collect(REGISTRY.collect))
    collectors = app.extensions.get("metrics_collectors", [])
    registry.register(_Collect(lambda: _extra_families(collectors)))
    return registry


def metrics_view() -> Response:
    """GET /metrics: the Prometheus text format."""
    body = generate_latest(collector_registry(current_app))
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def install_request_metrics(app: Flask, service: str) -> None:
    """Count and time every request of `app` under `service`, and serve GET /metrics."""
    path = settings.value(MULTIPROC_ENV)
    if _multiprocess() and not (path and os.path.isdir(path)):
        # Every request would fail writing its count: refuse to start instead.
        raise RuntimeError(f"{MULTIPROC_ENV}={path!r} is not a directory; create it or unset it")
    app.extensions.setdefault("metrics_collectors", [])
    app.wsgi_app = RequestMetrics(app.wsgi_app, service)
    # First of the hooks: the token check's 401 must know its route too.
    app.before_request_funcs.setdefault(None, []).insert(0, note_endpoint)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
