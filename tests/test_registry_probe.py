"""The trainer's shared health probe of the tracking server (lifecycle/registry.py: reachable)."""

from __future__ import annotations

import time

import mlflow
import pytest
import requests

from trainer.lifecycle import registry


class Answer:
    def __init__(self, ok: bool):
        self.ok = ok


@pytest.fixture
def probe(monkeypatch):
    """reachable() against a scripted /health: each call pops the next outcome."""
    outcomes, timeouts = [], []

    def get(url, timeout):
        timeouts.append(timeout)
        outcome = outcomes.pop(0)
        if outcome is None:
            raise requests.ConnectTimeout("no answer")
        return Answer(outcome)

    monkeypatch.setattr(registry.requests, "get", get)
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://127.0.0.1:9")
    monkeypatch.setattr(registry, "_probe", {"ok": True, "at": float("-inf")})
    return outcomes, timeouts


def test_a_server_that_just_came_up_is_believed_within_half_a_second(probe):
    outcomes, _ = probe
    registry._probe.update(ok=False)  # the stack is starting: MLflow not up yet
    outcomes.extend([None])
    assert registry.reachable() is False
    outcomes.append(True)
    time.sleep(registry.DOWN_MAX_AGE + 0.1)
    assert registry.reachable() is True  # not the stale "down" for two seconds


def test_one_missed_probe_of_a_server_that_was_up_gets_a_longer_second_look(probe):
    outcomes, timeouts = probe
    outcomes.extend([None, True])
    assert registry.reachable() is True
    assert timeouts == [registry.PROBE_SECONDS, registry.CONFIRM_SECONDS]
    assert registry.reachable() is True and len(timeouts) == 2  # "up" stands for a while


def test_a_server_marked_down_is_probed_with_the_short_timeout_only(probe):
    outcomes, timeouts = probe
    outcomes.extend([None, None])
    assert registry.reachable() is False  # short miss, then the second look
    time.sleep(registry.DOWN_MAX_AGE + 0.1)
    outcomes.append(None)
    assert registry.reachable() is False
    assert timeouts == [registry.PROBE_SECONDS, registry.CONFIRM_SECONDS, registry.PROBE_SECONDS]
