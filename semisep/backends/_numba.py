"""numba set-up in one place: the threading layer and whether compiled kernels are cached.

Threading layer
    numba runs ``parallel=True`` kernels on one of three layers (``tbb``, ``omp``, ``workqueue``)
    and picks it once per process, at the first parallel launch.  Only ``tbb`` is both
    *fork-safe* (a child made by ``os.fork()`` -- a torch ``DataLoader`` worker, a
    ``multiprocessing`` fork pool -- can run parallel kernels after the parent did) and
    *thread-safe* (several Python threads may launch kernels at once).  GNU OpenMP (``omp``,
    numba's choice when tbb is missing) terminates a forked child ("fork() called from a process
    already using GNU OpenMP, this is unsafe"); ``workqueue`` is fork-safe but aborts when two
    threads launch kernels concurrently.

    :func:`configure_threading`, run when the NumPy backend is imported (before any kernel runs):

    * the user chose a layer (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER``
      set to anything but ``"default"``), or numba's threads are already running: that layer
      is kept;
    * else, ``tbb`` if it loads (the ``tbb`` package is a dependency on Linux x86-64);
    * else ``workqueue``, and every parallel kernel made by :func:`jit` then launches under one
      process-wide lock (:data:`PARALLEL_LOCK`), so concurrent calls from several threads run one
      after another instead of aborting.

Caching
    Kernels are compiled with ``cache=True`` when numba has a writable cache location for the
    kernel's source file: ``NUMBA_CACHE_DIR`` if set, else the package's ``__pycache__``, else
    the user-wide cache (``$XDG_CACHE_HOME`` or ``~/.cache``).  Where none is writable (a
    read-only install run by an unprivileged user) they are compiled in every process, without
    caching, and one :class:`UncachedKernelsWarning` says so, instead of numba's
    ``RuntimeError: cannot cache function ...: no locator available``.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from typing import Any

import numba

__all__ = [
    "PARALLEL_LOCK",
    "UncachedKernelsWarning",
    "cache_usable",
    "configure_threading",
    "jit",
    "parallel_lock_needed",
    "threading_choice",
]

#: Taken around every parallel kernel launch when the layer may be ``workqueue``.
PARALLEL_LOCK = threading.Lock()


class UncachedKernelsWarning(RuntimeWarning):
    """No writable numba cache location: kernels are compiled in every process."""


def _tbb_loads() -> bool:
    """Whether numba's tbb layer can be loaded (tbb present and of a version numba accepts)."""
    try:
        from numba.np.ufunc import parallel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parallel._check_tbb_version_compatible()
        importlib.import_module("numba.np.ufunc.tbbpool")
    except Exception:  # ImportError, OSError, or a numba without these internals
        return False
    return True


_CHOICE: str | None = None


def configure_threading() -> str:
    """Choose numba's threading layer as the module docstring says; returns the choice
    (``"tbb"``, ``"workqueue"``, or the user's / already running layer's name).  Idempotent."""
    global _CHOICE
    if _CHOICE is not None:
        return _CHOICE
    from numba.np.ufunc import parallel

    chosen = str(numba.config.THREADING_LAYER).lower()
    if getattr(parallel, "_is_initialized", False):
        _CHOICE = numba.threading_layer()
    elif chosen != "default":
        _CHOICE = chosen
    elif _tbb_loads():
        numba.config.THREADING_LAYER = _CHOICE = "tbb"
    else:
        numba.config.THREADING_LAYER = _CHOICE = "workqueue"
    return _CHOICE


def threading_choice() -> str:
    """The layer :func:`configure_threading` chose (it runs it if needed)."""
    return configure_threading()


def parallel_lock_needed() -> bool:
    """Whether parallel kernels may run on ``workqueue`` (not thread-safe): then they are
    launched under :data:`PARALLEL_LOCK`."""
    choice = configure_threading()
    if choice in ("tbb", "omp", "safe", "threadsafe"):
        return False
    if choice == "forksafe":  # tbb if it loads, else workqueue
        return not _tbb_loads()
    return True  # "workqueue", or anything numba may resolve to it


def cache_usable(source_file: str) -> bool:
    """Whether numba finds a writable cache location for kernels defined in ``source_file``
    (the same locators, in the same order, that numba's ``cache=True`` tries)."""
    try:
        from numba.core.caching import CacheImpl

        locators = CacheImpl._locator_classes
    except (ImportError, AttributeError):  # a numba without these internals: let numba decide
        return True
    if numba.config.CACHE_LOCATOR_CLASSES:  # the user replaced numba's locators
        return True

    def probe() -> None:  # pragma: no cover - only its code object's first line is read
        pass

    for cls in locators:
        try:
            if cls.from_function(probe, source_file) is not None:
                return True
        except Exception:  # a locator that cannot handle this file
            continue
    return False


_CACHE_DECIDED: dict[str, bool] = {}


def cache_option(source_file: str) -> bool:
    """``cache=`` for kernels of ``source_file``: :func:`cache_usable`, warning once if not."""
    source_file = os.path.abspath(source_file)
    if source_file not in _CACHE_DECIDED:
        ok = cache_usable(source_file)
        _CACHE_DECIDED[source_file] = ok
        if not ok:
            warnings.warn(
                "semisep: no writable numba cache location (set NUMBA_CACHE_DIR to a writable "
                "folder); kernels are compiled again in every process",
                UncachedKernelsWarning,
                stacklevel=3,
            )
    return _CACHE_DECIDED[source_file]


class _Serialized:
    """A parallel kernel launched under :data:`PARALLEL_LOCK`; other attributes (``py_func``,
    ``signatures``, ...) are the dispatcher's."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.__doc__ = dispatcher.__doc__
        self.__name__ = getattr(dispatcher, "__name__", "kernel")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with PARALLEL_LOCK:
            return self.dispatcher(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dispatcher, name)


def jit(**options: Any) -> Any:
    """``numba.njit(**options)``, except that a ``parallel=True`` kernel is launched under
    :data:`PARALLEL_LOCK` where :func:`parallel_lock_needed` (Python callers only: such a
    kernel is not callable from other compiled code then)."""

    def decorate(fn: Any) -> Any:
        dispatcher = numba.njit(**options)(fn)
        if options.get("parallel") and parallel_lock_needed():
            return _Serialized(dispatcher)
        return dispatcher

    return decorate


def key_caches_on_constants(namespace: dict, names: tuple[str, ...]) -> None:
    """Give every cached kernel of a module (``namespace``: its ``globals()``) a cache whose
    index key also holds the values of the module globals ``names``.

    numba freezes a global's value into the compiled code, and its on-disk cache is keyed on
    the source file's time stamp and each function's bytecode only: a constant imported from
    another file (``SINGULAR_FACTOR``) could change while a cached kernel keeps the old value.
    The values are read when a kernel is loaded or saved, i.e. the value it is compiled with.
    Where numba's cache class lacks the hook, caching is turned off instead: slower first
    calls, never a stale constant.  Call it at the end of the module, after every kernel."""
    from numba.core.caching import FunctionCache, NullCache
    from numba.core.dispatcher import Dispatcher

    keyable = hasattr(FunctionCache, "_index_key")

    class _ConstantKeyedCache(FunctionCache):
        def _index_key(self, sig, codegen):
            values = tuple((name, namespace[name]) for name in names)
            return (*super()._index_key(sig, codegen), values)

    for obj in list(namespace.values()):
        disp = obj.dispatcher if isinstance(obj, _Serialized) else obj
        if isinstance(disp, Dispatcher) and isinstance(getattr(disp, "_cache", None), FunctionCache):
            disp._cache = _ConstantKeyedCache(disp.py_func) if keyable else NullCache()  # type: ignore[attr-defined]
