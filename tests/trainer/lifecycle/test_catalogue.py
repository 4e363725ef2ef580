"""The catalogue's and the champion history's pure parts: history entries and their order,
which registered models are Sluice's, challengers, lineage tags read back."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import pytest

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web import params
from trainer.lifecycle import catalogue, champion, lineage, pages


def test_history_keys_sort_in_time_order_and_entries_read_back_oldest_first():
    instants = [1_700_000_000_000_000_000, 999_999_999, 1_700_000_000_000_000_001]
    tags = {"sluice.model": "true", "other": "x"}
    for at_ns, (before, after) in zip(instants, [("1", "2"), (None, "1"), ("2", "1")], strict=True):
        entry = champion.history_entry(at_ns, before, after, f"to {after}", "api")
        tags[champion.history_key(at_ns)] = json.dumps(entry)
    tags[champion.history_key(5)] = "{not json"  # written by hand: skipped
    history = champion.history_of(tags)
    assert [(h["from"], h["to"]) for h in history] == [(None, "1"), ("1", "2"), ("2", "1")]
    assert history[0]["at"] == "1970-01-01T00:00:00.999Z"
    assert history[1]["at"] == "2023-11-14T22:13:20.000Z"  # 1.7e9 s, by hand


def test_a_history_entry_keeps_a_reason_a_tag_can_hold_and_names_who():
    entry = champion.history_entry(0, "1", "2", "x" * 5000, "gate")
    assert len(entry["reason"]) == champion.REASON_MAX_CHARS and entry["reason"].endswith("…")
    assert len(json.dumps(entry)) < 5000  # MLflow's tag limit
    with pytest.raises(ValueError):
        champion.history_entry(0, "1", "2", "why", "someone")


def _model(tags=None, aliases=None, latest=()):
    versions = [SimpleNamespace(version=str(v), tags=t) for v, t in latest]
    return SimpleNamespace(
        name="m", tags=tags or {}, aliases=aliases or {}, latest_versions=versions
    )


def test_sluice_models_are_known_by_their_tag_or_a_signed_version():
    assert catalogue.is_sluice(_model(tags={lineage.MODEL_TAG: "true"}))
    assert catalogue.is_sluice(_model(latest=[(3, {"sluice.signature": "sig"})]))
    assert not catalogue.is_sluice(_model(latest=[(3, {"other": "x"})]))
    assert not catalogue.is_sluice(_model())


def test_a_summary_names_champion_challenger_and_versions_registered():
    model = _model(
        tags={champion.CHALLENGER_TAG: json.dumps({"mode": "shadow", "at": "..."})},
        aliases={"champion": "2", "challenger": "3"},
        latest=[(7, {}), (5, {})],  # the newest version of each stage
    )
    assert catalogue.summary(model) == {
        "name": "m",
        "champion": "2",
        "challenger": {"version": "3", "mode": "shadow"},
        "versions": 7,
    }
    bare = _model(aliases={"challenger": "3"}, tags={champion.CHALLENGER_TAG: "[broken"})
    assert catalogue.summary(bare)["challenger"] == {"version": "3", "mode": None}
    assert catalogue.summary(_model())["champion"] is None


def test_lineage_tags_read_back_and_older_versions_fall_back_to_their_run():
    tags = lineage.lineage_tags("ab" * 8, 150, {"accuracy": 0.9, "log_loss": 0.2})
    facts = lineage.facts_of(SimpleNamespace(tags=tags))
    assert facts == {
        "digest": "ab" * 8,
        "rows": 150,
        "metrics": {"valid_accuracy": 0.9, "valid_log_loss": 0.2},
    }
    assert lineage.facts_of(SimpleNamespace(tags={})) is None
    dataset = SimpleNamespace(
        dataset=SimpleNamespace(digest="cd" * 8),
        tags=[SimpleNamespace(key="mlflow.data.context", value="training")],
    )
    run = SimpleNamespace(
        inputs=SimpleNamespace(dataset_inputs=[dataset]),
        data=SimpleNamespace(
            params={"n_train": "120", "n_valid": "30"},
            metrics={"valid_rmse": 1.5, "train_seconds": 0.3},
        ),
    )
    assert lineage.facts_of_run(run) == {
        "digest": "cd" * 8,
        "rows": 150,
        "metrics": {"valid_rmse": 1.5},
    }


class _Registry:
    """MLflow's registry as far as a champion change uses it, failing where told."""

    def __init__(self, fail_alias: bool):
        self.model_tags, self.version_tags, self.alias = {}, {}, "1"
        self.fail_alias = fail_alias

    def __call__(self):  # stands in for MlflowClient()
        return self

    def set_registered_model_tag(self, name, key, value):
        self.model_tags[key] = value

    def delete_registered_model_tag(self, name, key):
        del self.model_tags[key]

    def set_model_version_tag(self, name, version, key, value):
        self.version_tags[(version, key)] = value

    def delete_model_version_tag(self, name, version, key):
        del self.version_tags[(version, key)]

    def get_registered_model(self, name):
        return SimpleNamespace(aliases={"champion": self.alias}, tags=self.model_tags)

    def set_registered_model_alias(self, name, alias, version):
        self.recorded_first = bool(self.model_tags) and bool(self.version_tags)
        if self.fail_alias:
            raise ConnectionError("MLflow went away")
        self.alias = version


class _Cache:
    def __init__(self):
        self.notified = []

    def notify_promoted(self, *args):
        self.notified.append(args)


@pytest.mark.parametrize("fail_alias", [False, True])
def test_the_history_is_written_before_the_alias_and_taken_back_when_it_fails(
    monkeypatch, fail_alias
):
    fake, cache = _Registry(fail_alias), _Cache()
    monkeypatch.setattr(champion, "MlflowClient", fake)
    monkeypatch.setattr(champion.registry, "MlflowClient", fake)
    lineage_ = ("run-2", "ab" * 8)
    if fail_alias:
        with pytest.raises(ConnectionError):
            champion.move_champion("m", "2", "1", "why", "api", cache, lineage_)
        assert fake.alias == "1" and champion.history_of(fake.model_tags) == []
        assert fake.version_tags == {}
        assert cache.notified == []  # no worker told of a change that did not happen
    else:
        entry = champion.move_champion("m", "2", "1", "why", "api", cache, lineage_)
        assert fake.alias == "2" and champion.history_of(fake.model_tags) == [entry]
        assert fake.recorded_first  # the alias moved only once both tags were written
        assert json.loads(fake.version_tags[("2", champion.CHAMPION_TAG)])["reason"] == "why"
        assert cache.notified == [("m", "2", "run-2", "ab" * 8)]


KEY = b"k" * 32


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_page_token_goes_out_wrapped_and_comes_back_as_mlflow_gave_it():
    inner = _b64(json.dumps({"offset": 100}))
    token = pages.wrap(inner, "GET /models", KEY)
    assert inner not in token and re.fullmatch(r"[A-Za-z0-9_-]+\.[0-9a-f]{32}", token)
    assert pages.unwrap(token, "GET /models", KEY) == inner
    assert pages.wrap(inner.encode(), "GET /models", KEY) == token  # bytes, as some stores give
    assert pages.wrap(None, "GET /models", KEY) is None and pages.wrap("", "x", KEY) is None
    assert pages.unwrap(None, "GET /models", KEY) is None


def _signed_by_someone_else(inner: str) -> str:
    return pages.wrap(inner, "GET /models", b"another trainer's key")


def _changed(token: str) -> str:
    return ("A" if token[0] != "A" else "B") + token[1:]


FORGED = {
    "mlflow_token_as_is": _b64(json.dumps({"offset": 100})),
    "empty_list": "W10=",
    "huge_offset": _b64('{"offset": 1e308}'),
    "negative_offset": _b64('{"offset": -1}'),
    "true": _b64('{"offset": true}'),
    "fraction": _b64('{"offset": 1.5}'),
    "nonsense": "nonsense",
    "no_mac": pages.wrap(_b64('{"offset": 5}'), "GET /models", KEY).split(".")[0],
    "mac_of_another_listing": pages.wrap(_b64('{"offset": 5}'), "GET /models/m", KEY),
    "mac_of_another_key": _signed_by_someone_else(_b64('{"offset": 5}')),
    "inner_changed": _changed(pages.wrap(_b64('{"offset": 5}'), "GET /models", KEY)),
    "not_ascii": "é.0123",
    "dot_only": ".",
}


@pytest.mark.parametrize("token", FORGED.values(), ids=FORGED.keys())
def test_a_page_token_no_answer_gave_is_an_invalid_page(token):
    with pytest.raises(ApiError) as raised:
        pages.unwrap(token, "GET /models", KEY)
    assert raised.value.error_code is error_codes.INVALID_PAGE
    assert "next_page" in raised.value.message


def test_an_error_quotes_a_value_cut_before_it_is_quoted():
    assert params.shown("x" * 100) == json.dumps("x" * 40) + "…"
    assert params.shown('say "hi"') == '"say \\"hi\\""'
    assert params.shown(None) == "null" and params.shown(3.5) == "3.5"
    assert (
        params.shown(list(range(100))) == "an array of 390 characters"
    )  # 190 digits, 99 ", ", 2 brackets
