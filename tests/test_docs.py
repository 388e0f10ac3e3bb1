"""The examples in docs/*.md are doctests: every number the documentation states next to a
``>>>`` is recomputed here."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def test_docs_exist():
    names = {p.name for p in PAGES}
    assert {"index.md", "mathematics.md", "api.md", "design.md", "user-guide.md",
            "coming-from-bk-core.md", "testing.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_examples(page):
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testfile(str(page), module_relative=False, optionflags=flags,
                              verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {page.name} fail"


# every public name has its API page: an autosummary entry in docs/api.md under its module
API_MODULES = ["semisep", "semisep.errors", "semisep.nn", "semisep.nn.functional", "semisep.cost",
               "semisep.reference", "semisep.testing", "semisep.backends", "semisep.kernels",
               "semisep.distributed"]


def _api_entries() -> dict[str, set[str]]:
    entries: dict[str, set[str]] = {}
    module, in_summary = None, False
    for line in (DOCS / "api.md").read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::", 1)[1].strip()
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and line.startswith("   ") and not line.strip().startswith(":"):
            entries.setdefault(module or "", set()).add(line.strip())
        elif in_summary and line.strip() == "```":
            in_summary = False
    return entries


@pytest.mark.parametrize("modname", API_MODULES)
def test_api_page_lists_every_public_name(modname):
    import importlib

    mod = importlib.import_module(modname)
    public = {n for n in getattr(mod, "__all__", []) if not n.startswith("__")}
    public -= {n for n in public if type(getattr(mod, n)).__name__ == "module"}
    entries = _api_entries()
    # a re-exported name may have its page under the module that defines it (semisep.errors)
    missing = {n for n in public if n not in entries.get(modname, set())
               and n not in entries.get(getattr(getattr(mod, n), "__module__", ""), set())}
    assert not missing, f"docs/api.md has no autosummary entry for {modname}: {sorted(missing)}"
