"""End-to-end training runs through the command line on a real MuJoCo task."""

import csv
import json
import math
import subprocess
import sys

import pytest
import torch

from neurorl.snn import linear

SUMMARY_KEYS = [
    "eval_return", "energy_per_action_j", "ann_energy_per_action_j", "return_per_joule", "energy_j",
    "buffer_size", "shrink_events", "steps", "sps", "energy_model",
]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "neurorl", *args], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_popsan_resilient_hopper_run(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train", "--env", "Hopper-v5", "--actor", "popsan", "--T", "2", "--replay", "resilient",
        "--steps", "3000", "--learning-starts", "1000", "--eval-every", "1000", "--eval-episodes", "2",
        "--seed", "1", "--out", str(out), "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "return per joule" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    for key in SUMMARY_KEYS:
        assert key in summary, key
    for phase in ("acting", "learning", "replay"):
        assert math.isfinite(summary["energy_j"][phase]) and summary["energy_j"][phase] > 0, phase
    assert summary["energy_per_action_j"] > 0 and summary["ann_energy_per_action_j"] > 0
    assert math.isfinite(summary["return_per_joule"])
    assert summary["energy_model"] == "horowitz45-fp32"
    assert summary["linear_backend"] == ("onednn" if linear.onednn_available() else "blas")

    # Energy per action recomputed from the counted operations with 0.9 pJ per AC and 4.6 pJ per MAC.
    expected = summary["ac_per_action"] * 0.9e-12 + summary["mac_per_action"] * 4.6e-12
    assert summary["energy_per_action_j"] == pytest.approx(expected, rel=1e-9)

    # The ANN with the same sizes (11-256-256-3) costs one MAC per connection.
    assert summary["ann_energy_per_action_j"] == pytest.approx((11 * 256 + 256 * 256 + 256 * 3) * 4.6e-12)

    with (out / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == [1000, 2000, 3000]

    with (out / "replay_checks.csv").open() as stream:
        checks = list(csv.DictReader(stream))
    assert len(checks) == summary["replay_checks"] >= 1
    removed = sum(int(check["removed"]) for check in checks)
    assert summary["buffer_size"] == 3000 - removed
    assert summary["shrink_events"] == sum(int(check["removed"]) > 0 for check in checks)
    for check in checks:
        assert float(check["dis"]) <= float(check["direct_dis"]) + 1e-9
        assert int(check["size_after"]) >= 1000 or int(check["removed"]) == 0

    checkpoint = torch.load(out / "actor.pt", weights_only=True)
    assert checkpoint["actor"] == "popsan"
    assert "layers.0.weight" in checkpoint["state_dict"]


@pytest.mark.slow
def test_ann_fifo_run_and_finished_dir_rejected(tmp_path):
    out = tmp_path / "ann"
    args = ["train", "--env", "Hopper-v5", "--actor", "ann", "--replay", "fifo", "--steps", "1500",
            "--learning-starts", "500", "--eval-every", "1500", "--eval-episodes", "1", "--hidden", "64,64",
            "--out", str(out), "--no-progress"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shrink_events"] == 0 and summary["buffer_size"] == 1500
    assert summary["energy_j"]["replay"] == 0
    assert summary["snn_ann_energy_ratio"] == pytest.approx(1.0)

    again = run_cli(*args)
    assert again.returncode == 2
    assert "already holds a finished run" in again.stderr


def test_timing_parts_include_energy_counting(tmp_path):
    """timing_s names every part; the counters' own time is positive and inside acting + update + evaluation."""
    from neurorl.config import build_config
    from neurorl.experiment.training import TIMING_PARTS, train

    config = build_config({}, {
        "env": "neurorl/2DNav-v1", "actor": "popsan", "T": "2", "hidden": "16,16", "steps": "300", "learning_starts": "100",
        "batch_size": "16", "eval_every": "300", "eval_episodes": "1", "replay": "fifo", "tensorboard": False,
    })
    timing = train(config, tmp_path / "run", show_progress=False)["timing_s"]

    for part in (*TIMING_PARTS, "critic_update", "actor_update"):
        assert part in timing, part
        assert timing[part] >= 0, part
    assert timing["energy"] > 0
    assert timing["energy"] < timing["acting"] + timing["update"] + timing["evaluation"]
