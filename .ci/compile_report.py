"""Summarise a numba compile log written by .ci/compile_log/sitecustomize.py.

``python .ci/compile_report.py FILE [N]``: totals (top-level compilations, their summed
seconds, distinct signatures, signatures compiled in more than one process), then the N
(default 25) tests and kernels with the most compile seconds.  Seconds are wall time of the
compiling process: on a loaded machine they are inflated, counts are not.
"""

import collections
import json
import re
import sys

_FLAGS = re.compile(r"'(A|C|F)', (True|False)")  # an array type's layout and read-only flag


def main(path: str, top: int = 25) -> None:
    recs = [json.loads(line) for line in open(path)]
    outer = [r for r in recs if r["depth"] == 0]
    key = lambda r: (r["mod"], r["name"], r["sig"])  # noqa: E731
    procs = collections.defaultdict(set)
    for r in outer:
        procs[key(r)].add(r["pid"])
    dups = {k: p for k, p in procs.items() if len(p) > 1}
    print(f"processes that compiled: {len({r['pid'] for r in recs})}")
    print(f"top-level compilations: {len(outer)}, {sum(r['dt'] for r in outer):.0f} s; "
          f"distinct top-level signatures: {len(procs)}; compiled in >1 process: {len(dups)} "
          f"({sum(len(p) - 1 for p in dups.values())} extra compilations)")
    print(f"all events incl. nested callees: {len(recs)}, distinct: {len({key(r) for r in recs})}")
    # signatures of one kernel that differ only in arrays' layout ('C' / 'A') or read-only flag
    first = {}
    for r in outer:
        first.setdefault(key(r), r)
    groups = collections.defaultdict(list)
    for (mod, name, sig), r in first.items():
        groups[(mod, name, _FLAGS.sub("", sig))].append(r["dt"])
    extra = [sorted(v)[:-1] for v in groups.values() if len(v) > 1]
    print(f"signatures that only add a layout / read-only variant of another: "
          f"{sum(map(len, extra))}, {sum(map(sum, extra)):.0f} s")
    per_test, n_test = collections.Counter(), collections.Counter()
    per_kernel, n_kernel = collections.Counter(), collections.Counter()
    for r in outer:
        t = r["test"].rsplit(" (", 1)[0] or f"<pid {r['pid']}, outside a test>"
        per_test[t] += r["dt"]
        n_test[t] += 1
        k = f"{r['mod']}.{r['name']}"
        per_kernel[k] += r["dt"]
        n_kernel[k] += 1
    print("\ntests with the most compile seconds (seconds, compilations):")
    for t, s in per_test.most_common(top):
        print(f"{s:8.1f} {n_test[t]:4d}  {t}")
    print("\nkernels with the most compile seconds (seconds, signatures compiled):")
    for k, s in per_kernel.most_common(top):
        print(f"{s:8.1f} {n_kernel[k]:4d}  {k}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
