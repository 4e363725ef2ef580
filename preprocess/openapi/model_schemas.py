"""The JSON Schemas of the /models routes' answers and bodies (trainer/lifecycle/catalogue.py,
champion.py, challenger.py), in the same dialect and spirit as schemas.py."""

from __future__ import annotations

from preprocess.openapi.schemas import (
    BOOLEAN,
    INTEGER,
    NULLABLE_NUMBER,
    NULLABLE_STRING,
    NUMBER,
    OBJECT,
    STRING,
    VERSION,
    nullable,
    obj,
    ref,
)

MODEL_SUMMARY = obj(
    {
        "name": STRING,
        "champion": NULLABLE_STRING,
        "challenger": {},
        "versions": INTEGER,
    },
    ("name", "champion"),
)

MODELS = obj(
    {"models": {"type": "array", "items": ref("ModelSummary")}, "next_page": NULLABLE_STRING},
    ("models", "next_page"),
)

MODEL_VERSION = obj(
    {
        "version": VERSION,
        "created": NULLABLE_STRING,
        "run_id": NULLABLE_STRING,
        "metrics": OBJECT,
        "promotion": nullable(OBJECT),
        "trusted": BOOLEAN,
        "data": nullable(OBJECT),
    },
    ("version",),
)

CHAMPION_CHANGE = obj(
    {"at": STRING, "from": NULLABLE_STRING, "to": STRING, "reason": STRING, "by": STRING}
)

MODEL_DETAIL = obj(
    {
        "name": STRING,
        "champion": NULLABLE_STRING,
        "challenger": {},
        "versions": {"type": "array", "items": ref("ModelVersion")},
        "versions_total": INTEGER,
        "next_page": NULLABLE_STRING,
        "history": {"type": "array", "items": ref("ChampionChange")},
        "history_total": INTEGER,
    },
    ("name", "champion", "versions", "history"),
)

CHAMPION_SET = obj(
    {
        "model": STRING,
        "champion": VERSION,
        "previous": NULLABLE_STRING,
        "changed": BOOLEAN,
        "columns_changed": BOOLEAN,
        "schema_change": {},
        "history": nullable(ref("ChampionChange")),
    },
    ("model", "champion", "changed"),
)

CHALLENGER = obj(
    {
        "model": STRING,
        "version": VERSION,
        "mode": {"const": "shadow"},
        "started": STRING,
        "champion": NULLABLE_STRING,
    },
    ("model", "version", "mode"),
)

DECISIONS = ["promote", "keep", "continue", "inconclusive", "incomparable"]
COMPARISON = {
    "allOf": [
        ref("Challenger"),
        obj(
            {
                "metric": NULLABLE_STRING,
                "labelled_rows": INTEGER,
                "decision": {"type": "string", "enum": DECISIONS},
                "reason": STRING,
                "interval": nullable({"type": "array", "items": NUMBER}),
                "difference": NULLABLE_NUMBER,
                "champion_score": NULLABLE_NUMBER,
                "challenger_score": NULLABLE_NUMBER,
                "coverage": NULLABLE_NUMBER,
                "batches": OBJECT,
                "latency_ms": OBJECT,
                "errors": OBJECT,
                "promoted": {},
            },
            ("decision", "reason"),
        ),
    ]
}

CHALLENGER_ENDED = obj({"model": STRING, "ended": nullable(OBJECT)}, ("model", "ended"))

CHAMPION_REQUEST = obj(
    {
        "version": {"type": ["string", "integer"], "examples": ["2"]},
        "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
    },
    ("version", "reason"),
)
CHALLENGER_REQUEST = obj(
    {
        "version": {"type": ["string", "integer"], "examples": ["3"]},
        "mode": {"const": "shadow"},
    },
    ("version",),
)
RETRAIN_REQUEST = obj(
    {"promote": {"type": "string", "enum": ["auto", "never"]}}, additionalProperties=False
)


def components() -> dict:
    """components/schemas of the /models routes."""
    return {
        "ModelSummary": MODEL_SUMMARY,
        "Models": MODELS,
        "ModelVersion": MODEL_VERSION,
        "ChampionChange": CHAMPION_CHANGE,
        "ModelDetail": MODEL_DETAIL,
        "ChampionSet": CHAMPION_SET,
        "Challenger": CHALLENGER,
        "Comparison": COMPARISON,
        "ChallengerEnded": CHALLENGER_ENDED,
        "ChampionRequest": CHAMPION_REQUEST,
        "ChallengerRequest": CHALLENGER_REQUEST,
        "RetrainRequest": RETRAIN_REQUEST,
    }
