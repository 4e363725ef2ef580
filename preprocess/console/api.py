"""The console's calls to the trainer: the API relay's way (preprocess/forward.py), with the
stack's token, and the answer's error as an ApiError-like ConsoleError the page shows."""

from __future__ import annotations

import json
from urllib.parse import quote

from flask import current_app

from preprocess.forward import TrainerAnswer, relay


class ConsoleError(Exception):
    """An error answer of the API: its status and message, shown in the page's alert."""

    def __init__(self, status: int, message: str, code: str = "error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def bearer() -> str | None:
    """The Authorization header the API expects, when the stack has a token."""
    token = current_app.config["SLUICE_API_TOKEN"]
    return f"Bearer {token}" if token else None


def decoded(answer: TrainerAnswer) -> dict:
    """The answer's JSON object; ConsoleError with the API's message when it is an error."""
    try:
        body = json.loads(answer.body) if answer.body else {}
    except ValueError:
        body = None
    if answer.status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            raise ConsoleError(answer.status, str(error["message"]), str(error.get("code")))
        raise ConsoleError(answer.status, f"The trainer answered {answer.status}.")
    if not isinstance(body, dict):
        raise ConsoleError(502, "The trainer's answer was not a JSON object.")
    return body


def call(method: str, path: str, query: dict | None = None, body: dict | None = None) -> dict:
    """The trainer's JSON answer to one request (path segments from data are quoted here)."""
    config = current_app.config
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    query = {key: value for key, value in (query or {}).items() if value is not None}
    answer = relay(
        config["TRAINER_URL"],
        method,
        path,
        query or None,
        data,
        headers,
        bearer(),
        config["TRAINER_CONNECT_TIMEOUT"],
        config["TRAINER_READ_TIMEOUT"],
    )
    return decoded(answer)


def model_path(name: str, *rest: str) -> str:
    """/models/<name>/... with the name quoted as one path segment."""
    return "/".join(["/models", quote(name, safe=""), *rest])
