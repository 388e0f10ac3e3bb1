"""Does a neighbour in the round-robin change semisep's batch speedup?  The inverse diagonal of
``bench_quasiseparable`` (Matern-3/2, N = 2^17, batch 8 against eight batch-1 calls), timed
round-robin three ways: the pair alone, the pair with tinygp's batched (vmapped) call in the
same round-robin, and the pair alone again after tinygp has run.  Needs the ``bench`` extra.

    PYTHONPATH=. python benchmarks/probe_batch_neighbour.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quasiseparable as bq  # noqa: E402
from common import interleaved_times  # noqa: E402


def main() -> None:
    k = bq.inv_kernel()
    tb = bq.times(1 << 17, bq.BATCH)
    fns = {"b8": lambda: bq.semisep_invdiag(k, tb),
           "seq": lambda: [bq.semisep_invdiag(k, tb[i]) for i in range(bq.BATCH)]}

    def report(label):
        r = interleaved_times(fns, rounds=15, warmup=1)
        b8, seq = r["b8"]["median_s"], r["seq"]["median_s"]
        print(f"{label}: batch 8 {b8 * 1e3:.1f} ms, 8 x batch 1 {seq * 1e3:.1f} ms, speedup {seq / b8:.2f}x")

    report("pair alone")
    jnp, _, tg_many = bq._tinygp()
    jtb = jnp.asarray(tb)
    tg_many(jtb).block_until_ready()
    fns["tinygp_b8"] = lambda: tg_many(jtb).block_until_ready()
    report("with tinygp's batch in the round-robin")
    del fns["tinygp_b8"]
    report("pair alone, after tinygp")


if __name__ == "__main__":
    main()
