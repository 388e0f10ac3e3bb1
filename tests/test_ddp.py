"""BirmanSchwingerCore and SemiseparableMatrix under torch DistributedDataParallel (gloo, two
CPU processes started here): after one SGD step the parameters equal those of one process
trained on the concatenated batch.

The rendezvous store is served by this (parent) process on a port the operating system assigns
and that stays bound for the whole test, so no other process (a Dask cluster in a neighbouring
pytest worker, say) can take the port between choosing it and binding it."""

from __future__ import annotations

import datetime

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

N, R, BATCH, LR = 16, 2, 4, 0.1


class Net(torch.nn.Module):
    """A semiseparable layer feeding the Birman-Schwinger core: x -> H x -> features."""

    def __init__(self):
        super().__init__()
        from semisep.nn import BirmanSchwingerCore, SemiseparableMatrix

        torch.manual_seed(0)
        self.mix = SemiseparableMatrix(N, rank=R, dtype=torch.float64)
        with torch.no_grad():  # a non-trivial start (the default init may be the identity)
            for p in self.mix.parameters():
                p.add_(0.1 * torch.randn_like(p))
        self.core = BirmanSchwingerCore(N, epsilon=0.5, semiseparable_rank=R, init_scale=0.1,
                                        dtype=torch.float64)

    def forward(self, x):
        features, _ = self.core(self.mix(x))
        return features


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, N, generator=g, dtype=torch.float64)


def _step(model, x):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss = (model(x) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


_TIMEOUT = datetime.timedelta(seconds=120)


def _worker(rank, world, port, out):
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=_TIMEOUT)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=_TIMEOUT)
    try:
        model = torch.nn.parallel.DistributedDataParallel(Net())
        x = _batch().chunk(world)[rank]  # this rank's half of the batch
        _step(model, x)  # DDP averages the gradients: the mean loss over the whole batch
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()}, out)
        dist.barrier()  # both ranks finished before either tears the group down
    finally:
        dist.destroy_process_group()


def test_ddp_step_equals_single_process(tmp_path):
    out = str(tmp_path / "ddp.pt")
    # The parent serves the store on port 0 (the OS picks a free port) and holds it until the
    # workers have joined.
    store = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False,
                          timeout=_TIMEOUT)
    mp.spawn(_worker, args=(2, store.port, out), nprocs=2, join=True)
    del store
    ddp = torch.load(out)
    single = Net()
    before = {k: v.detach().clone() for k, v in single.state_dict().items()}
    _step(single, _batch())
    ref = single.state_dict()
    assert set(ddp) == set(ref)
    moved = 0
    for k, v in ref.items():
        assert torch.allclose(ddp[k], v, rtol=1e-12, atol=1e-12 * float(v.abs().max()) + 1e-300), k
        moved += int(not torch.equal(v, before[k]))
    assert moved >= 2  # the step changed the parameters of both layers
