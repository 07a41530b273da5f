"""Energy models: preset numbers, energy of counts, memory terms, TOML loading."""

from __future__ import annotations

import dataclasses

import pytest

from neurorl.energy import (
    EnergyModel,
    OperationCounts,
    get_energy_model,
    list_energy_models,
    load_energy_model,
    memory_inclusive_model,
    sram_read_pj,
)

COUNTS = OperationCounts(ac=1_000, mac=200, effective_mac=50, neuron_updates={"Leaky": 30, "Synaptic": 10})


@pytest.mark.parametrize(
    "name,ac_pj,mac_pj",
    [
        ("horowitz45-fp32", 0.9, 4.6),
        ("horowitz45-fp16", 0.4, 1.5),
        ("horowitz45-int8", 0.03, 0.23),
        ("horowitz45-int32", 0.1, 3.2),
    ],
)
def test_compute_presets(name, ac_pj, mac_pj):
    model = get_energy_model(name)
    assert model.ac_pj == pytest.approx(ac_pj)
    assert model.mac_pj == pytest.approx(mac_pj)
    assert model.energy_j(COUNTS) == pytest.approx((1_000 * ac_pj + 200 * mac_pj) * 1e-12)


def test_default_model_is_fp32():
    assert get_energy_model().name == "horowitz45-fp32"
    assert list_energy_models()[0]["name"] == "horowitz45-fp32"


def test_list_models_describes_each():
    listed = list_energy_models()
    names = [entry["name"] for entry in listed]
    assert {"horowitz45-fp32", "horowitz45-fp16", "horowitz45-int8", "memory-inclusive"} <= set(names)
    assert all(entry["description"] and entry["source"] for entry in listed)


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="unknown energy model 'fp64'"):
        get_energy_model("fp64")


def test_breakdown_sums_to_energy():
    model = get_energy_model("memory-inclusive")
    breakdown = model.breakdown_j(COUNTS)
    assert sum(breakdown.values()) == pytest.approx(model.energy_j(COUNTS))


def test_memory_inclusive_terms():
    model = get_energy_model("memory-inclusive")
    breakdown = model.breakdown_j(COUNTS)
    assert model.weight_read_pj == pytest.approx(20.0)
    assert model.membrane_read_pj == pytest.approx(10.0)
    assert breakdown["weight_reads"] == pytest.approx((1_000 + 200) * 20.0e-12)
    assert breakdown["membrane_accesses"] == pytest.approx(40 * 2 * 10.0e-12)
    assert breakdown["neuron_updates"] == pytest.approx(40 * 5.5e-12)
    assert breakdown["ac"] == pytest.approx(1_000 * 0.9e-12)


def test_compute_only_ignores_neuron_updates():
    breakdown = get_energy_model().breakdown_j(COUNTS)
    assert breakdown["neuron_updates"] == 0
    assert breakdown["membrane_accesses"] == 0
    assert breakdown["weight_reads"] == 0


def test_effective_mac_model():
    model = dataclasses.replace(get_energy_model(), name="zero-skip", mac_count="effective_mac")
    assert model.energy_j(COUNTS) == pytest.approx((1_000 * 0.9 + 50 * 4.6) * 1e-12)


def test_energy_from_mapping_matches_counts():
    model = get_energy_model("memory-inclusive-1mb")
    as_mapping = COUNTS.as_dict()
    assert model.energy_j(as_mapping) == pytest.approx(model.energy_j(COUNTS))
    per_sample = {"ac": 500.0, "mac": 100.0, "effective_mac": 25.0, "neuron_updates": {"Leaky": 20.0}}
    halved = OperationCounts(ac=500, mac=100, effective_mac=25, neuron_updates={"Leaky": 20})
    assert model.energy_j(per_sample) == pytest.approx(model.energy_j(halved))


def test_mapping_without_required_counts_rejected():
    with pytest.raises(ValueError, match="missing"):
        get_energy_model().energy_j({"ac": 1})


@pytest.mark.parametrize("size,expected", [(8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0)])
def test_sram_read_matches_horowitz_points(size, expected):
    assert sram_read_pj(size) == pytest.approx(expected)


def test_sram_read_grows_with_size():
    sizes = [1024, 4096, 8192, 16384, 32768, 262144, 1048576, 4 * 1048576]
    costs = [sram_read_pj(size) for size in sizes]
    assert costs == sorted(costs)
    assert sram_read_pj(4 * 1048576) == pytest.approx(200.0)


@pytest.mark.parametrize("size", [0, -5, float("nan")])
def test_sram_read_rejects_bad_size(size):
    with pytest.raises(ValueError, match="SRAM size"):
        sram_read_pj(size)


def test_memory_inclusive_model_sized():
    model = memory_inclusive_model(256 * 1024)
    assert model.name == "memory-inclusive-256kb"
    assert 20.0 < model.weight_read_pj < 100.0
    assert model.sram_bytes == 256 * 1024


def test_invalid_model_lists_every_problem():
    with pytest.raises(ValueError) as error:
        EnergyModel(name="", ac_pj=-1.0, mac_pj=float("inf"), mac_count="all")
    message = str(error.value)
    assert "name" in message
    assert "ac_pj" in message
    assert "mac_pj" in message
    assert "mac_count" in message


def test_model_dict_round_trip():
    model = get_energy_model("memory-inclusive")
    assert EnergyModel.from_dict(model.as_dict()) == model


def test_load_toml_model(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('name = "my-chip"\nac_pj = 0.5\nmac_pj = 2.0\nweight_read_pj = 1.5\n')
    model = load_energy_model(path)
    assert model.name == "my-chip"
    assert model.energy_j(OperationCounts(ac=10, mac=10)) == pytest.approx((10 * 0.5 + 10 * 2.0 + 20 * 1.5) * 1e-12)


def test_load_toml_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[energy_model]\nname = "t"\nac_pj = 1\nmac_pj = 2\n')
    assert load_energy_model(path).mac_pj == 2


def test_load_toml_rejects_bad_fields(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nac_pj = 1\nmac_joules = 2\n')
    with pytest.raises(ValueError) as error:
        load_energy_model(path)
    assert "unknown field 'mac_joules'" in str(error.value)
    assert "missing field 'mac_pj'" in str(error.value)


def test_load_toml_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_energy_model(tmp_path / "absent.toml")


def test_load_toml_invalid_syntax(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_energy_model(path)
