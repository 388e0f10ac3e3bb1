"""Distributed resolvent diagonal and LDOS sweep on a dask.distributed LocalCluster.

    PYTHONPATH=. python benchmarks/bench_dask.py --log2n 22 --chunk-log2 20 --repeat 3
    PYTHONPATH=. python benchmarks/bench_dask.py --quick          # small N: checks that it runs
    PYTHONPATH=. python benchmarks/bench_dask.py --chain clean    # the boundary repair's worst case

Measures, in one run: the single-process NumPy call; the same chain as dask arrays on a
LocalCluster of 1 and of 2 single-thread worker processes (inputs generated and persisted on
the workers first, so the timed part is the resolvent alone); the bytes the workers sent each
other during that computation (the workers' transfer counters, read through the client); an
LDOS sweep (realisations x energies, averaged over realisations) on 2 workers against a NumPy
loop.  Work stealing is off (tasks run where their chunks live).  ``--chain``: "disordered"
(``diag ~ U(-1, 1)``, ``lower ~ U(0.5, 1.5)``, the default) or "clean" (``diag = 0``,
``lower = 1``: inside the band the ratio recursion does not contract, so every chunk boundary's
repair re-runs its ``STALL`` steps, :mod:`semisep.backends.dask._repair`).  Writes
bench-results/bench_dask.json and, with matplotlib, bench_dask.png; ``run(quick)`` is the
``run_all.py`` entry point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import semisep as ss

OUT = Path(__file__).resolve().parent.parent / "bench-results"


def _median(f, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def _sent(client):
    def total(dask_worker):
        return int(getattr(dask_worker, "transfer_outgoing_bytes_total",
                           sum(e.get("total", 0) for e in getattr(dask_worker, "transfer_outgoing_log", []))))
    return sum(client.run(total).values())


def _task_times(stream, wall):
    """Seconds the workers spent computing, per task kind (summed over workers), from a task
    stream; the rest of ``workers x wall`` is scheduling, transfers and idle time."""
    kinds: dict = {}
    for rec in stream:
        for ss_ in rec.get("startstops", ()):
            if ss_.get("action") == "compute":
                kind = str(rec["key"][0] if isinstance(rec["key"], tuple) else rec["key"]).split("-")[0]
                kinds[kind] = kinds.get(kind, 0.0) + ss_["stop"] - ss_["start"]
    return {"wall": wall, "compute": sum(kinds.values()),
            "by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:6])}


def _graph_size(x) -> int:
    """Tasks the scheduler runs for ``x`` (its optimised graph; the persisted inputs included)."""
    return len(dict(x.__dask_optimize__(x.__dask_graph__(), x.__dask_keys__())))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2n", type=int, default=22)
    ap.add_argument("--chunk-log2", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--realisations", type=int, default=8)
    ap.add_argument("--energies", type=int, default=64)
    ap.add_argument("--ldos-n", type=int, default=4096)
    ap.add_argument("--chain", choices=("disordered", "clean"), default="disordered")
    ap.add_argument("--quick", action="store_true",
                    help="N = 2^18 in 16 chunks, one repeat, a small LDOS sweep (checks that it runs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.log2n, args.chunk_log2, args.repeat = 18, 14, 1
        args.realisations, args.energies, args.ldos_n = 2, 8, 1024

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream, wait

    from semisep.distributed import ldos

    n, C = 1 << args.log2n, 1 << args.chunk_log2
    z = 0.3 + 1e-3j
    rng = np.random.default_rng(0)
    rows: dict = {}
    moved_vs_n: dict = {}

    def resolvent_on(client, nn, cc, repeat):
        """Inputs generated on the workers (contiguous chunks stay together), persisted; then
        the timed resolvent diagonal (persisted on the workers) and the bytes the workers sent."""
        X = da.random.default_rng(1).uniform(0.0, 1.0, (2, nn), chunks=(2, cc))
        if args.chain == "clean":
            X = X * 0.0
        dd = 2.0 * X[0] - (0.0 if args.chain == "clean" else 1.0)  # chunk k of diag and of lower
        ll = (1.0 if args.chain == "clean" else 0.5) + X[1, : nn - 1]  # come from one block
        dd, ll = client.persist([dd, ll])
        wait([dd, ll])
        T = ss.Tridiagonal(dd, ll, check_finite=False)

        calls = iter(range(1, 1 << 30))

        def run():  # a new z per call: dask would otherwise reuse the previous call's keys
            G = client.persist(T.resolvent_diagonal(z + 1e-9 * next(calls), check_finite=False))
            wait(G)
            return G

        G = run()  # warm-up: the workers compile or load the kernels
        G = client.persist(T.resolvent_diagonal(z, check_finite=False))
        wait(G)
        s0 = _sent(client)
        t, _ = _median(run, repeat)
        moved = (_sent(client) - s0) / repeat
        with get_task_stream(client) as ts:  # one more run: where the workers' time goes
            t0 = time.perf_counter()
            run()
            wall = time.perf_counter() - t0
        tasks = _task_times(ts.data, wall)
        tasks["count"] = _graph_size(T.resolvent_diagonal(z, check_finite=False))
        return t, moved, G, dd, ll, tasks

    # work stealing off: every task runs where its chunk lives (the cost model's assumption);
    # with it on, the scheduler may move a whole input chunk to an idle worker
    dask.config.set({"distributed.scheduler.work-stealing": False})
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            t, moved, G, dd, ll, tasks = resolvent_on(client, n, C, args.repeat)
            nc = -(-n // C)
            rows[f"dask, {workers} worker(s)"] = {"seconds": t, "bytes_moved_per_call": moved, "chunks": nc,
                                                  "bytes_moved_per_chunk": moved / nc, "task_times": tasks}
            if workers == 1:  # the single-process NumPy call on the same chain, same machine
                d, lo, Gd = dd.compute(), ll.compute(), G.compute()
                Tn = ss.Tridiagonal(d, lo)
                Gn = Tn.resolvent_diagonal(z)
                err = float(np.abs(Gd - Gn).max() / np.abs(Gn).max())
                t_np, _ = _median(lambda T=Tn: T.resolvent_diagonal(z), args.repeat)
                # the same task graph run in this process by dask's synchronous scheduler, results
                # kept in chunks: the graph's own cost without the cluster's
                Tl = ss.Tridiagonal(da.from_array(d, chunks=C), da.from_array(lo, chunks=C),
                                    check_finite=False)

                def local(T=Tl):
                    return T.resolvent_diagonal(z, check_finite=False).persist()

                with dask.config.set(scheduler="sync"):
                    local()  # compile the chunk kernels in this process
                    t_sync, _ = _median(local, args.repeat)
                    from dask.diagnostics import Profiler

                    with Profiler() as prof:
                        t0 = time.perf_counter()
                        local()
                        wall = time.perf_counter() - t0
                    stream = [{"key": r.key, "startstops": [{"action": "compute", "start": r.start_time,
                                                            "stop": r.end_time}]} for r in prof.results]
                sync_row = {"seconds": t_sync, "task_times": _task_times(stream, wall)}
                rows = {"numpy (1 process)": {"seconds": t_np, "max_abs_err_dask_vs_numpy": err},
                        "dask, in process (sync)": sync_row, **rows}
                del d, lo, Gd, Tn
            else:  # the scan's traffic does not grow with N: same number of chunks, N / 4
                for nn in (n // 4, n):
                    moved_vs_n[nn] = (resolvent_on(client, nn, -(-nn // nc), 1)[1]) / nc
            del G, dd, ll

    # LDOS sweep: R realisations x n_E energies, averaged over the realisations
    R, nE, nl = args.realisations, args.energies, args.ldos_n
    dl = rng.uniform(-1, 1, (R, nl))
    E = np.linspace(-2.5, 2.5, nE)
    eta = 1e-2
    Tl = ss.Tridiagonal(dl, np.ones(nl - 1))

    def numpy_ldos():
        return np.stack([Tl.resolvent_diagonal(e + 1j * eta).imag.mean(axis=0) / np.pi for e in E])

    ref = numpy_ldos()
    t_ldos_np, _ = _median(numpy_ldos, args.repeat)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        Td = ss.Tridiagonal(da.from_array(dl, chunks=(R, max(nl // 4, 1))), da.ones(nl - 1, chunks=nl // 4),
                            check_finite=False)
        res = ldos(Td, E, eta, average="realisations").compute()
        t_ldos, _ = _median(lambda: ldos(Td, E, eta, average="realisations").compute(), args.repeat)
    ldos_row = {"numpy loop (1 process)": t_ldos_np, "dask, 2 workers": t_ldos,
                "max_abs_err": float(np.abs(res - ref).max()), "shape": [nE, R, nl]}

    base1 = rows["dask, 1 worker(s)"]["seconds"]
    t_np = rows["numpy (1 process)"]["seconds"]
    err = rows["numpy (1 process)"]["max_abs_err_dask_vs_numpy"]
    print(f"resolvent diagonal, {args.chain} chain, N = 2^{args.log2n}, chunk 2^{args.chunk_log2}, z = {z} "
          f"(median of {args.repeat}); max|G_dask - G_numpy| / max|G| = {err:.1e}")
    print(f"{'':24s} {'seconds':>9s} {'vs numpy':>9s} {'vs 1 worker':>12s} {'bytes moved/chunk':>18s}")
    for name, r in rows.items():
        moved = r.get("bytes_moved_per_chunk")
        print(f"{name:24s} {r['seconds']:9.3f} {r['seconds'] / t_np:8.2f}x {base1 / r['seconds']:11.2f}x "
              f"{'' if moved is None else f'{moved:18.0f}'}")
    for name, r in rows.items():
        tt = r.get("task_times")
        if tt:
            kinds = ", ".join(f"{k} {v:.2f}" for k, v in tt["by_kind"].items())
            count = f", {tt['count']} tasks in the graph" if "count" in tt else ""
            print(f"{name}: one more run {tt['wall']:.3f} s wall, {tt['compute']:.3f} s computing in tasks "
                  f"(summed over workers; {kinds}){count}")
    for nn, b in moved_vs_n.items():
        nc2 = rows["dask, 2 worker(s)"]["chunks"]
        print(f"2 workers, N = {nn}, {nc2} chunks: {b:.0f} bytes moved per chunk")
    print(f"LDOS sweep {nE} energies x {R} realisations x N = {nl}, mean over realisations: "
          f"numpy loop {t_ldos_np:.3f} s, dask 2 workers {t_ldos:.3f} s, "
          f"max |diff| {ldos_row['max_abs_err']:.1e}")
    OUT.mkdir(exist_ok=True)
    record = {"args": vars(args), "resolvent": rows, "bytes_moved_per_chunk_vs_n": moved_vs_n,
              "ldos": ldos_row, "dask": dask.__version__,
              "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    (OUT / "bench_dask.json").write_text(json.dumps(record, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return record
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(list(rows), [r["seconds"] for r in rows.values()])
    ax.set_ylabel("seconds")
    ax.set_title(f"resolvent diagonal, N = 2^{args.log2n}")
    fig.tight_layout()
    fig.savefig(OUT / "bench_dask.png", dpi=100)
    return record


def run(quick: bool) -> dict:
    """The ``run_all.py`` entry point: the issue's targets judged on this run's figures."""
    argv = ["--quick"] if quick else ["--log2n", "24"]
    rec = main(argv)
    res = rec["resolvent"]
    keys = ("numpy (1 process)", "dask, 1 worker(s)", "dask, 2 worker(s)")
    t_np, t1, t2 = (res[k]["seconds"] for k in keys)
    moved = rec["bytes_moved_per_chunk_vs_n"]
    targets = [
        {"target": "2 workers >= 1.6x faster than 1", "measured": t1 / t2,
         "verdict": "PASS" if t1 / t2 >= 1.6 else "MISS", "detail": "same run"},
        {"target": "1 worker <= 1.5x the NumPy call", "measured": t1 / t_np,
         "verdict": "PASS" if t1 / t_np <= 1.5 else "MISS", "detail": f"N = 2^{rec['args']['log2n']}"},
        {"target": "bytes moved per chunk independent of N", "measured": moved, "verdict": "n/a",
         "detail": "same number of chunks at N/4 and N"},
    ]
    return {"name": "dask", "targets": targets, "record": rec}


if __name__ == "__main__":
    main()
