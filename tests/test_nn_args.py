"""nn modules: argument validation naming the argument, empty batches, seed-era names that say
what replaced them, and the memory planner's device argument."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from semisep import cost  # noqa: E402
from semisep.nn import BirmanSchwingerCore, BKLayer, MultiScaleBKLayer  # noqa: E402
from semisep.nn._args import SEED_NAMES  # noqa: E402


@pytest.mark.parametrize("use_semiseparable", [True, False])
def test_core_empty_batch(use_semiseparable):
    core = BirmanSchwingerCore(8, use_semiseparable=use_semiseparable, dtype=torch.float64)
    f, d = core(torch.zeros(0, 8, dtype=torch.float64))
    assert f.shape == (0, 8, 2) and d["all_finite"]


@pytest.mark.parametrize("layer", [BKLayer, MultiScaleBKLayer])
@pytest.mark.parametrize("n", [8, 7])
def test_layers_empty_batch(layer, n):
    out, stats = layer(4, n)(torch.randn(0, n, 4))
    assert out.shape == (0, n, 4)


@pytest.mark.parametrize("z", [0.0, 0.5, -3.0])
def test_bklayer_real_z_off_the_spectrum(z):
    """A real z: G is real, the features' imaginary part is 0 (was: view_as_real error)."""
    torch.manual_seed(0)
    layer = BKLayer(4, 8, z=z).double()
    x = torch.randn(2, 8, 4, dtype=torch.float64)
    out, _ = layer(x)
    # the same layer with z as a complex number of zero imaginary part gives the same output
    layer.z = complex(z, 0.0)
    out2, _ = layer(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, out2)


@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda: BirmanSchwingerCore(2.5), TypeError, "n_seq must be an integer, got float 2.5"),
        (lambda: BirmanSchwingerCore(1), ValueError, "n_seq = 1 must satisfy 2 <= n_seq"),
        (lambda: BirmanSchwingerCore(8, semiseparable_rank=-1), ValueError, "semiseparable_rank = -1"),
        (lambda: BirmanSchwingerCore(8, semiseparable_rank=9), ValueError, "<= n_seq = 8"),
        (lambda: BirmanSchwingerCore(8, epsilon=0.0), ValueError, "epsilon = 0.0 must be"),
        (lambda: BirmanSchwingerCore(8, history_size=-1), ValueError, "history_size = -1"),
        (lambda: BirmanSchwingerCore(8, rank=-1), TypeError, "semiseparable_rank="),
        (lambda: BKLayer(4, 2.5), TypeError, "n_seq must be an integer"),
        (lambda: BKLayer(0, 8), ValueError, "d_model = 0"),
        (lambda: BKLayer(4, 8, z=None), TypeError, "z must be a real or complex number"),
        (lambda: BKLayer(4, 8, z=float("nan")), ValueError, "z = nan must be finite"),
        (lambda: MultiScaleBKLayer(4, -8), ValueError, "n_seq = -8"),
        (lambda: BKLayer(4, 8)(torch.randn(2, 7, 4)), ValueError, r"x must be a tensor of shape"),
        (lambda: BirmanSchwingerCore(8)(torch.zeros(2, 8), z="1j"), TypeError, "z must be"),
    ],
)
def test_argument_errors_name_the_argument(make, exc, message):
    with pytest.raises(exc, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize("name", ["use_mourre", "use_lap", "schatten_threshold", "num_experts"])
def test_seed_constructor_arguments_say_what_replaced_them(name):
    with pytest.raises(TypeError, match=f"BirmanSchwingerCore\\({name}=...\\) is a BK-Core argument"):
        BirmanSchwingerCore(8, **{name: True})
    with pytest.raises(TypeError, match=SEED_NAMES[name][:20].replace("(", r"\(")):
        BKLayer(4, 8, **{name: 1})


def test_unknown_keyword_is_a_plain_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        BirmanSchwingerCore(8, colour=1)


def test_seed_diagnostics_keys_and_attribute_say_what_replaced_them():
    core = BirmanSchwingerCore(8)
    _, d = core(torch.randn(2, 8))
    with pytest.raises(KeyError, match="capacitance_condition"):
        _ = d["condition_number"]
    with pytest.raises(KeyError, match="operator_memory_savings"):
        _ = d["memory_savings"]
    with pytest.raises(KeyError):
        _ = d["no such key"]
    assert d["capacitance_condition"] is not None and 0 < d["operator_memory_savings"] < 1
    with pytest.raises(AttributeError, match="core.U, core.V .* core.rank"):
        _ = core.semiseparable.rank
    assert core.rank >= 1


def test_memory_plan_for_another_device():
    """Planning a CUDA step from a CPU module: device='cuda' gives the CUDA path's figures
    (no shift form), the same as cost.core_memory with shift_form=False."""
    core = BirmanSchwingerCore(256, dtype=torch.float32)
    cpu = core.estimate_memory_usage(8, use_checkpointing=False)
    gpu = core.estimate_memory_usage(8, use_checkpointing=False, device="cuda")
    want = cost.core_memory(256, core.rank, 8, "float32", "float32", shift_form=False)
    assert gpu["activation_bytes"] == want["activation_bytes"]
    assert gpu["activation_bytes"] > cpu["activation_bytes"]  # the CPU path saves less
    assert cost.core_memory(256, core.rank, 8, device="cuda:0") == cost.core_memory(
        256, core.rank, 8, shift_form=False)
    b_cpu = core.compute_optimal_batch_size(2**28, use_checkpointing=False)
    b_gpu = core.compute_optimal_batch_size(2**28, use_checkpointing=False, device="cuda")
    assert b_gpu <= b_cpu


def test_checkpointing_raises_a_single_cores_peak_by_its_inputs():
    """The documented reason checkpointing lowers the recommended batch for one core."""
    core = BirmanSchwingerCore(512)
    plain = core.estimate_memory_usage(16, use_checkpointing=False)
    ck = core.estimate_memory_usage(16, use_checkpointing=True)
    assert ck["total_bytes"] == plain["total_bytes"] + 16 * 512 * 4
