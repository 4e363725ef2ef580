"""The 503 (and 422) answers for failures of what the trainer depends on: the MLflow tracking
server and its own disk."""

from __future__ import annotations

import contextlib
import logging

import requests
from mlflow.exceptions import MlflowException

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import tracking_health

log = logging.getLogger(__name__)
# What the tracking server's failures look like from here. requests' errors are OSErrors too,
# so a local disk or lock failure (a plain OSError) is told apart below, not reported as
# "MLflow unreachable".
TRACKING_ERRORS = (MlflowException, requests.RequestException)


def tracking_unavailable(err: Exception) -> ApiError:
    """The 503 answered when the MLflow tracking server cannot be used."""
    log.warning("MLflow tracking server error: %s", err)
    return ApiError(
        error_codes.TRACKING_UNAVAILABLE,
        "The MLflow tracking server is not reachable; try again when it is back.",
    )


def tracking_refused_credentials(err: Exception) -> ApiError:
    """The 503 answered when the tracking server refuses the trainer's account."""
    log.error("MLflow refused the trainer's credentials: %s", err)
    return ApiError(
        error_codes.TRACKING_UNAUTHORIZED,
        "The MLflow tracking server refused the trainer's credentials; the operator must give "
        "the trainer the tracking server's account (MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_PASSWORD_FILE). Nothing was promoted.",
    )


def storage_unavailable(err: OSError) -> ApiError:
    """The 503 answered when the trainer cannot use its own disk (state directory, temp)."""
    log.error("trainer storage error: %s", err)
    return ApiError(
        error_codes.STORAGE_UNAVAILABLE,
        "The trainer could not write its local state (disk full, or permissions on "
        "TRAINER_STATE_DIR or the temp directory); the operator must fix it. Nothing was "
        "promoted.",
    )


@contextlib.contextmanager
def dependency_errors():
    """Turn tracking-server and local-disk failures into their 503 answers."""
    try:
        yield
    except TRACKING_ERRORS as err:
        if isinstance(err, MlflowException) and err.error_code == "INVALID_PARAMETER_VALUE":
            log.warning("MLflow refused a request: %s", err)  # it answered, and said no
            raise ApiError(
                error_codes.TRACKING_REJECTED,
                f"The MLflow tracking server refused this run ({str(err.message)[:300]}). "
                "Nothing was promoted.",
            ) from err
        if tracking_health.refuses_account(err):
            raise tracking_refused_credentials(err) from err
        raise tracking_unavailable(err) from err
    except OSError as err:
        raise storage_unavailable(err) from err
