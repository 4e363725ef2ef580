"""The monitoring report page: pure checks of escaping and bounds, then the page as a real
headless chromium draws it (offline, from a file:// URL)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

import pytest

from sluice_common.svg import downsample
from testkit.browser import drawn_plots, network_requests
from trainer.monitoring import report
from trainer.monitoring.report import render_report

HOSTILE = "<img src=x onerror=alert(1)>"
BREAKOUT = '" onmouseover="alert(2)'
LONG = "a category label far too long to fit under its bar"
AGE_BINS = ["(-inf, 20]", "(20, 30]", "(30, 40]", "(40, 50]", "(50, inf)", "missing"]
PLAN_BINS = ["basic", "pro", LONG, "other levels", "unseen", "missing"]


def minutes(n: int) -> list[str]:
    """n ISO times a minute apart."""
    start = datetime(2026, 11, 30)
    return [(start + timedelta(minutes=m)).isoformat() + "Z" for m in range(n)]


def feature(name, bins, reference, recent, score, status, kind="numeric", method="psi"):
    return {
        "name": name,
        "kind": kind,
        "bins": bins,
        "reference": reference,
        "recent": recent,
        "score": score,
        "method": method,
        "drifted": None if score is None else status == "alert",
        "status": status,
    }


def sample() -> dict:
    """A drifted numeric feature, a categorical one with unseen levels, a hostile name, labels."""
    times = minutes(24)
    series = {f"f{k}": [0.01 * k + 0.002 * t for t in range(24)] for k in range(12)}
    series["age"] = [0.02 * t for t in range(24)]
    series["age"][5] = None  # a batch without a score: a gap
    return {
        "model": "churn",
        "version": "7",
        "generated_at": "2026-12-01T10:00:00Z",
        "window": {"since": "2026-11-30T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
        "summary": {
            "batches": 24,
            "rows_scored": 4810,
            "status": "alert",
            "alerts": ["age drifted (PSI 0.61)", f"{HOSTILE} in an alert"],
            "min_rows": 200,
        },
        "features": [
            feature(HOSTILE, ["a", "b"], [0.5, 0.5], [0.48, 0.52], 0.002, "ok"),
            feature(
                "plan",
                PLAN_BINS,
                [0.5, 0.3, 0.15, 0.05, 0.0, 0.0],
                [0.35, 0.3, 0.1, 0.05, 0.12, 0.08],
                0.21,
                "warning",
                "categorical",
                "js",
            ),  # fmt: skip
            feature(
                "age",
                AGE_BINS,
                [0.1, 0.25, 0.3, 0.2, 0.1, 0.05],
                [0.02, 0.08, 0.2, 0.3, 0.35, 0.05],
                0.61,
                "alert",
            ),  # fmt: skip
        ],
        "prediction": feature(
            "prediction",
            ["[0, 0.2]", "(0.2, 0.4]", "(0.4, 0.6]", "(0.6, 0.8]", "(0.8, 1]"],
            [0.4, 0.25, 0.15, 0.1, 0.1],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            0.18,
            "warning",
        ),  # fmt: skip
        "timeline": {
            "times": times,
            "series": series,
            "method": "psi",
            "thresholds": {"warning": 0.1, "alert": 0.25},
        },
        "performance": {
            "labelled_rows": 300,
            "rows_scored": 4810,
            "coverage": 300 / 4810,
            "primary": "log_loss",
            "metrics": {"log_loss": 0.41, "accuracy": 0.81},
            "baseline": {"log_loss": 0.38, "accuracy": 0.83},
            "timeline": {
                "times": times[::4],
                "metrics": {"log_loss": [0.37, 0.39, None, 0.42, 0.4, 0.41], "accuracy": [0.8] * 6},
            },
        },
    }


def empty() -> dict:
    """A model with a reference profile and nothing scored yet."""
    data = sample()
    data["summary"] = {"batches": 0, "rows_scored": 0, "status": "insufficient_data", "alerts": []}
    for part in [*data["features"], data["prediction"]]:
        part.update(recent=None, score=None, drifted=None, status="insufficient_data")
    data["timeline"] = {"times": [], "series": {}, "method": "psi", "thresholds": {}}
    data["performance"] = {
        "labelled_rows": 0, "rows_scored": 0, "coverage": 0.0, "primary": "log_loss",
        "metrics": {}, "baseline": {"log_loss": 0.38}, "timeline": {"times": [], "metrics": {}},
    }  # fmt: skip
    return data


def huge() -> dict:
    """200 features of 100 bins, 5,000 batches: the page must stay bounded."""
    bins = [f"bin {i}" for i in range(100)]
    data = sample()
    data["features"] = [
        feature(f"col{k}", bins, [0.01] * 100, [0.01] * 100, k / 1000, "ok") for k in range(200)
    ]
    times = minutes(5000)
    data["timeline"]["times"] = times
    data["timeline"]["series"] = {f"col{k}": [k / 1000] * 5000 for k in range(200)}
    data["performance"]["timeline"] = {"times": times, "metrics": {"log_loss": [0.4] * 5000}}
    return data


# --- pure: no browser -------------------------------------------------------------------------


def test_every_user_string_is_escaped():
    data = sample()
    data["model"] = "</title><script>alert(3)</script>"
    data["features"][1]["bins"][0] = HOSTILE
    data["features"].append(feature(BREAKOUT, ["x"], [1.0], [1.0], 0.0, "ok"))
    data["summary"]["status"] = '"><script>alert(4)</script>'
    data["performance"]["metrics"][HOSTILE] = 1.0
    html = render_report(data)
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'data-feature="&quot; onmouseover=&quot;alert(2)"' in html
    assert 'class="badge s-unknown"' in html


def test_page_loads_nothing_from_anywhere():
    html = render_report(sample())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html  # the browser itself refuses any load or script


def test_features_sorted_most_severe_first():
    html = render_report(sample())
    table = html[html.index('<table class="summary">') :]
    assert table.index(">age<") < table.index(">plan<") < table.index("&lt;img")


def test_coverage_sentence():
    assert "300 of 4,810 scored rows labelled, 6.2%." in render_report(sample())


def test_size_is_bounded():
    html = render_report(huge())
    assert html.count('data-plot="distribution"') == report.MAX_PLOTTED_FEATURES
    assert "140 less drifted features are not plotted." in html
    for svg in re.findall(r'<svg class="plot" data-plot="distribution".*?</svg>', html):
        assert svg.count('class="bar ') == 2 * report.MAX_BINS
    assert "The last 61 bins are merged into the last bar" in html
    timeline = re.search(r'<svg class="plot" data-plot="timeline".*?</svg>', html).group(0)
    paths = re.findall(r'<path class="line"[^>]* d="([^"]*)"', timeline)
    assert len(paths) == report.MAX_LINES
    assert all(len(re.findall(r"[ML]", d)) <= report.MAX_POINTS for d in paths)
    assert "5,000 batches drawn as 500 points" in html
    assert len(html) < 1_500_000


def test_downsampling_keeps_the_peak():
    values = [0.0] * 5000
    values[3217] = 0.9
    times, columns = downsample(list(range(5000)), {"x": values}, 500)
    assert len(times) == 500 and max(columns["x"]) == 0.9 and times[-1] == 4999


def test_missing_and_not_a_number_parts_do_not_break_the_page():
    data = sample()
    data["features"][2].update(score=math.nan, recent=[math.nan, 0.1, math.inf, None, 0.5, 0.4])
    data["timeline"]["times"] = data["timeline"]["times"][:1]
    data["performance"]["metrics"] = {"log_loss": math.nan}
    del data["prediction"]
    html = render_report(data)
    assert "Drift over time needs at least two time points" in html and "1 so far." in html
    assert "No prediction distribution was recorded" in html
    assert "n/a" in html and ">nan" not in html.lower() and "nan%" not in html.lower()


# --- in the browser ---------------------------------------------------------------------------


@pytest.fixture
def show(browser, tmp_path):
    """Open the rendered report from a file:// URL; returns the driver."""

    def open_report(data: dict):
        path = tmp_path / "report.html"
        path.write_text(render_report(data), encoding="utf-8")
        browser.get(path.as_uri())
        return browser

    return open_report


def by_kind(plots: list[dict], kind: str) -> list[dict]:
    return [plot for plot in plots if plot["kind"] == kind]


def test_sample_report_draws_every_plot(show):
    data = sample()
    driver = show(data)
    plots = drawn_plots(driver)
    assert all(p["width"] > 100 and p["height"] > 100 and p["marks"] > 0 for p in plots), plots
    distributions = {p["feature"]: p for p in by_kind(plots, "distribution")}
    assert set(distributions) == {f["name"] for f in data["features"]}
    for f in data["features"]:
        plot = distributions[f["name"]]
        assert plot["bar_elements"] == 2 * len(f["bins"])
        assert plot["bars"] == sum(v > 0 for v in f["reference"] + f["recent"])
    (timeline,) = by_kind(plots, "timeline")
    assert timeline["lines"] == report.MAX_LINES
    (prediction,) = by_kind(plots, "prediction")
    assert prediction["bars"] == 10
    assert {p["feature"]: p["lines"] for p in by_kind(plots, "performance")} == {
        "log_loss": 1,
        "accuracy": 1,
    }
    assert network_requests(driver) == []


def test_hostile_names_stay_text(show):
    driver = show(sample())
    dangerous = "return document.querySelectorAll('img, script, iframe, object, embed').length"
    assert driver.execute_script(dangerous) == 0
    assert HOSTILE in driver.find_element("tag name", "body").text
    features = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg.plot')).map(s => s.dataset.feature)"
    )
    assert HOSTILE in features
    tooltip = driver.execute_script(
        "return Array.from(document.querySelectorAll('text.tick title')).map(t => t.textContent)"
    )
    assert LONG in tooltip  # the long label is cut under its bar, whole in its tooltip


def test_empty_window_explains_itself(show):
    data = empty()
    driver = show(data)
    text = driver.find_element("tag name", "body").text
    assert "No rows scored in this window yet" in text
    assert "Drift over time needs at least two time points" in text and "0 so far." in text
    assert "No labelled outcomes yet" in text
    assert "0 of 0 scored rows labelled, 0.0%." in text
    plots = drawn_plots(driver)
    assert {p["kind"] for p in plots} == {"distribution", "prediction"}
    reference = {f["name"]: f["reference"] for f in [*data["features"], data["prediction"]]}
    for plot in plots:  # the training side alone, drawn
        assert plot["bar_elements"] == len(reference[plot["feature"]])
        assert plot["bars"] == sum(v > 0 for v in reference[plot["feature"]]) > 0
    assert network_requests(driver) == []
