"""The /models paths: the trainer's routes, which preprocess relays as they are (the tests
check them against the trainer's url map)."""

from __future__ import annotations

from preprocess.openapi.operations import (
    LIMIT,
    NAME,
    PAGE,
    RELAYED,
    accepted,
    errors,
    json_body,
    ok,
    op,
    query,
)


def model_paths() -> dict:
    """The catalogue, champions, challengers and retrains."""
    on_model = (*RELAYED, 404, 409)
    return {
        "/models": {
            "get": op(
                "Sluice's models: champion, challenger and versions registered",
                {"200": ok("Models", "A page of models.", "models"), **errors(*RELAYED)},
                "models",
                parameters=[LIMIT, PAGE],
            )
        },
        "/models/{name}": {
            "parameters": [NAME],
            "get": op(
                "A model's versions with their evidence (newest first) and its history",
                {"200": ok("ModelDetail", "The model.", "model"), **errors(*RELAYED, 404)},
                "models",
                parameters=[LIMIT, PAGE],
            ),
        },
        "/models/{name}/champion": {
            "parameters": [NAME],
            "post": op(
                "Make a version the champion (promotion or rollback), with the reason",
                {
                    "200": ok("ChampionSet", "The champion now.", "champion"),
                    **errors(*on_model, 413, 422),
                },
                "models",
                requestBody=json_body("ChampionRequest", {"version": "2", "reason": "rollback"}),
            ),
        },
        "/models/{name}/challenger": {
            "parameters": [NAME],
            "put": op(
                "Start a shadow challenger",
                {
                    "201": ok("Challenger", "Started.", "challenger"),
                    "200": ok("Challenger", "That version already runs."),
                    **errors(*on_model, 413),
                },
                "models",
                requestBody=json_body("ChallengerRequest", {"version": "3", "mode": "shadow"}),
            ),
            "get": op(
                "The paired comparison of challenger and champion on labelled rows",
                {"200": ok("Comparison", "The comparison.", "comparison"), **errors(*on_model)},
                "models",
                parameters=[query("metric", {"type": "string"}, "The metric compared.")],
            ),
            "delete": op(
                "End the challenge; the answer holds its last comparison",
                {"200": ok("ChallengerEnded", "Ended."), **errors(*on_model)},
                "models",
            ),
        },
        "/models/{name}/retrain": {
            "parameters": [NAME],
            "post": op(
                "Retrain on the champion's rows plus the labelled prod rows (a job)",
                {"202": accepted("Queued."), **errors(*on_model, 413)},
                "models",
                requestBody=json_body("RetrainRequest", {"promote": "never"}, required=False),
            ),
        },
    }
