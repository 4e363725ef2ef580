"""Every error code Sluice answers, declared once: its HTTP status and what it means.

Raise sites name an entry (`raise ApiError(error_codes.MALFORMED_CSV, "...")`); the status
comes from here. docs/reference/errors.md is this table (`python -m sluice_common.errors`),
and tests/sluice_common/test_error_codes.py keeps the code, this file and that page in step.
No Flask here: the core raises these without importing the web layer.

A code answered with two statuses has two entries (same code, each its own status and
meaning), so every answer's status is the one the table gives for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """A machine code, the HTTP status it is answered with, and a one-line meaning.

    `status` is None only for `http_error`, which carries the status of the HTTP error it
    stands for."""

    code: str
    status: int | None
    meaning: str


# -- HTTP, before any view: werkzeug's own errors, gunicorn's parser, the body worker ---------
BAD_REQUEST = ErrorCode(
    "bad_request", 400, "The HTTP request itself could not be read (framing, headers, form)."
)
UNAUTHORIZED = ErrorCode(
    "unauthorized", 401, "SLUICE_API_TOKEN is set and the bearer token is missing or wrong."
)
CROSS_SITE_REQUEST = ErrorCode(
    "cross_site_request",
    403,
    "A browser sent a request other than GET/HEAD/OPTIONS from another site's page (its "
    "Sec-Fetch-Site, or its Origin, says so): call the API from a program or this stack's pages.",
)
HOST_NOT_ALLOWED = ErrorCode(
    "host_not_allowed",
    403,
    "The Host header names a host with a dot that SLUICE_ALLOWED_HOSTS does not list (a defence "
    "against DNS rebinding); IP addresses, localhost and dotless names are always accepted.",
)
NOT_FOUND = ErrorCode("not_found", 404, "No such endpoint.")
METHOD_NOT_ALLOWED = ErrorCode(
    "method_not_allowed", 405, "The endpoint exists but not with this HTTP method."
)
UPLOAD_TOO_SLOW = ErrorCode(
    "upload_too_slow",
    408,
    "The request (head or body) arrived slower than BODY_MIN_RATE_KB KB/s on average after "
    "BODY_SECONDS of grace.",
)
UPLOAD_TOO_LARGE = ErrorCode(
    "upload_too_large",
    413,
    "The body is over MAX_UPLOAD_MB, or its table holds more rows or cells than that allows.",
)
TOO_MANY_FORM_PARTS = ErrorCode(
    "too_many_form_parts", 413, "A multipart form of more than 1,000 parts, however small."
)
FORM_FIELD_TOO_LARGE = ErrorCode(
    "form_field_too_large",
    413,
    "A text (non-file) form field over 500,000 bytes, as `curl -F data_file=<file.csv` sends "
    "the file (use `@`).",
)
REQUEST_LINE_TOO_LONG = ErrorCode(
    "request_line_too_long", 414, "URL and query string over 8,190 bytes (answered by gunicorn)."
)
UNSUPPORTED_MEDIA_TYPE = ErrorCode(
    "unsupported_media_type", 415, "The request's media type is not one the endpoint reads."
)
HEADERS_TOO_LARGE = ErrorCode(
    "headers_too_large", 431, "More than 100 request headers, or one over 8,190 bytes."
)
HTTP_ERROR = ErrorCode(
    "http_error", None, "Any other HTTP error of the web framework, with its own status."
)
INTERNAL_ERROR = ErrorCode(
    "internal_error", 500, "A bug, not bad input: the details are in the service log."
)
BUSY = ErrorCode(
    "busy",
    503,
    "Every heavy-request slot (or job slot) is taken and the queue full, or more large bodies "
    "arrive at once than a worker has threads; `Retry-After` says when to try again.",
)

# -- query parameters -------------------------------------------------------------------------
UNKNOWN_PARAMETER = ErrorCode(
    "unknown_parameter", 400, "A query parameter the endpoint does not know (a typo?)."
)
REPEATED_PARAMETER = ErrorCode("repeated_parameter", 400, "A query parameter given twice.")
MISSING_PHASE = ErrorCode("missing_phase", 400, "The query has no phase (dev or prod).")
INVALID_PHASE = ErrorCode("invalid_phase", 400, "phase is neither dev nor prod.")
INVALID_TASK = ErrorCode(
    "invalid_task", 400, "task is not one of auto, classification, regression."
)
INVALID_PROMOTE = ErrorCode("invalid_promote", 400, "promote is not one of auto, always, never.")
INVALID_PROBA = ErrorCode("invalid_proba", 400, "proba is not true or false.")
INVALID_ASYNC = ErrorCode("invalid_async", 400, "async is not true or false.")
INVALID_MODEL_NAME = ErrorCode(
    "invalid_model_name", 400, "model is not 1-64 letters, digits, '_', '-' or '.'."
)
INVALID_TARGET = ErrorCode("invalid_target", 400, "target is empty or over 512 characters.")
INVALID_VERSION = ErrorCode("invalid_version", 400, "version is not a version number.")
INVALID_BATCH_ID = ErrorCode(
    "invalid_batch_id", 400, "batch_id in the query is not the 32-character id of a prod answer."
)
INVALID_SINCE = ErrorCode("invalid_since", 400, "since is not an ISO 8601 time.")
INVALID_UNTIL = ErrorCode("invalid_until", 400, "until is not an ISO 8601 time.")
INVALID_WINDOW = ErrorCode("invalid_window", 400, "since is not before until.")
INVALID_DATA_URI = ErrorCode(
    "invalid_data_uri", 400, "data_uri is empty, too long, holds a NUL or a bad s3:// URI."
)
INVALID_OUTPUT_URI = ErrorCode(
    "invalid_output_uri", 400, "output_uri is not one new .parquet or .csv file in a folder."
)
INVALID_KEY = ErrorCode("invalid_key", 400, "key is empty or over 2,048 characters.")
OUTPUT_URI_NEEDS_DATA_URI = ErrorCode(
    "output_uri_needs_data_uri", 400, "output_uri is given without data_uri and phase=prod."
)
MISSING_OUTPUT_URI = ErrorCode(
    "missing_output_uri", 400, "Prod by reference without an output_uri for its predictions."
)
KEY_NEEDS_DATA_URI = ErrorCode("key_needs_data_uri", 400, "key is given without data_uri.")
DATA_URI_AND_FILE = ErrorCode(
    "data_uri_and_file", 400, "Both a data_uri and an uploaded data_file: give one."
)
INVALID_JOB_ID = ErrorCode("invalid_job_id", 400, "The job id is not the 32-character id.")
INVALID_LIMIT = ErrorCode(
    "invalid_limit", 400, "limit (GET /jobs, GET /models) is not a whole number in its range."
)

# -- the uploaded file ------------------------------------------------------------------------
MISSING_FILE = ErrorCode("missing_file", 400, "No multipart field named data_file.")
MULTIPLE_FILES = ErrorCode("multiple_files", 400, "More than one data_file field.")
MALFORMED_MULTIPART = ErrorCode(
    "malformed_multipart", 400, "A multipart body that is cut off or not multipart."
)
EMPTY_FILE = ErrorCode("empty_file", 400, "The file is empty or has no header row.")
NO_ROWS = ErrorCode("no_rows", 400, "The file has a header but no data rows.")
NOT_CSV = ErrorCode("not_csv", 400, "The upload is not text (an image, an archive, a binary).")
MALFORMED_CSV = ErrorCode(
    "malformed_csv", 400, "The CSV cannot be parsed (ragged rows, quotes, a title line)."
)
DUPLICATE_COLUMNS = ErrorCode("duplicate_columns", 400, "Two columns have the same name.")
TOO_MANY_COLUMNS = ErrorCode("too_many_columns", 400, "More columns than Sluice reads.")
MALFORMED_ARROW = ErrorCode(
    "malformed_arrow", 400, "An Arrow body (from preprocess) that is not what preprocess sends."
)
ARROW_NOT_ALLOWED = ErrorCode(
    "arrow_not_allowed", 403, "An Arrow body without preprocess's internal token: send a CSV."
)

# -- data by reference ------------------------------------------------------------------------
DATA_ROOT_NOT_CONFIGURED = ErrorCode(
    "data_root_not_configured", 400, "A local data_uri, but SLUICE_DATA_ROOT is not set."
)
OUTSIDE_DATA_ROOT = ErrorCode(
    "outside_data_root", 400, "The path (or a link it names) leads outside SLUICE_DATA_ROOT."
)
UNSUPPORTED_DATA_URI = ErrorCode(
    "unsupported_data_uri", 400, "A data_uri scheme other than a path or s3://."
)
UNSUPPORTED_FORMAT = ErrorCode(
    "unsupported_format", 400, "A named file is neither .csv nor .parquet."
)
INVALID_PARQUET = ErrorCode("invalid_parquet", 400, "A .parquet file that is not readable Parquet.")
TOO_MANY_FILES = ErrorCode("too_many_files", 400, "The data_uri matches more files than are read.")
DATA_URI_TOO_BROAD = ErrorCode(
    "data_uri_too_broad", 400, "Listing the data_uri took too long: point at a narrower folder."
)
BUCKET_NOT_ALLOWED = ErrorCode(
    "bucket_not_allowed", 403, "An s3:// bucket not listed in SLUICE_DATA_BUCKETS."
)
S3_ACCESS_DENIED = ErrorCode(
    "s3_access_denied", 403, "The object store refused the trainer's credentials."
)
NO_DATA_FILES = ErrorCode(
    "no_data_files", 404, "No .csv or .parquet file matches the data_uri (or it vanished)."
)
OUTPUT_EXISTS = ErrorCode(
    "output_exists", 409, "The output_uri file exists already: predictions never overwrite."
)
OUTPUT_IN_PROGRESS = ErrorCode(
    "output_in_progress", 409, "Another job is writing that output_uri (or left a .partial)."
)
DATA_FILE_TOO_LARGE = ErrorCode(
    "data_file_too_large", 413, "One file is over the per-file limit: split it."
)
DATA_TOO_LARGE_FOR_ONE_MACHINE = ErrorCode(
    "data_too_large_for_one_machine",
    413,
    "The files exceed DATA_LOCAL_MAX_MB and no Dask cluster is configured.",
)
COLUMNS_DIFFER = ErrorCode(
    "columns_differ", 422, "The files of one data_uri do not have the same columns."
)
UNSUPPORTED_COLUMN = ErrorCode(
    "unsupported_column", 422, "A Parquet column of a type Sluice does not read (nested, binary)."
)
UNKNOWN_KEY = ErrorCode("unknown_key", 422, "The key column is not in the input files.")
INVALID_KEY_COLUMN = ErrorCode(
    "invalid_key", 422, "The key column would collide with an output column: rename it."
)
S3_UNAVAILABLE = ErrorCode("s3_unavailable", 503, "The object store could not be read.")

# -- training (dev) ---------------------------------------------------------------------------
UNKNOWN_TARGET = ErrorCode("unknown_target", 422, "The target column is not in the file.")
EMPTY_TARGET = ErrorCode("empty_target", 422, "The target column has no values.")
SINGLE_CLASS = ErrorCode("single_class", 422, "The target has one value: nothing to classify.")
NO_REPEATED_CLASSES = ErrorCode(
    "no_repeated_classes",
    422,
    "Every class of the target has a single row (`rows`, `distinct_values`): pick the target "
    "with `target=`.",
)
TOO_MANY_CLASSES = ErrorCode("too_many_classes", 422, "More target classes than supported.")
TOO_FEW_ROWS = ErrorCode(
    "too_few_rows", 422, "Too few rows (or distinct rows) with a readable target to train on."
)
TARGET_NOT_NUMERIC = ErrorCode(
    "target_not_numeric", 422, "task=regression with a target that is not numbers."
)
AMBIGUOUS_TARGET = ErrorCode(
    "ambiguous_target",
    422,
    "A target of mostly numbers with over 20 distinct values and some text: clean it, or "
    "`task=classification`.",
)
NO_USABLE_FEATURES = ErrorCode(
    "no_usable_features",
    422,
    "Every column besides the target was dropped (the reasons are given), or the file read as "
    "one column (the message names the delimiters tried).",
)
TRACKING_REJECTED = ErrorCode(
    "tracking_rejected", 422, "MLflow answered and refused the run; nothing was promoted."
)

# -- models and prod --------------------------------------------------------------------------
MODEL_NOT_FOUND = ErrorCode("model_not_found", 404, "No model of that name was ever trained.")
NO_CHAMPION = ErrorCode(
    "no_champion",
    409,
    "The model has versions but no champion alias; the message says why its latest version "
    "was not promoted (`latest_version`, `latest_rule`) and what to do.",
)
UNTRUSTED_CHAMPION = ErrorCode(
    "untrusted_champion",
    409,
    "The champion alias points at a version Sluice did not sign, and no trusted champion was "
    "served before.",
)
RULES_UNAVAILABLE = ErrorCode(
    "rules_unavailable", 409, "The champion's cell rules cannot be sent to the cluster: retrain."
)
MISSING_COLUMNS = ErrorCode(
    "missing_columns",
    422,
    "The file lacks columns the model (or the feedback) needs: `missing_columns`, and "
    "`candidate_version` when a newer, unpromoted version reads the file.",
)
INVALID_VALUES = ErrorCode("invalid_values", 422, "Some values could not be scored.")
TRACKING_UNAVAILABLE = ErrorCode(
    "tracking_unavailable",
    503,
    "The MLflow tracking server is not reachable: dev fails fast; prod keeps serving loaded "
    "champions.",
)
TRACKING_UNAUTHORIZED = ErrorCode(
    "tracking_unauthorized",
    503,
    "MLflow refuses the trainer's account: fix MLFLOW_TRACKING_PASSWORD.",
)
STORAGE_UNAVAILABLE = ErrorCode(
    "storage_unavailable", 503, "The trainer cannot write its state directory."
)
SIGNING_FAILED = ErrorCode(
    "signing_failed", 503, "The logged model was not what Sluice wrote; it was not registered."
)

# -- monitoring and feedback ------------------------------------------------------------------
MONITORING_OFF = ErrorCode("monitoring_off", 404, "MONITORING_ENABLED=0 on this trainer.")
NO_MONITORING_DATA = ErrorCode(
    "no_monitoring_data", 404, "No prod batch of that model (or version) is recorded."
)
UNKNOWN_BATCH = ErrorCode("unknown_batch", 404, "A batch_id that is not recorded.")
PREDICTIONS_EXPIRED = ErrorCode(
    "predictions_expired", 410, "The batch's predictions are past MONITORING_RETENTION_*."
)
INVALID_BATCH_ID_IN_LABELS = ErrorCode(
    "invalid_batch_id", 422, "A batch_id in the feedback file is not the id of a prod answer."
)
BATCH_OF_ANOTHER_MODEL = ErrorCode(
    "batch_of_another_model", 422, "Feedback names batches another model scored."
)
INVALID_ROW = ErrorCode("invalid_row", 422, "A feedback row number is not a whole number >= 0.")
ROW_OUT_OF_RANGE = ErrorCode("row_out_of_range", 422, "A feedback row is beyond its batch.")
NO_REFERENCE_PROFILE = ErrorCode(
    "no_reference_profile", 422, "The version was trained before Sluice monitored models."
)
UNREADABLE_LABELS = ErrorCode(
    "unreadable_labels", 422, "Labels that are not what the model predicts."
)
CONFLICTING_LABELS = ErrorCode(
    "conflicting_labels", 422, "One row of a batch has two different labels in the file."
)

# -- the model catalogue (/models) ------------------------------------------------------------
UNKNOWN_MODEL = ErrorCode(
    "unknown_model", 404, "No model of that name is registered by Sluice (GET /models lists them)."
)
UNKNOWN_VERSION = ErrorCode(
    "unknown_version", 404, "The model has no version of that number (GET /models/<name>)."
)
UNTRUSTED_VERSION = ErrorCode(
    "untrusted_version",
    409,
    "The version's files do not carry this trainer's signature: it cannot be made the champion.",
)
JSON_BODY_TOO_LARGE = ErrorCode(
    "json_body_too_large", 413, "A JSON request body (the /models routes) over 64 KiB."
)
NOT_A_JSON_OBJECT = ErrorCode(
    "not_a_json_object", 400, "The body is not a JSON object (send Content-Type: application/json)."
)
INVALID_REASON = ErrorCode(
    "invalid_reason", 400, "reason is missing, not a string, empty, or over 1,000 characters."
)
INVALID_PAGE = ErrorCode(
    "invalid_page", 400, "page is not a token a previous answer gave as next_page."
)

# -- jobs (async=true) ------------------------------------------------------------------------
JOB_NOT_FOUND = ErrorCode("job_not_found", 404, "No job of that id is recorded.")
JOB_FINISHED = ErrorCode("job_finished", 409, "DELETE of a job that already finished.")
JOB_CANCELLED = ErrorCode("job_cancelled", 499, "A job's error: it was cancelled (DELETE).")
JOB_ERROR = ErrorCode("job_error", 500, "A job's error: it failed unexpectedly (see the log).")
JOB_INTERRUPTED = ErrorCode(
    "job_interrupted", 503, "A job's error: the trainer restarted or lost it while it ran."
)

# -- retraining (POST /models/<name>/retrain) --------------------------------------------------
INVALID_RETRAIN_OPTIONS = ErrorCode(
    "invalid_retrain_options",
    400,
    'The retrain body has keys other than "promote", or promote is not "auto" or "never".',
)
TRAINING_ROWS_NOT_KEPT = ErrorCode(
    "training_rows_not_kept",
    409,
    "The champion's training rows are not in the artifact store (too large, trained on a "
    "cluster, or trained before Sluice kept them): train a version with phase=dev first.",
)
NO_LABELS = ErrorCode(
    "no_labels",
    409,
    "No prod row of the model has both a label (POST /feedback) and its kept cells.",
)
RETRAIN_RUNNING = ErrorCode(
    "retrain_running", 409, "A retrain of the model is queued or running; follow its job."
)
NO_NEW_LABELS = ErrorCode(
    "no_new_labels",
    409,
    "No label arrived since the champion's training rows were read: a retrain would train on "
    "the same rows. Send labels to /feedback first.",
)

# -- the Dask cluster -------------------------------------------------------------------------
CLUSTER_TASK_FAILED = ErrorCode(
    "cluster_task_failed", 500, "A task failed on the Dask cluster (the message has its error)."
)
CLUSTER_TRAINING_FAILED = ErrorCode(
    "cluster_training_failed", 500, "Distributed training failed on the cluster."
)
CLUSTER_UNAVAILABLE = ErrorCode(
    "cluster_unavailable", 503, "The Dask scheduler does not answer, or has no workers."
)
CLUSTER_WORKER_LOST = ErrorCode(
    "cluster_worker_lost", 503, "A Dask worker died or left during the work."
)
CLUSTER_TRAINING_STALLED = ErrorCode(
    "cluster_training_stalled", 503, "Training on the cluster made no progress for too long."
)

# -- shadow challengers (/models/<name>/challenger) --------------------------------------------
NO_CHALLENGER = ErrorCode("no_challenger", 404, "The model has no challenger running.")
CHALLENGER_IS_CHAMPION = ErrorCode(
    "challenger_is_champion", 409, "The version asked to be the challenger is the champion."
)
CHALLENGER_RUNNING = ErrorCode(
    "challenger_running",
    409,
    "Another version is already the challenger: DELETE it first (a challenge is never replaced).",
)
CHALLENGER_INCOMPARABLE = ErrorCode(
    "challenger_incomparable",
    409,
    "The version predicts another target or task than the champion: no paired comparison.",
)
INVALID_MODE = ErrorCode("invalid_mode", 400, 'mode is not one Sluice runs ("shadow").')
INVALID_METRIC = ErrorCode("invalid_metric", 400, "metric is not one of the model's task.")

# -- preprocess in front of the trainer -------------------------------------------------------
TRAINER_UNAVAILABLE = ErrorCode(
    "trainer_unavailable", 503, "Preprocess cannot reach the trainer service."
)
TRAINER_TIMEOUT = ErrorCode(
    "trainer_timeout", 504, "The trainer did not answer preprocess in time."
)


def catalogue() -> list[ErrorCode]:
    """Every entry, in the order declared."""
    return [value for value in globals().values() if isinstance(value, ErrorCode)]


def entry(code: str, status: int | None) -> ErrorCode:
    """The entry of `code` answered with `status` (made up when not catalogued: an error
    pickled by another version of Sluice still rebuilds)."""
    for known in catalogue():
        if known.code == code and known.status == status:
            return known
    return ErrorCode(code, status, "")
