"""Membrane traces of the hidden neurons against their equations, written out by hand."""

import pytest
import torch

from neurorl.snn.neurons import CurrentLIF, make_neuron, rectangular, run_neuron

INPUTS = [0.3, 0.4, 0.1, 0.9, 0.0, 0.2, 0.7, 0.05, 0.6, 0.0]


def clif_reference(inputs, alpha=0.5, beta=0.75, threshold=0.5):
    """PopSAN: c_t = α c_{t−1} + I_t; v_t = β v_{t−1} (1 − o_{t−1}) + c_t; o_t = [v_t > θ]."""
    c = v = o = 0.0
    trace = []
    for current in inputs:
        c = alpha * c + current
        v = beta * v * (1.0 - o) + c
        o = 1.0 if v > threshold else 0.0
        trace.append((c, v, o))
    return trace


def leaky_reference(inputs, beta=0.75, threshold=0.5):
    """Leaky with reset to zero: v_t = β v_{t−1} (1 − o_{t−1}) + I_t; o_t = [v_t > θ]."""
    v = o = 0.0
    trace = []
    for current in inputs:
        v = beta * v * (1.0 - o) + current
        o = 1.0 if v > threshold else 0.0
        trace.append((v, o))
    return trace


def test_clif_trace_matches_popsan_equations():
    neuron = CurrentLIF()
    syn = mem = torch.zeros(1)
    expected = clif_reference(INPUTS)
    assert any(o == 1.0 for _, _, o in expected), "the input must make the neuron spike"
    assert any(o == 1.0 and next_o == 0.0 for (_, _, o), (_, _, next_o) in zip(expected, expected[1:]))
    for current, (c_ref, v_ref, o_ref) in zip(INPUTS, expected):
        spike, syn, mem = neuron(torch.tensor([current]), syn, mem)
        assert syn.item() == pytest.approx(c_ref, abs=1e-6)
        assert mem.item() == pytest.approx(v_ref, abs=1e-6)
        assert spike.item() == o_ref


def test_clif_differs_from_snntorch_synaptic_reset():
    """snnTorch's own Synaptic reset drops the current after a spike; CurrentLIF must not."""
    import snntorch as snn

    stock = snn.Synaptic(alpha=0.5, beta=0.75, threshold=0.5, reset_mechanism="zero")
    ours = CurrentLIF()
    s1 = m1 = s2 = m2 = torch.zeros(1)
    differs = False
    for current in INPUTS:
        _, s1, m1 = stock(torch.tensor([current]), s1, m1)
        _, s2, m2 = ours(torch.tensor([current]), s2, m2)
        differs |= abs(m1.item() - m2.item()) > 1e-6
    assert differs


def test_leaky_trace_matches_equations():
    neuron = make_neuron("leaky")
    expected = leaky_reference(INPUTS)
    spikes = run_neuron(neuron, torch.tensor(INPUTS).view(-1, 1, 1))
    assert spikes.view(-1).tolist() == [o for _, o in expected]


def test_clif_run_neuron_matches_reference_spikes():
    expected = [o for _, _, o in clif_reference(INPUTS)]
    spikes = run_neuron(make_neuron("clif"), torch.tensor(INPUTS).view(-1, 1, 1))
    assert spikes.view(-1).tolist() == expected


@pytest.mark.parametrize("kind", ["leaky", "clif"])
def test_state_does_not_leak_between_calls(kind):
    neuron = make_neuron(kind)
    currents = torch.full((3, 2, 4), 0.3)
    first = run_neuron(neuron, currents)
    second = run_neuron(neuron, currents)
    assert torch.equal(first, second)
    assert first.sum() > 0


@pytest.mark.parametrize("kind", ["leaky", "clif"])
def test_batch_rows_are_independent(kind):
    neuron = make_neuron(kind)
    currents = torch.rand(4, 3, 5)
    together = run_neuron(neuron, currents)
    alone = torch.cat([run_neuron(neuron, currents[:, row : row + 1]) for row in range(3)], dim=1)
    assert torch.equal(together, alone)


def test_rectangular_surrogate_window():
    spike_fn = rectangular(window=0.5)
    shifted = torch.tensor([-0.6, -0.4, 0.0, 0.49, 0.51], requires_grad=True)
    spike_fn(shifted).sum().backward()
    assert shifted.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_unknown_neuron_rejected():
    with pytest.raises(ValueError, match="unknown neuron 'izhikevich'"):
        make_neuron("izhikevich")


FUSED_CASES = {
    "leaky-zero": lambda: make_neuron("leaky").neuron,
    "clif": lambda: make_neuron("clif").neuron,
    "leaky-subtract": lambda: __import__("snntorch").Leaky(beta=0.9, threshold=0.4, reset_mechanism="subtract"),
    "synaptic-zero": lambda: __import__("snntorch").Synaptic(alpha=0.6, beta=0.8, threshold=0.5, reset_mechanism="zero"),
    "synaptic-subtract": lambda: __import__("snntorch").Synaptic(alpha=0.6, beta=0.8, threshold=0.5),
}


@pytest.mark.parametrize("case", sorted(FUSED_CASES))
def test_fused_loop_equals_snntorch_stepping(case):
    from neurorl.snn.neurons import _fusable, _module_loop

    torch.manual_seed(0)
    neuron = FUSED_CASES[case]()
    assert _fusable(neuron)
    currents = (torch.rand(6, 4, 8) * 0.8).requires_grad_(True)
    fused = run_neuron(neuron, currents)
    fused.sum().backward()
    fused_grad = currents.grad.clone()
    currents.grad = None
    stepped = _module_loop(neuron, currents)
    stepped.sum().backward()
    assert torch.equal(fused, stepped)
    assert fused.sum() > 0
    assert torch.allclose(fused_grad, currents.grad, atol=1e-6)
