"""``semisep.test()``: run the shipped correctness suite on the user's machine and device."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence

PROFILES = ("quick", "thorough", "deep")
#: exit code of a run that checked nothing (pytest's "no tests collected")
NO_EXAMPLES = 5


def require_test_extras() -> None:
    """ImportError naming the missing test dependencies and the command that installs them."""
    import importlib

    missing = []
    for name in ("pytest", "hypothesis"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"semisep.test needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'}"
            ' not installed: pip install "semisep[test]"'
        )


class DeviceUnavailableError(RuntimeError):
    """The requested torch device does not exist on this machine."""


def check_device(device: str | None) -> str:
    """Validate ``device`` (None -> "cpu"); a CUDA device that is not there is an error."""
    if device is None or device == "cpu":
        return "cpu"
    if not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    try:
        import torch
    except ImportError as exc:
        raise DeviceUnavailableError(
            f"--device {device} needs torch, which is not installed (pip install semisep[torch])"
        ) from exc
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"--device {device}: torch {torch.__version__} sees no CUDA device on this machine "
            "(torch.cuda.is_available() is False); nothing was tested"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present"
        )
    return device


def _package_dir() -> str:
    import os

    return os.path.dirname(os.path.abspath(__file__))


def versions() -> str:
    import numba
    import numpy
    import scipy

    import semisep

    parts = [
        f"semisep {semisep.__version__}", f"python {platform.python_version()}",
        f"numpy {numpy.__version__}", f"scipy {scipy.__version__}", f"numba {numba.__version__}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        parts.append("torch not installed")
    return ", ".join(parts)


def test(
    device: str | None = None,
    profile: str = "quick",
    dtype: str | None = None,
    extra_args: Sequence[str] = (),
    seed: int | None = None,
) -> int:
    """Run semisep's shipped property and conformance suite with pytest; return its exit code.

    Parameters
    ----------
    device : "cpu" | "cuda" | "cuda:N" | None
        Where torch tensors are created (the NumPy backend always runs).  A CUDA device that is
        not present raises :class:`DeviceUnavailableError` -- never a skip that looks like success.
    profile : "quick" | "thorough" | "deep"
        Hypothesis profile: about 15, 150 or 1500 examples per property.
    dtype : str, optional
        Draw property examples only in this dtype ("float32", "float64", "complex64",
        "complex128"; comma-separated for several).
    extra_args : sequence of str
        More pytest arguments (e.g. ``["-x", "-k", "resolvent"]``).
    seed : int, optional
        Hypothesis seed, for reproducing a run.

    A failing example prints hypothesis's reproduction (the falsifying example and a
    ``@reproduce_failure`` blob) so that it can be filed as an issue.  A run that executes no
    hypothesis example (a filter that selects nothing) is a failure (exit code 5, pytest's
    "no tests collected"), never a pass.

    Needs pytest and hypothesis (``pip install "semisep[test]"``); without them an ImportError
    says so.
    """
    require_test_extras()
    import pytest

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    device = check_device(device)
    if dtype is not None:
        from .tests.plugin import ALL_DTYPES

        names = [x.strip() for x in str(dtype).split(",")]
        if not all(x in ALL_DTYPES for x in names):
            raise ValueError(f"dtype must be one of {ALL_DTYPES} (comma-separated), got {dtype!r}")
    args = [
        "--pyargs", "semisep.tests", "-p", "semisep.tests.plugin", "-p", "no:cacheprovider", "-q",
        # ignore whatever pytest configuration the current directory has
        "-o", "addopts=", "-o", "testpaths=", "--rootdir", _package_dir(),
        f"--hypothesis-profile=semisep-{profile}", f"--semisep-device={device}",
    ]
    if seed is not None:
        args.append(f"--hypothesis-seed={seed}")
    if dtype:
        args.append(f"--semisep-dtype={dtype}")
    args += list(extra_args)
    print(f"semisep.test: device {device}, profile {profile}; {versions()}", flush=True)
    from ._progress import PytestProgress  # a bar and an estimate for the longer profiles

    code = int(pytest.main(args, plugins=[] if profile == "quick" else [PytestProgress(profile)]))
    from .tests.plugin import EXAMPLES

    if code == 0 and EXAMPLES["run"] == 0:
        code = NO_EXAMPLES
        status = (f"FAILED: the selection (dtype {dtype!r}, pytest arguments {list(extra_args)}) "
                  "ran no hypothesis example, so nothing was checked")
    else:
        status = "passed" if code == 0 else f"FAILED (pytest exit code {code})"
    print(
        f"semisep.test summary: device {device}, profile {profile}, "
        f"hypothesis examples run {EXAMPLES['run']}, {status}; {versions()}",
        flush=True,
    )
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(test())
