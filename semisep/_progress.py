"""Progress bars and up-front time estimates for long runs.

Used by ``python -m semisep bench`` (``benchmarks/run_all.py``), ``python -m semisep verify`` on
large matrices and ``semisep.test(profile="thorough" | "deep")``.  Bars go to stderr, so that
stdout (JSON, reports) stays machine-readable.

The bars are tqdm's (``pip install semisep[progress]``).  Without tqdm every command still
works: a plain line is printed per step instead.  ``TQDM_DISABLE=1`` (tqdm's own switch)
turns the bars off.

Estimates are never constants: they come from a measurement made on this machine, either
earlier (the durations a previous run recorded) or now (a timed product of the input's size
for ``verify``).  With nothing to go on the estimate says so, and tqdm's rate-based remaining
time takes over once the first steps have run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "progress_bar",
    "format_seconds",
    "history_path",
    "load_history",
    "save_history",
    "estimate_from_history",
    "describe_estimate",
    "TimedBar",
    "verify_progress",
    "PytestProgress",
]

#: ``verify`` shows its bar from this matrix size up (smaller inputs finish in well under the
#: time a bar would take to be useful).
VERIFY_PROGRESS_MIN_N = 1024


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def format_seconds(seconds: float) -> str:
    """``75.0 -> "1 min 15 s"``; ``3.2 -> "3.2 s"``; ``7300 -> "2 h 1 min"``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


class _PlainBar:
    """The fallback without tqdm: one line per update on ``file`` (same methods as tqdm)."""

    def __init__(self, iterable: Iterable | None = None, total: float | None = None,
                 desc: str = "", unit: str = "it", file: Any = None, **_: Any) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.n: float = 0
        self.t0 = time.perf_counter()

    def __iter__(self) -> Iterator:
        assert self.iterable is not None
        for item in self.iterable:
            yield item
            self.update(1)

    def _line(self) -> str:
        total = f"/{self.total:g}" if self.total is not None else ""
        return (f"{self.desc}: {self.n:g}{total} {self.unit} "
                f"({format_seconds(time.perf_counter() - self.t0)})")

    def update(self, n: float = 1) -> None:
        self.n += n
        print(self._line(), file=self.file, flush=True)

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def write(self, s: str) -> None:
        print(s, file=self.file, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> _PlainBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", disable: bool | None = False, **kwargs: Any) -> Any:
    """A tqdm bar on stderr, or the plain fallback when tqdm is not installed."""
    tqdm = _tqdm()
    if tqdm is None:
        return _PlainBar(iterable, total=total, desc=desc, unit=unit, **kwargs)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                dynamic_ncols=True, **kwargs)


# ------------------------------------------------------------------------------------------------
# durations recorded by earlier runs
# ------------------------------------------------------------------------------------------------
def history_path(kind: str) -> Path:
    """Where the durations of runs of ``kind`` are kept: ``$SEMISEP_CACHE_DIR`` or
    ``$XDG_CACHE_HOME/semisep`` (default ``~/.cache/semisep``), file ``durations-<kind>.json``."""
    root = os.environ.get("SEMISEP_CACHE_DIR")
    if root is None:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                            "semisep")
    return Path(root) / f"durations-{kind}.json"


def load_history(path: Path) -> dict[str, float]:
    """``{step name: seconds}`` from ``path``; empty if missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def save_history(path: Path, durations: dict[str, float]) -> None:
    """Merge ``durations`` into ``path`` (best effort: an unwritable cache is not an error)."""
    merged = load_history(path)
    merged.update({k: float(v) for k, v in durations.items()})
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(merged, indent=1, sort_keys=True))
    except OSError:
        pass


def estimate_from_history(steps: Iterable[str], history: dict[str, float]) -> tuple[float, int, int]:
    """``(seconds, known, total)``: the recorded time of the ``known`` steps among ``total``,
    plus their mean for each step never recorded.  ``(nan, 0, total)`` with no record at all."""
    steps = list(steps)
    known = [history[s] for s in steps if s in history]
    if not known:
        return float("nan"), 0, len(steps)
    mean = sum(known) / len(known)
    return sum(known) + mean * (len(steps) - len(known)), len(known), len(steps)


def describe_estimate(seconds: float, known: int, total: int, what: str) -> str:
    """One line that says how long ``what`` should take and what the estimate rests on."""
    if known == 0:
        return (f"{what}: {total} steps; no earlier run recorded on this machine, so no estimate "
                "yet (the bar shows the remaining time once the first steps have run)")
    basis = "the durations of the last run" if known == total else (
        f"the last run's durations of {known} of the {total} steps (the mean for the others)")
    return f"{what}: about {format_seconds(seconds)} on this machine, from {basis}"


# ------------------------------------------------------------------------------------------------
# a bar that advances with the clock while one blocking call runs (verify)
# ------------------------------------------------------------------------------------------------
class TimedBar:
    """Context manager: a bar of ``estimate`` seconds advanced by a timer thread while the
    body runs (the body is a single call with no progress of its own).  The bar shows elapsed
    against estimated time; it is closed, at its true elapsed time, when the body ends."""

    def __init__(self, estimate: float, desc: str, interval: float = 0.5) -> None:
        self.estimate, self.desc, self.interval = max(float(estimate), 1e-3), desc, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bar: Any = None
        self.elapsed = 0.0

    def _run(self) -> None:
        t0 = time.perf_counter()
        done = 0.0
        while not self._stop.wait(self.interval):
            now = min(time.perf_counter() - t0, self.bar.total)
            self.bar.update(now - done)
            done = now

    def __enter__(self) -> TimedBar:
        self._t0 = time.perf_counter()
        self.bar = progress_bar(total=round(self.estimate, 1), desc=self.desc, unit="s",
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                           "{elapsed} of ~{total:.0f} s estimated")
        if not isinstance(self.bar, _PlainBar):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.elapsed = time.perf_counter() - self._t0
        self.bar.close()


def _time_product(H: Any, k: int) -> float:
    """Seconds of one ``H @ X`` with ``X`` of shape (N, k) (the randomized SVD's unit of work)."""
    import numpy as np

    X = np.ones((H.shape[-1], max(int(k), 1)), dtype=H.dtype)
    H @ X  # warm-up (BLAS threads, pages)
    t0 = time.perf_counter()
    H @ X
    return time.perf_counter() - t0


def verify_progress(H: Any, rank: int | None, *, method: str = "auto", max_iter: int = 200,
                    oversample: int = 10, power_iters: int = 2, min_n: int = VERIFY_PROGRESS_MIN_N,
                    file: Any = None) -> Any:
    """For ``semisep verify``: print an up-front estimate and return a :class:`TimedBar` around
    factorize + check_factorization, or a no-op context for ``N < min_n``.

    The estimate is measured now: for the dense SVD (``N <= RANDOMIZED_THRESHOLD``) the time of
    one SVD of ``H``; for the randomized one the time of one ``H @ X`` with ``r + oversample``
    columns, times ``2 power_iters + 3`` (range finder, power iterations, projection and the
    residual's low-rank product).  An iteration count is not known in advance: the estimate
    covers one iteration, the line states the ``max_iter`` bound, and the bar runs against a
    budget of ten iterations (alternating projection usually stops well before).
    """
    import contextlib
    import math

    import numpy as np

    from .factorize import RANDOMIZED_THRESHOLD

    n = int(H.shape[-1])
    if n < min_n:
        return contextlib.nullcontext()
    out = file if file is not None else sys.stderr
    r = rank if rank is not None else (math.ceil(math.log2(n)) if n > 1 else 0)
    use_svd = method == "svd" or (method == "auto" and n <= RANDOMIZED_THRESHOLD)
    if use_svd:
        t0 = time.perf_counter()
        np.linalg.svd(np.asarray(H), compute_uv=False)
        per_iter = time.perf_counter() - t0
        how = "one dense SVD of H"
    else:
        per_iter = _time_product(np.asarray(H), r + oversample) * (2 * power_iters + 3)
        how = f"one H @ X with {r + oversample} columns, times {2 * power_iters + 3}"
    budget = min(max_iter, 10)
    print(f"semisep verify: N = {n}, rank {r}: about {format_seconds(per_iter)} per iteration "
          f"(measured: {how}), at most {max_iter} iterations; the bar assumes {budget}",
          file=out, flush=True)
    return TimedBar(per_iter * budget, desc="factorize + check")


# ------------------------------------------------------------------------------------------------
# pytest: one bar over the collected tests, estimate from the last run's durations
# ------------------------------------------------------------------------------------------------
class PytestProgress:
    """A pytest plugin object (``pytest.main(args, plugins=[PytestProgress(profile)])``).

    After collection it prints the number of tests and an estimate from the durations recorded
    by the last run of the same profile on this machine (:func:`history_path`); it advances one
    step per finished test and records this run's durations when the session ends.
    """

    def __init__(self, profile: str, history: Path | None = None) -> None:
        self.profile = profile
        self.path = history if history is not None else history_path(f"test-{profile}")
        self.durations: dict[str, float] = {}
        self.bar: Any = None

    def pytest_collection_finish(self, session: Any) -> None:
        ids = [item.nodeid for item in session.items]
        sec, known, total = estimate_from_history(ids, load_history(self.path))
        print(describe_estimate(sec, known, total, f"semisep.test, profile {self.profile}"),
              file=sys.stderr, flush=True)
        self.bar = progress_bar(total=total, desc=f"semisep.test ({self.profile})", unit="test")

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.when == "teardown" and self.bar is not None:
            self.bar.update(1)

    def pytest_sessionfinish(self, session: Any, exitstatus: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.durations:
            save_history(self.path, self.durations)
