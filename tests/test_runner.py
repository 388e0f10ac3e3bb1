"""The user-facing test runner: semisep.test() / python -m semisep test."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from semisep._runner import DeviceUnavailableError, check_device


def _run(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout,
    )


def test_runner_passes_on_cpu_quick_profile():
    """The runner end to end: a property test on both backends and the error tests pass through
    ``semisep.test`` with the quick profile.  The selection is small on purpose: the shipped
    suite itself (conformance classes in every dtype) runs in this repository's own test run;
    here a wider ``-k`` would only compile the same kernels again in a cold subprocess."""
    r = _run(
        """
        import sys, semisep
        sys.exit(semisep.test(profile="quick",
                              extra_args=["-k", "test_properties and resolvent_diagonal or test_errors"]))
        """
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "semisep.test summary: device cpu, profile quick" in out
    assert "passed" in out
    examples = int(out.split("hypothesis examples run ")[1].split(",")[0])
    assert examples > 0


def test_runner_fails_on_a_broken_kernel_and_prints_reproduction():
    r = _run(
        """
        import sys, semisep
        from semisep.backends.numpy import NumpyBackend
        good = NumpyBackend.resolvent_diagonal_shifted   # the kernel the core calls
        def broken(self, *a, **k):
            G, g, s = good(self, *a, **k)
            return G * (1 + 1e-3), g, s          # a 0.1% error in every G_ii
        NumpyBackend.resolvent_diagonal_shifted = broken
        sys.exit(semisep.test(profile="quick", extra_args=["-k", "property_resolvent_diagonal and numpy"]))
        """
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    # hypothesis < 6.16x says "Falsifying example", newer releases "Failing test case"
    assert ("Falsifying example" in out or "Failing test case" in out), out
    assert "@reproduce_failure" in out, out
    assert "FAILED (pytest exit code 1)" in out


def test_cuda_without_device_is_a_clear_error_not_a_skip():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert check_device("cuda") == "cuda"
        return
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        check_device("cuda")
    r = subprocess.run(
        [sys.executable, "-m", "semisep", "test", "--device", "cuda"], capture_output=True,
        text=True, timeout=300,
    )
    assert r.returncode == 2 and "no CUDA device" in r.stderr


def test_bad_device_and_profile_names():
    with pytest.raises(ValueError, match="device must be"):
        check_device("tpu")
    import semisep

    with pytest.raises(ValueError, match="profile"):
        semisep.test(profile="huge")


def test_dtype_selection_runs_examples_in_that_dtype():
    r = _run(
        """
        import sys, semisep
        sys.exit(semisep.test(dtype="float32", extra_args=["-k", "property_resolvent_diagonal and numpy"]))
        """
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert int(out.split("hypothesis examples run ")[1].split(",")[0]) > 0, out


def test_a_selection_that_runs_no_example_fails():
    """Tests that pass but draw no hypothesis example checked no property: not a pass."""
    r = _run(
        """
        import sys, semisep
        sys.exit(semisep.test(extra_args=["-k", "test_shape_errors or test_non_finite_rejected"]))
        """
    )
    out = r.stdout + r.stderr
    assert "passed" in out.split("semisep.test summary")[0], out   # pytest itself passed
    assert r.returncode == 5, out
    assert "ran no hypothesis example" in out


def test_missing_test_extras_say_what_to_install():
    r = _run(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name in ("pytest", "hypothesis"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        import semisep
        try:
            semisep.test()
        except ImportError as exc:
            print("ERR", exc)
        """
    )
    out = r.stdout + r.stderr
    assert 'pip install "semisep[test]"' in out and "ERR" in out, out
