"""Trainer service: fits, tracks, registers and serves XGBoost models.

Endpoints:
- POST /ml?phase=dev|prod  (multipart field data_file: CSV, or Arrow IPC from preprocess)
- GET  /health  (and /livez: the process is up, nothing else asked)
- POST /feedback?model=NAME  (multipart data_file: batch_id, row and the true label)
- GET  /monitoring?model=NAME[&version=&batch_id=&since=&until=]  and  /monitoring/report
- GET  /metrics  (Prometheus)
"""

from __future__ import annotations


def create_app(test_config: dict | None = None):
    """The trainer's Flask app (trainer/app.py; gunicorn runs `trainer:create_app()`)."""
    # Imported on call: a Dask worker or a test importing one trainer module (trainer.fit...)
    # then loads that module alone, not the whole service.
    from trainer.app import create_app as build

    return build(test_config)
