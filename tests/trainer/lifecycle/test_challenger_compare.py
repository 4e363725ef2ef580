"""Which challengers cannot be compared with the champion on the same labels, and a
challenger made the champion ending its challenge."""

import json
from types import SimpleNamespace

import pytest

from trainer.lifecycle import champion
from trainer.lifecycle.challenger import difference


def model(target="bought", task="classification", columns=("size", "color")):
    return SimpleNamespace(profile={"target": target, "task": task}, required_columns=columns)


def test_the_same_question_is_comparable():
    assert difference(model(), model(columns=("size", "weight"))) is None


def test_another_target_task_or_the_champions_target_read_is_named():
    assert "target 'plan', the champion 'bought'" in difference(model(), model(target="plan"))
    assert "task 'regression'" in difference(model(), model(task="regression"))
    why = difference(model(target="plan"), model(columns=("size", "plan")))
    assert "target 'bought', the champion 'plan'" in why
    assert "columns ['plan'], which prod rows lack" in why


class _Registry:
    """MLflow's registry with a challenger running (the alias and its tag)."""

    def __init__(self, challenger: str):
        self.aliases = {"champion": "1", "challenger": challenger}
        self.tags = {"sluice.challenger": json.dumps({"version": challenger})}
        self.version_tags = {}

    def __call__(self):  # stands in for MlflowClient()
        return self

    def get_registered_model(self, name):
        return SimpleNamespace(aliases=dict(self.aliases), tags=dict(self.tags))

    def set_registered_model_tag(self, name, key, value):
        self.tags[key] = value

    def delete_registered_model_tag(self, name, key):
        del self.tags[key]

    def set_model_version_tag(self, name, version, key, value):
        self.version_tags[(version, key)] = value

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[alias] = version

    def delete_registered_model_alias(self, name, alias):
        del self.aliases[alias]


class _Cache:
    def notify_promoted(self, *args):
        pass


@pytest.mark.parametrize("challenger", ["2", "3"])
def test_the_challenger_made_champion_ends_its_challenge(monkeypatch, challenger):
    fake = _Registry(challenger)
    monkeypatch.setattr(champion, "MlflowClient", fake)
    monkeypatch.setattr(champion.registry, "MlflowClient", fake)
    entry = champion.move_champion("m", "2", "1", "why", "gate", _Cache(), ("run", None))
    history = champion.history_of(fake.tags)
    if challenger == "2":  # promoted: no challenger left, and the history says why
        assert fake.aliases == {"champion": "2"} and "sluice.challenger" not in fake.tags
        assert "challenge ended" in entry["challenge_ended"] == history[0]["challenge_ended"]
    else:  # another version challenges the new champion
        assert fake.aliases == {"champion": "2", "challenger": "3"}
        assert "sluice.challenger" in fake.tags and "challenge_ended" not in history[0]
