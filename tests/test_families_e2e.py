"""Every actor family trains with TD3 and SAC on HalfCheetah-v5 at T = 1 through the command line."""

import json
import math

import pytest

from neurorl.cli import main

ACTORS = ["popsan", "mdcsan", "ilcsan", "bptsan", "ann"]
BASE = ["--env", "HalfCheetah-v5", "--T", "1", "--steps", "1500", "--learning-starts", "1000",
        "--eval-every", "1500", "--eval-episodes", "1", "--no-progress"]


def finite_values(value):
    if isinstance(value, dict):
        return all(finite_values(item) for item in value.values())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def train(tmp_path, *options):
    out = tmp_path / "run"
    assert main(["train", *BASE, *options, "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["td3", "sac"])
@pytest.mark.parametrize("actor", ACTORS)
def test_family_trains(tmp_path, actor, algo):
    summary = train(tmp_path, "--actor", actor, "--algo", algo)
    numbers = {key: value for key, value in summary.items() if key not in ("energy_ledger",)}
    assert finite_values(numbers), numbers
    assert summary["energy_per_action_j"] > 0
    assert summary["energy_j"]["learning"] > 0
    assert summary["algo"] == algo and summary["actor"] == actor
    assert summary["policy_entropy"] is not None and math.isfinite(summary["policy_entropy"])


@pytest.mark.slow
@pytest.mark.parametrize("actor", ACTORS)
def test_family_trains_with_spiking_critic(tmp_path, actor):
    summary = train(tmp_path, "--actor", actor, "--algo", "td3", "--critic", "spiking-q", "--td-loss", "truncated")
    numbers = {key: value for key, value in summary.items() if key not in ("energy_ledger",)}
    assert finite_values(numbers), numbers
    assert summary["energy_j"]["learning"] > 0
