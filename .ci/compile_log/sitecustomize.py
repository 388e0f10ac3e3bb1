"""Log every numba compilation (a cache miss) of every Python process that has this folder on
its ``PYTHONPATH``: the pytest controller, its xdist workers and the subprocesses tests start.

Active only when ``SEMISEP_COMPILE_LOG`` names a file; one JSON line per ``numba:compile``
event is appended to it: pid, xdist worker, the running test (``PYTEST_CURRENT_TEST``), the
kernel's module and name, its argument types, the nesting depth (a callee typed while its
caller compiles has depth >= 1) and the wall seconds.  A kernel loaded from numba's cache
fires no event.  Summarise with ``python .ci/compile_report.py FILE``.  Example::

    rm -rf /tmp/nc && NUMBA_CACHE_DIR=/tmp/nc SEMISEP_COMPILE_LOG=/tmp/compiles.jsonl \\
        PYTHONPATH=$PWD:$PWD/.ci/compile_log python -m pytest -n 2
    python .ci/compile_report.py /tmp/compiles.jsonl

A test that builds its subprocess's environment without ``PYTHONPATH`` (the read-only install
tests of tests/test_environment.py) is not logged.
"""

import os

_LOG = os.environ.get("SEMISEP_COMPILE_LOG")


def _install() -> None:
    import json
    import time

    from numba.core import event

    class _CompileLog(event.Listener):
        def __init__(self):
            self.starts = []

        def on_start(self, ev):
            self.starts.append(time.perf_counter())

        def on_end(self, ev):
            dt = time.perf_counter() - self.starts.pop()
            data = ev.data or {}
            fn = getattr(data.get("dispatcher"), "py_func", None)
            rec = {
                "pid": os.getpid(), "worker": os.environ.get("PYTEST_XDIST_WORKER", ""),
                "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
                "mod": getattr(fn, "__module__", "?"), "name": getattr(fn, "__qualname__", "?"),
                "sig": str(data.get("args")), "depth": len(self.starts), "dt": dt,
                "t": time.time(),
            }
            with open(_LOG, "a") as f:
                f.write(json.dumps(rec) + "\n")

    event.register("numba:compile", _CompileLog())


if _LOG:
    # numba is not imported here (a script may set NUMBA_* variables before it imports numba):
    # the listener is registered right after the process's own first ``import numba``.
    import importlib.abc
    import importlib.util
    import sys

    class _AfterNumba(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "numba":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_then_install(module):
                exec_module(module)
                try:
                    _install()
                except Exception as exc:  # a numba without the event API: say so, run on
                    print(f"compile_log: not installed ({exc!r})", file=sys.stderr)

            spec.loader.exec_module = exec_then_install
            return spec

    sys.meta_path.insert(0, _AfterNumba())
