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
