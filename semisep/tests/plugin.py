"""pytest plugin of the shipped suite: options, fixtures, hypothesis profiles.

Loaded with ``-p semisep.tests.plugin`` (the runner and the repository's pytest config do that).


``--semisep-device``: where torch tensors are created (``cpu``, ``cuda``, ``cuda:1``); the NumPy
backend always runs.  Hypothesis profiles ``semisep-quick``, ``semisep-thorough``,
``semisep-deep`` grow in size; all print the ``@reproduce_failure`` blob of a failing example.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

_BASE = settings(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("semisep-quick", _BASE, max_examples=15)
settings.register_profile("semisep-thorough", _BASE, max_examples=150)
settings.register_profile("semisep-deep", _BASE, max_examples=1500)

EXAMPLES = {"run": 0}

#: the dtypes the property tests draw from (``--semisep-dtype`` narrows them)
ALL_DTYPES = ("float32", "float64", "complex64", "complex128")
DTYPES: dict[str, tuple[str, ...]] = {"selected": ALL_DTYPES}


def selected_dtypes() -> tuple[str, ...]:
    """The dtype names the property tests draw from (all four unless ``--semisep-dtype``)."""
    return DTYPES["selected"]


def pytest_addoption(parser):
    group = parser.getgroup("semisep")
    group.addoption(
        "--semisep-device", default=None,
        help="torch device for the torch-backend tests (cpu, cuda, cuda:N); default cpu",
    )
    group.addoption(
        "--semisep-dtype", default=None,
        help=f"draw property examples only in these dtypes (comma-separated, of {ALL_DTYPES})",
    )


def pytest_configure(config):
    opt = config.getoption("--semisep-dtype", None)
    if opt:
        names = tuple(x.strip() for x in opt.split(",") if x.strip())
        bad = [x for x in names if x not in ALL_DTYPES]
        if bad or not names:
            raise pytest.UsageError(f"--semisep-dtype {opt!r}: choose from {', '.join(ALL_DTYPES)}")
        DTYPES["selected"] = names


@pytest.fixture(scope="session")
def device(request):
    return request.config.getoption("--semisep-device") or "cpu"


def _torch_available() -> bool:
    """True when torch is installed.  If it is, the torch backend must import: a broken
    backend is an error here, never a silently skipped half of the suite."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    from semisep.backends import get_backend

    get_backend("torch")
    return True


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        names = ["numpy"] + (["torch"] if _torch_available() else [])
        metafunc.parametrize("backend", names)


def pytest_sessionfinish(session, exitstatus):
    """Under pytest-xdist a worker hands its count to the controller (``workeroutput``)."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["semisep_examples_run"] = EXAMPLES["run"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: add up the workers' counts (a worker that crashed reports none)."""
    EXAMPLES["run"] += int(getattr(node, "workeroutput", {}).get("semisep_examples_run", 0))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(f"semisep: hypothesis examples run: {EXAMPLES['run']}")
