"""Energy ledger: phases, labelled estimates, KD-tree booking, persistence, return per joule."""

from __future__ import annotations

import json
import math

import pytest

from neurorl.energy import (
    EnergyLedger,
    OperationCounts,
    backward_estimate,
    get_energy_model,
    kdtree_operation_counts,
    return_per_joule,
)

ACTING = OperationCounts(ac=10_000, mac=170, effective_mac=170, neuron_updates={"Leaky": 3_000}, samples=1, forward_passes=1)
LEARNING = OperationCounts(
    ac=50_000, mac=20_000, effective_mac=15_000, ac_connections=400_000, neuron_updates={"Leaky": 9_000}, samples=256
)


def test_energy_by_phase():
    model = get_energy_model()
    ledger = EnergyLedger(model)
    ledger.book("acting", ACTING)
    ledger.book("acting", ACTING)
    ledger.book("learning", LEARNING)
    energies = ledger.energy_j()
    assert energies["acting"] == pytest.approx(2 * model.energy_j(ACTING))
    assert energies["learning"] == pytest.approx(model.energy_j(LEARNING))
    assert energies["replay"] == 0
    assert energies["total"] == pytest.approx(energies["acting"] + energies["learning"])


def test_counts_per_phase():
    ledger = EnergyLedger(get_energy_model())
    ledger.book("acting", ACTING)
    ledger.book("acting", ACTING)
    counts = ledger.counts()
    assert counts["acting"].ac == 20_000
    assert counts["acting"].forward_passes == 2
    assert counts["learning"] == OperationCounts()


def test_backward_estimate_rule():
    estimated = backward_estimate(LEARNING)
    assert estimated.ac == 0
    assert estimated.mac == 2 * (20_000 + 400_000)
    assert estimated.neuron_updates == {"Leaky": 18_000}
    assert backward_estimate(LEARNING, factor=1.0).mac == 420_000


def test_backward_estimate_booked_as_labelled_estimate():
    model = get_energy_model()
    ledger = EnergyLedger(model)
    ledger.book("learning", LEARNING)
    ledger.book_backward_estimate(LEARNING)
    estimates = ledger.estimates()["learning"]
    assert list(estimates) == ["backward (2x forward dense ops)"]
    assert ledger.counts()["learning"] == LEARNING
    expected = model.energy_j(LEARNING) + 2 * 420_000 * 4.6e-12
    assert ledger.energy_j()["learning"] == pytest.approx(expected)


def test_kdtree_booked_to_replay():
    model = get_energy_model()
    ledger = EnergyLedger(model)
    kdtree = ledger.book_kdtree(256, 23, 256)
    assert kdtree == kdtree_operation_counts(256, 23, 256)
    adds = kdtree["adds"] + kdtree["comparisons"]
    expected = round(adds) * 0.9e-12 + round(kdtree["macs"]) * 4.6e-12
    assert ledger.energy_j()["replay"] == pytest.approx(expected)
    assert ledger.counts()["replay"] == OperationCounts()
    assert ledger.summary()["kdtree_checks"] == 1


def test_unknown_phase_rejected():
    ledger = EnergyLedger(get_energy_model())
    with pytest.raises(ValueError, match="unknown phase 'evaluation'"):
        ledger.book("evaluation", ACTING)


def test_empty_estimate_label_rejected():
    ledger = EnergyLedger(get_energy_model())
    with pytest.raises(ValueError, match="label"):
        ledger.book("learning", LEARNING, estimate=" ")


def test_summary_names_model():
    ledger = EnergyLedger(get_energy_model("memory-inclusive"))
    ledger.book("acting", ACTING)
    report = ledger.summary()
    assert report["energy_model"] == "memory-inclusive"
    assert report["phases"]["acting"]["counted_j"] == pytest.approx(ledger.energy_j()["acting"])
    assert "memory-inclusive" in ledger.format_summary()


def test_state_dict_round_trip_through_json():
    model = get_energy_model("memory-inclusive")
    ledger = EnergyLedger(model)
    ledger.book("acting", ACTING)
    ledger.book("learning", LEARNING)
    ledger.book_backward_estimate(LEARNING)
    ledger.book_kdtree(256, 23, 256)

    restored = EnergyLedger(model)
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    assert restored.energy_j() == ledger.energy_j()
    assert restored.counts() == ledger.counts()
    assert restored.summary()["kdtree_checks"] == 1

    restored.book("acting", ACTING)
    assert restored.energy_j()["acting"] == pytest.approx(2 * ledger.energy_j()["acting"])


def test_state_from_other_model_rejected():
    ledger = EnergyLedger(get_energy_model("horowitz45-fp16"))
    ledger.book("acting", ACTING)
    other = EnergyLedger(get_energy_model())
    with pytest.raises(ValueError, match="horowitz45-fp16"):
        other.load_state_dict(ledger.state_dict())


def test_ledger_requires_energy_model():
    with pytest.raises(TypeError, match="EnergyModel"):
        EnergyLedger("horowitz45-fp32")


def test_return_per_joule():
    assert return_per_joule(500.0, 2e-3) == pytest.approx(250_000.0)
    assert return_per_joule(-10.0, 1e-6) == pytest.approx(-1e7)
    assert math.isnan(return_per_joule(100.0, 0.0))


@pytest.mark.parametrize("episode_return,energy", [(1.0, -1e-6), (1.0, math.nan), (math.inf, 1.0)])
def test_return_per_joule_rejects_bad_values(episode_return, energy):
    with pytest.raises(ValueError):
        return_per_joule(episode_return, energy)


def test_malformed_state_rejected_without_change():
    ledger = EnergyLedger(get_energy_model())
    ledger.book("acting", ACTING)
    before = ledger.energy_j()
    state = ledger.state_dict()

    with pytest.raises(ValueError, match="missing"):
        ledger.load_state_dict({"version": 1})
    broken = dict(state, estimates={"acting": {"label": {"acs": 3}}})
    with pytest.raises(ValueError, match="unknown operation count fields"):
        ledger.load_state_dict(broken)
    with pytest.raises(ValueError, match="unknown phases"):
        ledger.load_state_dict(dict(state, counted={"training": {}}))
    assert ledger.energy_j() == before
