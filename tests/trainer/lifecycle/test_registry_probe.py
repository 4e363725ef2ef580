"""The trainer's shared health probe of the tracking server (lifecycle/tracking_health.py)."""

from __future__ import annotations

import time

import mlflow
import pytest
import requests

from trainer.lifecycle import tracking_health


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

    monkeypatch.setattr(tracking_health.requests, "get", get)
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://127.0.0.1:9")
    monkeypatch.setattr(tracking_health, "_probe", {"ok": True, "at": float("-inf")})
    return outcomes, timeouts


def test_a_server_that_just_came_up_is_believed_within_half_a_second(probe):
    outcomes, _ = probe
    tracking_health._probe.update(ok=False)  # the stack is starting: MLflow not up yet
    outcomes.extend([None])
    assert tracking_health.reachable() is False
    outcomes.append(True)
    time.sleep(tracking_health.DOWN_MAX_AGE + 0.1)
    assert tracking_health.reachable() is True  # not the stale "down" for two seconds


def test_one_missed_probe_of_a_server_that_was_up_gets_a_longer_second_look(probe):
    outcomes, timeouts = probe
    outcomes.extend([None, True])
    assert tracking_health.reachable() is True
    assert timeouts == [tracking_health.PROBE_SECONDS, tracking_health.CONFIRM_SECONDS]
    assert tracking_health.reachable() is True and len(timeouts) == 2  # "up" stands for a while


def test_a_server_marked_down_is_probed_with_the_short_timeout_only(probe):
    outcomes, timeouts = probe
    outcomes.extend([None, None])
    assert tracking_health.reachable() is False  # short miss, then the second look
    time.sleep(tracking_health.DOWN_MAX_AGE + 0.1)
    outcomes.append(None)
    assert tracking_health.reachable() is False
    assert timeouts == [
        tracking_health.PROBE_SECONDS,
        tracking_health.CONFIRM_SECONDS,
        tracking_health.PROBE_SECONDS,
    ]
