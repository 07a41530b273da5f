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


RESETS = {
    "popsan": lambda sg: __import__("snntorch").Leaky(beta=0.75, threshold=0.5, spike_grad=sg, reset_mechanism="zero"),
    "popsan-current": lambda sg: CurrentLIF(spike_grad=sg),
    "snntorch_zero": lambda sg: __import__("snntorch").Synaptic(alpha=0.5, beta=0.75, threshold=0.5, spike_grad=sg, reset_mechanism="zero"),
    "subtract": lambda sg: __import__("snntorch").Leaky(beta=0.9, threshold=0.5, spike_grad=sg, reset_mechanism="subtract"),
    "subtract-current": lambda sg: __import__("snntorch").Synaptic(alpha=0.6, beta=0.9, threshold=0.5, spike_grad=sg, reset_mechanism="subtract"),
}


def _surrogate(kind):
    from neurorl.snn.neurons import make_surrogate, straight_through

    return straight_through() if kind == "straight_through" else make_surrogate(kind)


def _sequence_args(neuron):
    import snntorch as snn

    from neurorl.snn.neurons import reset_kind

    alpha = neuron.alpha if isinstance(neuron, snn.Synaptic) else None
    return neuron.beta, neuron.threshold, alpha, reset_kind(neuron), neuron.spike_grad


def _autograd_reference(neuron, currents, time_dim):
    from neurorl.snn.neurons import _autograd_lif

    beta, threshold, alpha, reset, spike_grad = _sequence_args(neuron)
    alpha = alpha.clamp(0, 1) if alpha is not None else None
    steps = currents.movedim(time_dim, 0)
    return _autograd_lif(steps, beta.clamp(0, 1), threshold, alpha, reset, spike_grad).movedim(0, time_dim)


@pytest.mark.parametrize("time_dim", [0, 1])
@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("surrogate_kind", ["rectangular", "atan", "fast_sigmoid", "triangular", "straight_through"])
@pytest.mark.parametrize("case", sorted(RESETS))
def test_lif_sequence_equals_autograd(case, surrogate_kind, steps, time_dim):
    """The hand-written back-propagation through time gives autograd's spikes and gradients exactly."""
    from neurorl.snn.neurons import lif_sequence

    torch.manual_seed(steps)
    neuron = RESETS[case](_surrogate(surrogate_kind))
    shape = [steps, 3, 40] if time_dim == 0 else [3, steps, 40]
    currents = torch.randn(shape) * 0.8 + 0.3
    upstream = torch.randn(shape)

    fast_in = currents.clone().requires_grad_(True)
    fast = lif_sequence(fast_in, *_sequence_args(neuron), time_dim=time_dim)
    (fast * upstream).sum().backward()
    reference_in = currents.clone().requires_grad_(True)
    reference = _autograd_reference(neuron, reference_in, time_dim)
    (reference * upstream).sum().backward()

    assert 0 < fast.sum() < fast.numel()
    assert torch.equal(fast, reference)
    assert torch.equal(fast_in.grad, reference_in.grad)
    assert fast_in.grad.abs().sum() > 0


@pytest.mark.parametrize("surrogate_kind", ["rectangular", "atan", "fast_sigmoid", "triangular", "straight_through"])
def test_surrogate_backward_equals_snntorch(surrogate_kind):
    """Window edges, the threshold itself and NaN included."""
    spike_grad = _surrogate(surrogate_kind)
    shifted = torch.tensor([-0.5, -0.4999, 0.0, 0.4999, 0.5, -2.0, 3.0, float("nan")])
    grad = torch.tensor([1.0, -2.0, 3.0, 0.5, 4.0, -1.5, 2.5, 1.0])

    leaf = shifted.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(spike_grad(leaf), leaf, grad)
    direct = spike_grad.surrogate_backward(shifted.clone(), grad)

    torch.testing.assert_close(direct, expected, rtol=0, atol=0, equal_nan=True)


def test_lif_sequence_nan_current():
    from neurorl.snn.neurons import lif_sequence

    neuron = RESETS["popsan-current"](_surrogate("rectangular"))
    currents = torch.rand(5, 2, 6)
    currents[2, 1, 3] = float("nan")
    fast_in, reference_in = currents.clone().requires_grad_(True), currents.clone().requires_grad_(True)
    fast = lif_sequence(fast_in, *_sequence_args(neuron))
    reference = _autograd_reference(neuron, reference_in, 0)
    fast.sum().backward()
    reference.sum().backward()

    assert torch.equal(fast, reference)
    assert fast[2:, 1, 3].sum() == 0  # a NaN membrane never crosses the threshold
    torch.testing.assert_close(fast_in.grad, reference_in.grad, rtol=0, atol=0, equal_nan=True)


def test_learned_beta_gets_gradient():
    import snntorch as snn

    torch.manual_seed(0)
    neuron = snn.Leaky(beta=0.8, threshold=0.5, learn_beta=True, reset_mechanism="zero")
    currents = torch.rand(6, 4, 8) * 0.8
    spikes = run_neuron(neuron, currents)
    spikes.sum().backward()
    fused_grad = neuron.beta.grad.clone()

    from neurorl.snn.neurons import _module_loop

    neuron.beta.grad = None
    _module_loop(neuron, currents).sum().backward()
    assert fused_grad != 0
    assert torch.allclose(fused_grad, neuron.beta.grad, atol=1e-6)


def test_unknown_reset_rejected():
    from neurorl.snn.neurons import lif_sequence

    with pytest.raises(ValueError, match="unknown reset 'hard'"):
        lif_sequence(torch.zeros(2, 1, 3), torch.tensor(0.5), torch.tensor(0.5), None, "hard", rectangular())
