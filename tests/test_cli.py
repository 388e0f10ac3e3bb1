"""python -m semisep: selfcheck, verify, bench, test — exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys

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
