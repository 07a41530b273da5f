"""Checkpoints and resuming: a run killed with SIGKILL continues with nothing lost or repeated."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from neurorl.cli import main
from neurorl.experiment.checkpoint import from_safe, load_checkpoint, to_safe

RUN_ARGS = [
    "--env", "Hopper-v5", "--actor", "popsan", "--T", "1", "--hidden", "32,32", "--replay", "resilient",
    "--steps", "3000", "--learning-starts", "300", "--eval-every", "250", "--eval-episodes", "1",
    "--checkpoint-every", "200", "--check-interval", "250", "--min-size", "400", "--check-batch", "128",
    "--batch-size", "64", "--seed", "3", "--no-progress", "--threshold", "5",
]


def train_command(out, *extra):
    return [sys.executable, "-m", "neurorl", "train", *RUN_ARGS, "--out", str(out), *extra]


def metric_rows(run_dir):
    with (run_dir / "metrics.csv").open() as stream:
        return list(csv.DictReader(stream))


def test_safe_conversion_round_trip():
    value = {"a": np.arange(4, dtype=np.int64), "b": [np.float32(2.5), (1, np.ones((2, 2), np.float32))], "c": None}
    back = from_safe(to_safe(value))
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["a"].dtype == np.int64
    assert back["b"][0] == 2.5 and isinstance(back["b"][0], float)
    np.testing.assert_array_equal(back["b"][1][1], np.ones((2, 2), np.float32))


def test_resume_rejects_bad_directories(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "directory not found" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.toml" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--T", "3"]) == 2
    assert "cannot be combined with --T" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(train_command(reference), check=True, capture_output=True, timeout=900)

    interrupted = tmp_path / "interrupted"
    log = (tmp_path / "interrupted.log").open("w")
    process = subprocess.Popen(train_command(interrupted), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        rows = metric_rows(interrupted) if (interrupted / "metrics.csv").exists() else []
        if (interrupted / "checkpoint.pt").exists() and len(rows) >= 5:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    assert (interrupted / "checkpoint.pt").exists(), (tmp_path / "interrupted.log").read_text()[-3000:]
    assert not (interrupted / "summary.json").exists(), "the run must be killed before it finishes"
    killed_at = load_checkpoint(interrupted)["loop"]["step"]
    assert 0 < killed_at < 3000

    resumed = subprocess.run(
        [sys.executable, "-m", "neurorl", "train", "--resume", str(interrupted), "--no-progress"],
        capture_output=True, text=True, timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr

    steps = [int(row["step"]) for row in metric_rows(interrupted)]
    assert steps == list(range(250, 3001, 250))
    expected = metric_rows(reference)
    for column in ("eval_return", "buffer_size", "dis", "shrink_events", "energy_acting_j", "energy_learning_j", "energy_replay_j"):
        assert [row[column] for row in metric_rows(interrupted)] == [row[column] for row in expected], column

    final_reference = load_checkpoint(reference)["replay"]
    final_resumed = load_checkpoint(interrupted)["replay"]
    np.testing.assert_array_equal(final_resumed["storage"]["rows"], final_reference["storage"]["rows"])
    assert _flatten(final_resumed) == _flatten(final_reference)

    actor_a = torch.load(reference / "actor.pt", weights_only=True)["state_dict"]
    actor_b = torch.load(interrupted / "actor.pt", weights_only=True)["state_dict"]
    for name in actor_a:
        assert torch.equal(actor_a[name], actor_b[name]), name


def _flatten(value, prefix=""):
    """Flatten nested state into {path: bytes or scalar} for an exact comparison."""
    items = {}
    if isinstance(value, dict):
        for key, item in value.items():
            items.update(_flatten(item, f"{prefix}/{key}"))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            items.update(_flatten(item, f"{prefix}/{index}"))
    elif isinstance(value, np.ndarray):
        items[prefix] = (value.dtype.str, value.shape, value.tobytes())
    else:
        items[prefix] = value
    return items
