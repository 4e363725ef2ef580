"""Parse the query parameters and upload shared by /analyze and /ml."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flask import Request

from sluice_common import error_codes
from sluice_common.choices import PHASES, PROMOTE_MODES, TASKS
from sluice_common.errors import ApiError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Params:
    """Validated request parameters."""

    phase: str
    model: str
    target: str | None
    task: str
    promote: str
    proba: bool
    data_uri: str | None = None
    output_uri: str | None = None
    key: str | None = None
    run_async: bool = False

    def as_query(self) -> dict[str, str]:
        """The parameters as a query string mapping, to forward to the trainer."""
        query = {
            "phase": self.phase,
            "model": self.model,
            "task": self.task,
            "promote": self.promote,
            "proba": "true" if self.proba else "false",
        }
        if self.target is not None:
            query["target"] = self.target
        for name, value in (
            ("data_uri", self.data_uri),
            ("output_uri", self.output_uri),
            ("key", self.key),
        ):
            if value is not None:
                query[name] = value
        if self.run_async:
            query["async"] = "true"
        return query


# The code refusing each parameter, by name (`missing_<name>`, `invalid_<name>`).
_MISSING = {"phase": error_codes.MISSING_PHASE}
_INVALID = {
    "phase": error_codes.INVALID_PHASE,
    "task": error_codes.INVALID_TASK,
    "promote": error_codes.INVALID_PROMOTE,
    "data_uri": error_codes.INVALID_DATA_URI,
    "output_uri": error_codes.INVALID_OUTPUT_URI,
    "key": error_codes.INVALID_KEY,
}


def _choice(args, name: str, choices: tuple[str, ...], default: str | None) -> str:
    value = args.get(name, default)
    if value is None:
        raise ApiError(_MISSING[name], f"Add ?{name}=... to the URL; one of: {', '.join(choices)}.")
    value = value.strip().lower()
    if value not in choices:
        raise ApiError(
            _INVALID[name], f"{name} must be one of {', '.join(choices)}; got {value[:40]!r}."
        )
    return value


KNOWN_PARAMS = (
    "phase",
    "model",
    "target",
    "task",
    "promote",
    "proba",
    "data_uri",
    "output_uri",
    "key",
    "async",
)
FEEDBACK_PARAMS = ("model",)
MONITORING_PARAMS = ("model", "version", "batch_id", "since", "until")


def _check_names(args, known: tuple[str, ...] = KNOWN_PARAMS) -> None:
    """A misspelt parameter (`targte=`) would otherwise be ignored and its default used, and
    of a repeated one only the first would count: both are refused, saying which."""
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ApiError(
            error_codes.UNKNOWN_PARAMETER,
            f"Unknown query parameter(s): {', '.join(repr(n[:40]) for n in unknown[:5])}"
            + (f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else "")
            + f"; the known ones are {', '.join(known)}.",
        )
    refuse_repeated(args, known)


def refuse_repeated(args, names) -> None:
    """Of a parameter given twice only the first would count: refused, saying which."""
    repeated = [name for name in names if len(args.getlist(name)) > 1]
    if repeated:
        raise ApiError(
            error_codes.REPEATED_PARAMETER,
            f"Give each parameter once; repeated: {', '.join(repeated)}.",
        )


def model_name(args, default_model: str) -> str:
    """The model parameter, checked."""
    model = args.get("model", default_model).strip()
    if not MODEL_NAME.match(model):
        raise ApiError(
            error_codes.INVALID_MODEL_NAME,
            "model must be 1-64 characters of letters, digits, '_', '-' or '.', "
            f"starting with a letter or digit; got {model[:70]!r}.",
        )
    return model


VERSION = re.compile(r"^[0-9]{1,12}$")
BATCH_ID = re.compile(r"^[0-9a-f]{32}$")


def parse_monitoring_params(args, default_model: str) -> dict:
    """model, version, batch_id, since and until of GET /monitoring (times left as text)."""
    _check_names(args, MONITORING_PARAMS)
    query = {"model": model_name(args, default_model)}
    version = args.get("version")
    if version is not None:
        version = version.strip().lstrip("v")
        if not VERSION.match(version):
            raise ApiError(error_codes.INVALID_VERSION, "version must be a version number, e.g. 3.")
    batch_id = args.get("batch_id")
    if batch_id is not None:
        batch_id = batch_id.strip().lower()
        if not BATCH_ID.match(batch_id):
            raise ApiError(
                error_codes.INVALID_BATCH_ID,
                "batch_id must be the 32-character id of a prod answer.",
            )
    query.update(version=version, batch_id=batch_id)
    query.update(since=args.get("since"), until=args.get("until"))
    return query


def parse_feedback_params(args, default_model: str) -> str:
    """The model of POST /feedback."""
    _check_names(args, FEEDBACK_PARAMS)
    return model_name(args, default_model)


def parse_params(args, default_model: str) -> Params:
    """Validate phase, model, target, task, promote and proba from the query string."""
    _check_names(args)
    phase = _choice(args, "phase", PHASES, None)
    model = model_name(args, default_model)
    target = args.get("target")
    if target is not None:
        target = target.strip()
        if not target or len(target) > 512:
            raise ApiError(error_codes.INVALID_TARGET, "target must name a column of the file.")
    proba_text = args.get("proba", "false").strip().lower()
    if proba_text not in TRUE_WORDS | FALSE_WORDS:
        raise ApiError(error_codes.INVALID_PROBA, "proba must be true or false.")
    async_text = args.get("async", "false").strip().lower()
    if async_text not in TRUE_WORDS | FALSE_WORDS:
        raise ApiError(error_codes.INVALID_ASYNC, "async must be true or false.")
    data_uri, output_uri, key = (_text(args, name) for name in ("data_uri", "output_uri", "key"))
    if output_uri is not None and (data_uri is None or phase != "prod"):
        raise ApiError(
            error_codes.OUTPUT_URI_NEEDS_DATA_URI,
            "output_uri is for prod by reference: give data_uri=... and phase=prod with it.",
        )
    if data_uri is not None and phase == "prod" and output_uri is None:
        raise ApiError(
            error_codes.MISSING_OUTPUT_URI,
            "Prod by reference writes its predictions to a file: add output_uri=NAME.parquet "
            "(or .csv) under the data root or an allowed bucket.",
        )
    if key is not None and data_uri is None:
        raise ApiError(error_codes.KEY_NEEDS_DATA_URI, "key= names a column copied to output_uri.")
    return Params(
        phase=phase,
        model=model,
        target=target,
        task=_choice(args, "task", TASKS, "auto"),
        promote=_choice(args, "promote", PROMOTE_MODES, "auto"),
        proba=proba_text in TRUE_WORDS,
        data_uri=data_uri,
        output_uri=output_uri,
        key=key,
        run_async=async_text in TRUE_WORDS,
    )


def _text(args, name: str, limit: int = 2048) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > limit:
        raise ApiError(_INVALID[name], f"{name} must be 1-{limit} characters.")
    return value


# The JSON bodies of the /models routes are a few fields: a larger one is refused unparsed.
JSON_BODY_MAX_BYTES = 64 * 1024


def json_object(request: Request, example: str, optional: bool = False) -> dict:
    """The request's body as a JSON object (`example` shows one in the error); with
    `optional`, no body at all is {}. Anything else is a 400, also JSON nested deeper than
    the parser follows (a RecursionError, which would otherwise be a 500)."""
    raw = request.get_data(cache=False)
    if len(raw) > JSON_BODY_MAX_BYTES:
        raise ApiError(
            error_codes.JSON_BODY_TOO_LARGE,
            f"The body is {len(raw):,} bytes; these requests take a JSON object of at most "
            f"{JSON_BODY_MAX_BYTES:,} bytes, e.g. {example}.",
        )
    if optional and not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(
            error_codes.NOT_A_JSON_OBJECT,
            f"The body must be a JSON object{' or nothing' if optional else ''}, e.g. {example}.",
        )
    return body


def shown(value, limit: int = 40) -> str:
    """A JSON body's value as an error quotes it: a string cut to `limit` characters and then
    quoted (so the quotes stay whole), anything else as JSON, a long one by its kind."""
    if isinstance(value, str):
        return json.dumps(value[:limit]) + ("…" if len(value) > limit else "")
    text = json.dumps(value)
    if len(text) <= limit:
        return text
    kind = {dict: "an object", list: "an array"}.get(type(value), "a value")
    return f"{kind} of {len(text):,} characters"


def version_field(body: dict, model: str, example: str) -> str:
    """The body's "version" of `model`, as MLflow names it ("007" and 7 are "7")."""
    version = body.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not VERSION.match(version.strip()):
        raise ApiError(
            error_codes.INVALID_VERSION,
            f"version must be a version number of {model!r}, e.g. {json.dumps(example)}; got "
            f"{shown(version)}.",
        )
    return str(int(version.strip()))


def uploaded_files(request: Request):
    """The request's file parts; a multipart body that cannot be read is a clear 400 (the app's
    StrictFormRequest raises ValueError for it instead of dropping it)."""
    try:
        return request.files
    except ValueError as err:
        received = f" ({request.content_length:,} bytes received)" if request.content_length else ""
        raise ApiError(
            error_codes.MALFORMED_MULTIPART,
            f"The multipart body cannot be read: {err}{received}. It is cut off (a client or "
            "proxy that stopped mid-upload) or not multipart/form-data; send the whole file, "
            "e.g. curl -F data_file=@data.csv.",
        ) from err


def read_upload(request: Request, raw_types: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """The bytes and declared media type of the `data_file` field.

    A request whose own media type is in `raw_types` carries the data as its whole body.
    """
    if request.mimetype in raw_types:
        return request.get_data(cache=False), request.mimetype
    files = uploaded_files(request)
    upload = files.get("data_file")
    if upload is None:
        hint = ""
        if files:
            hint = f" (got field(s): {', '.join(sorted(files)[:5])})"
        raise ApiError(
            error_codes.MISSING_FILE,
            "Send the CSV as a multipart form field named data_file, "
            f"e.g. curl -F data_file=@data.csv{hint}.",
        )
    if len(files.getlist("data_file")) > 1:
        raise ApiError(
            error_codes.MULTIPLE_FILES,
            "Send exactly one data_file field; this request has "
            f"{len(files.getlist('data_file'))}.",
        )
    return upload.read(), (upload.mimetype or "")
