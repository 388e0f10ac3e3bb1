"""semisep where users run it: forked workers, threads, read-only installs.

Every scenario runs in a fresh Python subprocess with a timeout (numba's threading layer is
chosen once per process, and a crashed or hung child must fail the test, not the test run).
The child scripts check their own results against ``semisep.reference`` and print ``OK``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Makes numba's tbb layer impossible to load in the child, as on a machine without the tbb
# package: numba's own choice there is GNU OpenMP, which kills forked children.
BLOCK_TBB = """
import sys
class _NoTbb:
    def find_spec(self, name, path=None, target=None):
        if name == "numba.np.ufunc.tbbpool":
            raise ImportError("tbb blocked by the test")
        return None
sys.meta_path.insert(0, _NoTbb())
"""

# A chain whose resolvent diagonal the children compute; `check` compares with the dense oracle.
COMMON = """
import numpy as np
import semisep as ss
from semisep import reference as ref

def chain(seed, batch=4, n=200):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, n)), rng.uniform(0.5, 1, n - 1)

def work(seed):
    d, e = chain(seed)
    G = ss.Tridiagonal(d, e).resolvent_diagonal(0.3 + 0.1j)
    x = ss.Tridiagonal(d, e).solve(np.ones(d.shape[-1]), 0.3 + 0.1j)
    return seed, G, x

def check(seed, G, x):
    d, e = chain(seed)
    Gr = ref.dense_resolvent_diagonal(d, e, None, 0.3 + 0.1j)
    xr = ref.dense_solve(d, e, None, np.ones(d.shape[-1]), 0.3 + 0.1j)
    assert np.allclose(G, Gr, rtol=1e-9, atol=0), seed
    assert np.allclose(x, xr, rtol=1e-9, atol=0), seed
"""


def run_child(body: str, *, block_tbb: bool, env: dict | None = None, timeout: float = 300,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    script = (BLOCK_TBB if block_tbb else "") + COMMON + textwrap.dedent(body)
    full_env = dict(os.environ)
    full_env.pop("NUMBA_THREADING_LAYER", None)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    try:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=str(cwd or ROOT))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"child timed out after {timeout} s (hung worker?); stderr: {exc.stderr!r}")


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), (
        f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    )


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
LAYERS = [pytest.param(False, id="as-installed"), pytest.param(True, id="tbb-missing")]


@needs_fork
@pytest.mark.parametrize("block_tbb", LAYERS)
def test_dataloader_fork_workers_after_parent_used_semisep(block_tbb):
    pytest.importorskip("torch")
    proc = run_child("""
        import torch
        from torch.utils.data import DataLoader, Dataset
        check(*work(0))                       # the parent runs the parallel kernels first

        class Chains(Dataset):
            def __len__(self):
                return 6
            def __getitem__(self, i):
                return work(i + 1)

        loader = DataLoader(Chains(), batch_size=None, num_workers=2,
                            multiprocessing_context="fork", timeout=120)
        seen = []
        for seed, G, x in loader:
            check(int(seed), np.asarray(G), np.asarray(x))
            seen.append(int(seed))
        assert sorted(seen) == [1, 2, 3, 4, 5, 6], seen
        print("OK")
    """, block_tbb=block_tbb)
    assert_ok(proc)


@needs_fork
@pytest.mark.parametrize("block_tbb", LAYERS)
def test_multiprocessing_fork_pool_after_parent_used_semisep(block_tbb):
    proc = run_child("""
        import multiprocessing as mp
        check(*work(0))
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map_async(work, range(1, 7)).get(timeout=120)
        for r in results:
            check(*r)
        print("OK")
    """, block_tbb=block_tbb)
    assert_ok(proc)


@pytest.mark.parametrize("block_tbb", LAYERS)
def test_concurrent_threads(block_tbb):
    """Four threads launch parallel kernels at once (numba's workqueue layer, the fallback
    without tbb, aborts the process on concurrent launches unless they are serialised)."""
    proc = run_child("""
        from concurrent.futures import ThreadPoolExecutor
        check(*work(0))
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(work, range(1, 41)))
        for r in results:
            check(*r)
        from semisep.backends import _numba
        print(_numba.threading_choice())
        print("OK")
    """, block_tbb=block_tbb)
    assert_ok(proc)
    if block_tbb:
        assert "workqueue" in proc.stdout


def test_threading_layer_choice_respects_the_user():
    """NUMBA_THREADING_LAYER set by the user is kept (here omp, fork-unsafe by their choice)."""
    proc = run_child("""
        import numba
        from semisep.backends import _numba
        check(*work(0))
        print(_numba.threading_choice(), numba.threading_layer())
        print("OK")
    """, block_tbb=False, env={"NUMBA_THREADING_LAYER": "omp"})
    assert_ok(proc)
    assert "omp omp" in proc.stdout


# --------------------------------------------------------------------------------------------
# read-only installs
# --------------------------------------------------------------------------------------------

@pytest.fixture
def tmp_path_public():
    """A temporary folder that user nobody can enter (pytest's own tmp_path is mode 700)."""
    with tempfile.TemporaryDirectory(prefix="semisep-ro-") as d:
        Path(d).chmod(0o755)
        yield Path(d)


def _readonly_copy(tmp_path: Path) -> Path:
    """A copy of the package (as a non-editable install would have it) with no write access,
    and without any numba cache files (``__pycache__`` left out)."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "semisep", site / "semisep",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    for p in [site, *site.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    return site


def _unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run without the capability to write through permission bits.  Root writes into a
    read-only folder (CAP_DAC_OVERRIDE), so as root the child runs with that capability (and
    CAP_DAC_READ_SEARCH) dropped from its bounding set: it is then bound by the mode bits like
    an unprivileged user, while it can still read the root-owned Python installation."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]


READONLY_SCRIPT = """
import os, sys, warnings
sys.path.insert(0, os.environ["SEMISEP_SITE"])
import numpy as np
import semisep as ss
from semisep import reference as ref
assert ss.__file__.startswith(os.environ["SEMISEP_SITE"]), ss.__file__
d = np.linspace(-1, 1, 50)
G = ss.Tridiagonal(d, np.ones(49)).resolvent_diagonal(0.2 + 0.1j)
assert np.allclose(G, ref.dense_resolvent_diagonal(d, np.ones(49), None, 0.2 + 0.1j), rtol=1e-9)
print("OK")
"""


@pytest.mark.slow
def test_readonly_install_runs_uncached_with_one_warning(tmp_path_public):
    tmp_path = tmp_path_public
    """A read-only package folder and an unwritable HOME, run by an unprivileged user: numba
    has no cache location.  The kernels must still run (uncached), with one warning line."""
    site = _readonly_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE", "PYTHON"))}
    env.update(HOME=str(site), XDG_CACHE_HOME=str(site / "cache"), SEMISEP_SITE=str(site))
    proc = subprocess.run(_unprivileged([sys.executable, "-c", READONLY_SCRIPT]), env=env,
                          capture_output=True, text=True, timeout=600, cwd=str(site))
    assert_ok(proc)
    warn_lines = [ln for ln in proc.stderr.splitlines() if "UncachedKernelsWarning" in ln]
    assert len(warn_lines) == 1, proc.stderr
    assert "cannot cache" not in proc.stderr


@pytest.mark.slow
def test_readonly_install_honours_numba_cache_dir(tmp_path_public):
    tmp_path = tmp_path_public
    """The same install with NUMBA_CACHE_DIR pointing to a writable folder: no warning, and the
    compiled kernels are cached there."""
    site = _readonly_copy(tmp_path)
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    cache.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE", "PYTHON"))}
    env.update(HOME=str(site), XDG_CACHE_HOME=str(site / "cache"), SEMISEP_SITE=str(site),
               NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.run(_unprivileged([sys.executable, "-c", READONLY_SCRIPT]), env=env,
                          capture_output=True, text=True, timeout=600, cwd=str(site))
    assert_ok(proc)
    assert "UncachedKernelsWarning" not in proc.stderr
    assert list(cache.rglob("*.nbi")), "no numba index file written to NUMBA_CACHE_DIR"
