"""``neurorl energy RUN_DIR`` on a real run: per-layer figures add up to the totals."""

import json

import pytest

from neurorl.cli import main
from neurorl.energy import get_energy_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("energy") / "run"
    status = main([
        "train", "--env", "neurorl/2DNav-v1", "--actor", "popsan", "--T", "2", "--hidden", "32,32",
        "--steps", "600", "--learning-starts", "300", "--eval-every", "600", "--eval-episodes", "1",
        "--replay", "fifo", "--out", str(out), "--no-progress",
    ])
    assert status == 0
    return out


def test_energy_json_layers_sum_to_totals(run_dir):
    assert main(["energy", str(run_dir), "--episodes", "2", "--json"]) == 0
    report = json.loads((run_dir / "energy.json").read_text())
    assert report["actions"] > 0
    for key in ("ac", "mac"):
        assert sum(layer[f"{key}_per_action"] for layer in report["layers"]) == pytest.approx(report["per_action"][key])

    fp32 = get_energy_model("horowitz45-fp32")
    expected = report["per_action"]["ac"] * fp32.ac_pj * 1e-12 + report["per_action"]["mac"] * fp32.mac_pj * 1e-12
    assert report["energy_per_action_j"]["horowitz45-fp32"] == pytest.approx(expected)

    # Encoder: 22 observation dimensions × 10 neurons, one MAC each per action.
    encoder = next(layer for layer in report["layers"] if layer["kind"] == "encoder")
    assert encoder["mac_per_action"] == 22 * 10
    rates = [layer["input_firing_rate"] for layer in report["layers"] if layer["kind"] == "spike"]
    assert rates and all(0.0 <= rate <= 1.0 for rate in rates)


def test_energy_command_errors(tmp_path, capsys):
    assert main(["energy", str(tmp_path)]) == 2
    assert "actor.pt: not found" in capsys.readouterr().err
    assert main(["energy"]) == 2
    assert main(["energy", "--list-models"]) == 0
    assert "horowitz45-fp32" in capsys.readouterr().out
