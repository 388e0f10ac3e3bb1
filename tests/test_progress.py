"""semisep._progress: estimates from recorded durations, the plain fallback, verify's measured
estimate, and the pytest plugin's bar and history."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semisep import _progress as pg

pytest_plugins = ("pytester",)


def test_format_seconds():
    assert pg.format_seconds(3.21) == "3.2 s"
    assert pg.format_seconds(42.4) == "42 s"
    assert pg.format_seconds(75) == "1 min 15 s"
    assert pg.format_seconds(7300) == "2 h 1 min"


def test_history_roundtrip_and_estimate(tmp_path):
    path = tmp_path / "sub" / "durations-x.json"
    assert pg.load_history(path) == {}
    pg.save_history(path, {"a": 2.0, "b": 4.0})
    pg.save_history(path, {"c": 6.0})  # merged, not replaced
    hist = pg.load_history(path)
    assert hist == {"a": 2.0, "b": 4.0, "c": 6.0}
    # all known: the sum
    assert pg.estimate_from_history(["a", "b"], hist) == (6.0, 2, 2)
    # one unknown step counts as the mean of the known ones
    sec, known, total = pg.estimate_from_history(["a", "b", "new"], hist)
    assert (sec, known, total) == (2.0 + 4.0 + 3.0, 2, 3)
    sec, known, total = pg.estimate_from_history(["x", "y"], hist)
    assert math.isnan(sec) and known == 0 and total == 2
    assert "no earlier run" in pg.describe_estimate(sec, known, total, "w")
    assert "about 9.0 s" in pg.describe_estimate(9.0, 2, 3, "w")


def test_unreadable_history_is_empty(tmp_path):
    path = tmp_path / "durations-bad.json"
    path.write_text("not json")
    assert pg.load_history(path) == {}


def test_plain_fallback_without_tqdm(monkeypatch, capsys):
    monkeypatch.setattr(pg, "_tqdm", lambda: None)
    bar = pg.progress_bar(range(3), total=3, desc="steps", unit="step")
    assert list(bar) == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == ["steps: 1/3 step", "steps: 2/3 step",
                                                    "steps: 3/3 step"]


def test_timed_bar_reports_true_elapsed(monkeypatch):
    monkeypatch.setattr(pg, "_tqdm", lambda: None)
    with pg.TimedBar(5.0, desc="x") as tb:
        pass
    assert 0 <= tb.elapsed < 5.0


def test_verify_progress_small_input_is_silent(capsys):
    with pg.verify_progress(np.eye(8), rank=2):
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("n, how", [(64, "one dense SVD"), (600, "one H @ X with 14 columns")])
def test_verify_progress_measures_an_estimate(capsys, monkeypatch, n, how):
    monkeypatch.setattr(pg, "_tqdm", lambda: None)
    H = np.random.default_rng(0).standard_normal((n, n))
    with pg.verify_progress(H, rank=4, min_n=2) as tb:
        pass
    err = capsys.readouterr().err
    assert f"N = {n}, rank 4" in err and how in err and "at most 200 iterations" in err
    assert tb.estimate > 0


def test_pytest_plugin_counts_tests_and_records_durations(pytester, tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "_tqdm", lambda: None)
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    hist = tmp_path / "durations-test.json"
    plugin = pg.PytestProgress("deep", history=hist)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[plugin])
    result.assert_outcomes(passed=2)
    recorded = pg.load_history(hist)
    assert len(recorded) == 2 and all(v >= 0 for v in recorded.values())
    assert plugin.bar is not None and plugin.bar.n == 2
    # a second run has an estimate from the first
    plugin2 = pg.PytestProgress("deep", history=hist)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[plugin2])
    result.assert_outcomes(passed=2)
    assert "about" in "\n".join(result.errlines) or "about" in "\n".join(result.outlines)
