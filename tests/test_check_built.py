"""docs/check_built.py finds what it is meant to find: a gallery page without its figure, a
broken internal link, a missing #fragment, a missing performance figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "check_built", Path(__file__).resolve().parent.parent / "docs" / "check_built.py")
check_built = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_built)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000


def _site(tmp_path: Path, examples: list[str]) -> Path:
    root = tmp_path / "repo"
    (root / "examples").mkdir(parents=True)
    for name in examples:
        (root / "examples" / f"{name}.py").write_text("")
    html = root / "html"
    (html / "auto_examples").mkdir(parents=True)
    (html / "_images").mkdir()
    (html / "performance").mkdir()
    (html / "index.html").write_text(
        '<a href="auto_examples/plot_a.html#sec">a</a><a href="#top" id="top">t</a>')
    (html / "performance" / "index.html").write_text('<img src="fig.png">')
    (html / "performance" / "fig.png").write_bytes(PNG)
    (html / "auto_examples" / "plot_a.html").write_text(
        '<section id="sec"><img src="../_images/sphx_glr_plot_a_001.png"></section>')
    (html / "_images" / "sphx_glr_plot_a_001.png").write_bytes(PNG)
    return root


def test_a_good_site_passes(tmp_path, monkeypatch):
    root = _site(tmp_path, ["plot_a"])
    monkeypatch.setattr(check_built, "ROOT", root)
    assert check_built.check(root / "html") == []


def test_each_defect_is_reported(tmp_path, monkeypatch):
    root = _site(tmp_path, ["plot_a", "plot_b"])  # plot_b has no page
    monkeypatch.setattr(check_built, "ROOT", root)
    html = root / "html"
    (html / "index.html").write_text(
        '<a href="missing.html">x</a><a href="auto_examples/plot_a.html#nope">y</a>')
    (html / "performance" / "fig.png").unlink()
    problems = "\n".join(check_built.check(html))
    assert "plot_b.py has no page" in problems
    assert "missing.html -> no such file" in problems
    assert "no id 'nope'" in problems
    assert "performance: fig.png is missing" in problems
    (html / "_images" / "sphx_glr_plot_a_001.png").write_bytes(b"not a png")
    assert "is missing or not a PNG" in "\n".join(check_built.check(html))
