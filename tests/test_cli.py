"""python -m semisep: selfcheck, verify, bench, test — exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semisep.__main__ import main


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semisep", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_for_every_subcommand():
    for sub in ("selfcheck", "verify", "bench", "test"):
        r = run_cli(sub, "--help")
        assert r.returncode == 0 and "usage" in r.stdout.lower(), sub


def test_selfcheck_small_passes():
    r = run_cli("selfcheck", "--log2n", "12", "--batch", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "selfcheck passed" in r.stdout and "max rel err" in r.stdout


def test_verify_recovers_tridiagonal_plus_low_rank(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n, r = 64, 3
    H = (np.diag(rng.standard_normal(n)) + np.diag(rng.standard_normal(n - 1), 1)
         + np.diag(rng.standard_normal(n - 1), -1)
         + rng.standard_normal((n, r)) @ rng.standard_normal((r, n)))
    f = tmp_path / "h.npy"
    np.save(f, H)
    assert main(["verify", str(f), "--rank", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passes"] is True and report["relative_error"] < 1e-10 and report["rank"] == 3


def test_verify_random_matrix_fails_honestly(tmp_path, capsys):
    f = tmp_path / "g.npy"
    np.save(f, np.random.default_rng(1).standard_normal((64, 64)))
    assert main(["verify", str(f)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: relative error" in out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read"),
        (np.ones((3, 4)), "square matrix"),
        (np.ones(5), "square matrix"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or inf"),
    ],
)
def test_verify_bad_input_exit_code_2(tmp_path, capsys, content, message):
    f = tmp_path / "bad.npy"
    if content is None:
        f.write_text("not a numpy file")
    else:
        np.save(f, content)
    assert main(["verify", str(f)]) == 2
    assert message in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.npy")]) == 2


def _huge_header(path):
    """A .npy file whose header declares a 200000 x 200000 float64 matrix (320 GB) over 64
    bytes of data: verify must refuse it from the header, before allocating anything."""
    from numpy.lib import format as npf

    with open(path, "wb") as f:
        npf.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                       "shape": (200000, 200000)})
        f.write(b"\0" * 64)


def _write(kind, f):
    if kind == "float16":
        np.save(f, np.eye(4, dtype=np.float16))
    elif kind == "empty (0, 0)":
        np.save(f, np.zeros((0, 0)))
    elif kind == "longdouble":
        np.save(f, np.eye(4, dtype=np.longdouble))
    elif kind == "complex256":
        np.save(f, np.eye(4, dtype=np.clongdouble))
    elif kind == "npz":
        with open(f, "wb") as fh:
            np.savez(fh, a=np.eye(4))
    elif kind == "empty file":
        f.write_bytes(b"")
    elif kind == "huge header":
        _huge_header(f)
    elif kind == "plain text":
        np.savetxt(f, np.eye(3))
    elif kind == "object":
        np.save(f, np.array([[1, None], [None, 1]], dtype=object), allow_pickle=True)
    else:
        raise AssertionError(kind)


BAD_FILES = {
    "float16": "dtype float16", "empty (0, 0)": "empty (0, 0) matrix",
    "longdouble": f"dtype {np.dtype(np.longdouble)}", "complex256": f"dtype {np.dtype(np.clongdouble)}",
    "npz": ".npz archive", "empty file": "file is empty", "huge header": "truncated",
    "plain text": "magic bytes", "object": "pickled Python objects",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_verify_bad_file_one_line_exit_2(tmp_path, capsys, kind):
    f = tmp_path / "bad.npy"
    _write(kind, f)
    assert main(["verify", str(f)]) == 2
    err = capsys.readouterr().err
    assert BAD_FILES[kind] in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_verify_dev_null_and_folder(tmp_path, capsys):
    for path, message in (("/dev/null", "file is empty"), (str(tmp_path), "is a folder")):
        if path == "/dev/null" and not Path(path).exists():
            continue
        assert main(["verify", path]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rank", "-1"], "--rank: -1 is out of range"),
        (["--rank", "100"], "--rank 100 is larger than N = 16"),
        (["--rank", "two"], "'two' is not an integer"),
        (["--max-iter", "0"], "--max-iter: 0 is out of range"),
        (["--tol", "-1"], "--tol: -1.0 must be a finite number > 0"),
        (["--rtol", "nan"], "--rtol: nan must be a finite number > 0"),
    ],
)
def test_verify_bad_arguments_one_line_exit_2(tmp_path, capsys, args, message):
    f = tmp_path / "ok.npy"
    np.save(f, np.eye(16) + 0.1)
    assert _exit_code(["verify", str(f), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def _exit_code(argv):
    """main's return value, or the code of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_verify_max_iter_and_tol_reach_factorize(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n = 32
    H = np.diag(rng.standard_normal(n)) + 0.3 * rng.standard_normal((n, n))
    f = tmp_path / "h.npy"
    np.save(f, H)
    main(["verify", str(f), "--rank", "2", "--max-iter", "3", "--tol", "1e-12", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rep["iterations"] <= 3
    main(["verify", str(f), "--rank", "2", "--max-iter", "50", "--tol", "1e-12", "--json"])
    assert json.loads(capsys.readouterr().out)["iterations"] > 3


def test_verify_nan_message_prints_plain_ints(tmp_path, capsys):
    f = tmp_path / "nan.npy"
    np.save(f, np.array([[1.0, np.nan], [0.0, 1.0]]))
    assert main(["verify", str(f)]) == 2
    err = capsys.readouterr().err
    assert "(0, 1)" in err and "np.int64" not in err, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["selfcheck", "--log2n", "0"], "--log2n: 0 is out of range"),
        (["selfcheck", "--batch", "0"], "--batch: 0 is out of range"),
        (["test", "--device", "tpu"], "device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (["test", "--dtype", "float8"], "dtype must be one of"),
    ],
)
def test_other_bad_arguments_one_line_exit_2(args, message):
    r = run_cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_selfcheck_smallest_chain():
    r = run_cli("selfcheck", "--log2n", "1", "--batch", "1")
    assert r.returncode == 0, r.stdout + r.stderr
