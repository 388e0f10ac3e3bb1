"""The package's layering, checked on its source: torch is imported only where torch is the
subject (the torch backend, ``nn/``, the testing kit and the shipped tests, the CLI's device
check), and package code carries no issue numbers or session labels."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "semisep"

#: Where ``import torch`` may appear, relative to the package (a directory ends in "/").
TORCH_ALLOWED = (
    "backends/torch/",
    "backends/triton/",  # the Triton kernels of the torch backend
    "nn/",
    "testing/",
    "tests/",
    "_runner.py",  # `semisep test --device cuda:N` checks the device exists before running
)

#: Known exceptions still to be moved behind the backend boundary, with the reason.
TORCH_DEBT: dict[str, str] = {}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path


def _imports_torch(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch" \
                and node.level == 0:
            lines.append(node.lineno)
    return lines


def test_torch_is_imported_only_by_the_torch_layers():
    offenders = []
    for rel, path in _modules():
        if rel.startswith(TORCH_ALLOWED) or rel in TORCH_DEBT:
            continue
        for line in _imports_torch(ast.parse(path.read_text())):
            offenders.append(f"semisep/{rel}:{line}")
    assert not offenders, ("torch imported outside the torch backend, nn/ and testing/ "
                           f"(backend_for decides the backend): {offenders}")


def test_the_torch_debt_list_is_true():
    """Each listed exception still imports torch: a paid debt must leave the list."""
    for rel in TORCH_DEBT:
        assert _imports_torch(ast.parse((PACKAGE / rel).read_text())), f"{rel} no longer imports torch"


def test_no_torch_debt_left():
    """Every exception has moved behind the backend boundary; a new one is a regression."""
    assert not TORCH_DEBT


def test_the_check_sees_an_import():
    """The detector itself: a plain, a dotted, a from- and a nested import are found."""
    code = "import numpy\nimport torch.nn\ndef f():\n    from torch import cuda\n    import torch\n"
    assert _imports_torch(ast.parse(code)) == [2, 4, 5]
    assert _imports_torch(ast.parse("from .torch import x\nimport torchvision_like\n")) == []


_LABEL = re.compile(r"\b(stop|issue)\s+#?\d+\b", re.IGNORECASE)


def test_no_issue_or_stop_labels_in_package_code():
    """History belongs in git and on the performance page, not in docstrings and comments."""
    hits = []
    for rel, path in _modules():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _LABEL.search(line):
                hits.append(f"semisep/{rel}:{i}: {line.strip()}")
    assert not hits, hits
