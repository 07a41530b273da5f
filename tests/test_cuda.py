"""Training, resume, multi-seed training and energy counting on a CUDA device (skipped without one)."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

# NOTE: written for CUDA but never run on a GPU so far; the machines that ran this suite had none.
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "neurorl", *args], capture_output=True, text=True, timeout=900)


def tiny_run(*extra):
    return ("train", "--env", "neurorl/2DNav-v1", "--steps", "600", "--learning-starts", "200", "--eval-every", "300",
            "--eval-episodes", "1", "--hidden", "32,32", "--batch-size", "32", "--device", "cuda", "--no-progress", *extra)


@pytest.mark.slow
@pytest.mark.parametrize("actor", ["popsan", "ann", "mdcsan", "ilcsan", "bptsan"])
def test_cuda_training_matches_cpu_counts(tmp_path, actor):
    """A CUDA run finishes with finite energy and the CPU run's MACs per action.

    ACs depend on the trajectory, which rounding differences change, so only their presence is compared.
    """
    summaries = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / device
        args = list(tiny_run("--actor", actor, "--T", "2", "--replay", "resilient", "--check-interval", "100",
                             "--check-batch", "64", "--min-size", "100", "--out", str(out)))
        args[args.index("--device") + 1] = device
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        summaries[device] = json.loads((out / "summary.json").read_text())

    cuda, cpu = summaries["cuda"], summaries["cpu"]
    for phase in ("acting", "learning", "replay"):
        assert math.isfinite(cuda["energy_j"][phase])
        assert cuda["energy_j"][phase] > 0
    assert cuda["mac_per_action"] == cpu["mac_per_action"]
    assert (cuda["ac_per_action"] > 0) == (cpu["ac_per_action"] > 0)
    assert cuda["replay_checks"] == cpu["replay_checks"]


@pytest.mark.slow
def test_cuda_sac_and_spiking_critic(tmp_path):
    result = run_cli(*tiny_run("--actor", "popsan", "--algo", "sac", "--out", str(tmp_path / "sac")))
    assert result.returncode == 0, result.stderr
    result = run_cli(*tiny_run("--actor", "popsan", "--critic", "spiking-q", "--out", str(tmp_path / "q")))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_cuda_sigkill_then_resume(tmp_path):
    """A CUDA run killed after a checkpoint resumes to the uninterrupted run's metrics."""
    args = tiny_run("--actor", "popsan", "--steps", "1500", "--eval-every", "250", "--checkpoint-every", "100", "--seed", "2")
    reference = tmp_path / "reference"
    assert run_cli(*args, "--out", str(reference)).returncode == 0

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "neurorl", *args, "--out", str(interrupted)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not (interrupted / "checkpoint.pt").exists():
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (interrupted / "checkpoint.pt").exists()
    assert not (interrupted / "summary.json").exists(), "the run must be killed before it finishes"

    resumed = run_cli("train", "--resume", str(interrupted), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    expected = metric_rows(reference)
    got = metric_rows(interrupted)
    assert [row["step"] for row in got] == [row["step"] for row in expected]
    for row, reference_row in zip(got, expected):
        assert float(row["eval_return"]) == pytest.approx(float(reference_row["eval_return"]), rel=1e-3, abs=1e-3)


def metric_rows(run_dir):
    with (run_dir / "metrics.csv").open() as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_cuda_multiseed(tmp_path):
    result = run_cli(*tiny_run("--actor", "popsan", "--out", str(tmp_path / "seeds"), "--seeds", "0,1,2"))
    assert result.returncode == 0, result.stderr
    for seed in (0, 1, 2):
        summary = json.loads((tmp_path / "seeds" / f"seed={seed}" / "summary.json").read_text())
        assert math.isfinite(summary["eval_return"])
        assert summary["energy_j"]["acting"] > 0
