"""benchmarks/docs_page.py: the performance page is rendered from a run's JSON, with the
command, machine and date next to each figure and ratios computed from the run's figures."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")
docs_page = pytest.importorskip("benchmarks.docs_page")


def _data():
    return {
        "machine": {"timestamp_utc": "2026-01-02T03:04:05+00:00", "cpu_model": "Test CPU",
                    "cpu_count": 2, "loadavg_1_5_15": [9.0, 8.0, 7.0],
                    "versions": {"numpy": "2.0"}, "git_commit": "abcdef1234567"},
        "quick": True, "command": "python benchmarks/run_all.py --docs --quick",
        "results": {
            "op": {"rows": [{"batch": 4}],
                   "plot": {"title": "t", "x": [1024, 2048],
                            "series": {"semisep (public call)": [1e-3, 2e-3],
                                       "dense": [1e-1, None], "loop": [5e-2, 4e-1]},
                            "floor": {"copy": [1e-4, 4e-4]}},
                   "targets": [{"target": "a | b", "measured": 2.5, "verdict": "PASS"}]},
            "table_only": {"markdown": {"table": "| x |\n|---|\n| 1 |"}},
        },
        "failures": {"bench_broken": "Traceback"},
    }


def test_render_writes_page_and_figures(tmp_path):
    page = docs_page.render(_data(), "python benchmarks/run_all.py --docs --quick", tmp_path)
    text = page.read_text()
    assert (tmp_path / "op-throughput.png").stat().st_size > 1000
    assert (tmp_path / "op-ratios.png").stat().st_size > 1000
    # command, machine and date next to each figure
    assert text.count("2026-01-02T03:04:05+00:00") >= 2 and "Test CPU" in text
    assert "shared, loaded machine" in text  # load 9 on 2 cores
    # headline rows: elements/s = 4 * N / t; x floor = t / t_copy; best alternative per N
    assert "| 1024 | 4.1e+06 | 10.0x | loop: 50x faster |" in text
    assert "| 2048 | 4.1e+06 | 5.0x | loop: 200x faster |" in text
    assert "a \\| b" in text and "| 1 |" in text and "`bench_broken` failed" in text


def test_quiet_machine_has_no_load_note(tmp_path):
    data = _data()
    data["machine"]["loadavg_1_5_15"] = [0.1, 0.1, 0.1]
    text = docs_page.render(data, "cmd", tmp_path).read_text()
    assert "loaded machine" not in text
