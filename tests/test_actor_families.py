"""Actor families (PopSAN, MDC-SAN, ILC-SAN, BPT-SAN, ANN): shapes, state, gradients, equations, energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from neurorl.energy import count_operations
from neurorl.snn.actors import (
    ACTORS,
    LOG_STD_MAX,
    LOG_STD_MIN,
    SPIKING_ACTORS,
    ActorSpec,
    MLPActor,
    PopSpikingActor,
    build_actor,
)
from neurorl.snn.bptsan import AdjacentLateral, BPTSpikingActor, DendriticLayer
from neurorl.snn.ilcsan import (
    ILCSpikingActor,
    MembraneIntegrator,
    PopulationLateral,
    RecurrentNeuronLayer,
    membrane_readout,
)
from neurorl.snn.mdcsan import DynamicNeuron, DynamicNeuronLayer, MDCSpikingActor
from neurorl.snn.neurons import CurrentLIF, make_neuron

torch.set_num_threads(1)

FAMILIES = ["popsan", "mdcsan", "ilcsan", "bptsan", "ann"]
SPIKING = ["popsan", "mdcsan", "ilcsan", "bptsan"]

# Parameters that structurally cannot receive a gradient at T = 1 (no previous step exists):
# MDC-SAN's θ act only through the state of step t − 1, ILC-SAN's and BPT-SAN's lateral weights
# only on the spikes of step t − 1.
NO_GRADIENT_AT_T1 = {
    "popsan": set(),
    "mdcsan": {"theta_v", "theta_u", "theta_r", "theta_s"},
    "ilcsan": {"lateral.conv.weight"},
    "bptsan": {"lateral.conv.weight"},
    "ann": set(),
}


def spec(**overrides) -> ActorSpec:
    values = dict(obs_dim=5, act_dim=2, hidden=(24, 24), T=5, pop_size=6, out_pop_size=5)
    values.update(overrides)
    return ActorSpec(**values)


def firing_obs(batch: int = 64, obs_dim: int = 5, seed: int = 0) -> torch.Tensor:
    """Observations spread over the encoders' receptive fields ([−3, 3]) so that neurons fire."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, obs_dim, generator=generator) * 1.5


def make_fire(actor: nn.Module, batch: int = 64, seed: int = 0) -> torch.Tensor:
    """Return observations that make every layer of ``actor`` fire from the first step on.

    Each observation dimension sits on the centre of one receptive field, so the deterministic
    encoder (threshold 0.999) spikes at t = 1, and the synaptic weights are tripled so the few
    input spikes of one step drive about a quarter of each hidden layer over threshold; with
    PyTorch's default initialisation a T = 1 network is almost silent.
    """
    generator = torch.Generator().manual_seed(seed)
    encoder = getattr(actor, "encoder", None)
    if encoder is None:
        return firing_obs(batch=batch, obs_dim=actor.obs_dim, seed=seed)

    means = encoder.mean.detach()[0]
    choice = torch.randint(0, means.shape[1], (batch, means.shape[0]), generator=generator)
    obs = torch.gather(means.expand(batch, -1, -1), 2, choice.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        for module in actor.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(3.0)
    return obs


def structurally_silent(family: str, name: str) -> bool:
    return any(name.endswith(suffix) for suffix in NO_GRADIENT_AT_T1[family])


# --------------------------------------------------------------------------------- registry and spec


def test_registry_lists_every_family():
    assert set(FAMILIES) <= set(ACTORS)
    assert set(SPIKING) <= SPIKING_ACTORS
    assert "ann" not in SPIKING_ACTORS
    expected_types = {
        "popsan": PopSpikingActor,
        "mdcsan": MDCSpikingActor,
        "ilcsan": ILCSpikingActor,
        "bptsan": BPTSpikingActor,
        "ann": MLPActor,
    }
    for name, cls in expected_types.items():
        assert type(build_actor(name, spec())) is cls


def test_unknown_actor_rejected():
    with pytest.raises(ValueError, match="unknown actor 'lstm'"):
        build_actor("lstm", spec())


def test_spec_lists_every_problem():
    with pytest.raises(ValueError) as error:
        ActorSpec(obs_dim=0, act_dim=2, T=0, neuron="izhikevich", readout="median", branches=0)
    message = str(error.value)
    for fragment in ("obs_dim=0", "T=0", "neuron='izhikevich'", "readout='median'", "branches=0"):
        assert fragment in message


def test_spec_out_dim_doubles_for_gaussian():
    assert spec().out_dim == 2
    assert spec(gaussian=True).out_dim == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_observation_shape_rejected(family):
    actor = build_actor(family, spec(T=1))
    with pytest.raises(ValueError, match=r"shape \[batch, 5\]"):
        actor(torch.zeros(5))
    with pytest.raises(ValueError, match=r"got \(3, 4\)"):
        actor(torch.zeros(3, 4))


# --------------------------------------------------------------------------------- shapes and bounds


@pytest.mark.parametrize("T", [1, 2, 5, 10])
@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_and_bounds(family, T):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=T))
    actions = actor(firing_obs(batch=7))
    assert actions.shape == (7, 2)
    assert torch.isfinite(actions).all()
    assert actions.abs().max() <= 1.0


@pytest.mark.parametrize("T", [1, 2, 5, 10])
@pytest.mark.parametrize("family", FAMILIES)
def test_gaussian_head_shapes(family, T):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=T, gaussian=True))
    obs = firing_obs(batch=7)
    mean, log_std = actor.mean_log_std(obs)
    assert mean.shape == (7, 2)
    assert log_std.shape == (7, 2)
    assert (log_std >= LOG_STD_MIN).all()
    assert (log_std <= LOG_STD_MAX).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_gaussian_forward_is_tanh_of_mean(family):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=3, gaussian=True))
    obs = firing_obs(batch=6)
    mean, _ = actor.mean_log_std(obs)
    assert torch.equal(actor(obs), torch.tanh(mean))


@pytest.mark.parametrize("family", FAMILIES)
def test_gaussian_output_layer_has_two_heads(family):
    deterministic = build_actor(family, spec(T=2))
    gaussian = build_actor(family, spec(T=2, gaussian=True))
    assert deterministic.pre_activation(firing_obs(batch=3)).shape == (3, 2)
    assert gaussian.pre_activation(firing_obs(batch=3)).shape == (3, 4)


def test_log_std_clamped_to_documented_range():
    actor = build_actor("ann", spec(gaussian=True))
    with torch.no_grad():
        last = actor.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, 100.0, -100.0]))
    _, log_std = actor.mean_log_std(torch.zeros(2, 5))
    assert log_std[:, 0].tolist() == [LOG_STD_MAX, LOG_STD_MAX]
    assert log_std[:, 1].tolist() == [LOG_STD_MIN, LOG_STD_MIN]


def test_deterministic_head_has_no_log_std():
    actor = build_actor("popsan", spec())
    with pytest.raises(RuntimeError, match="gaussian=True"):
        actor.mean_log_std(torch.zeros(1, 5))


# --------------------------------------------------------------------------------- state


@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("family", SPIKING)
def test_state_never_leaks_between_calls(family, T):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=T))
    first_obs = firing_obs(batch=4, seed=1)
    other_obs = firing_obs(batch=4, seed=2) * 2
    first = actor(first_obs)
    actor(other_obs)
    actor(first_obs[:2])
    assert torch.equal(actor(first_obs), first)


@pytest.mark.parametrize("family", SPIKING)
def test_batch_rows_are_independent(family):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=5))
    obs = firing_obs(batch=5, seed=3)
    together = actor(obs)
    alone = torch.cat([actor(obs[row : row + 1]) for row in range(5)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_bernoulli_encoder_selectable():
    torch.manual_seed(0)
    actor = build_actor("popsan", spec(encoder="bernoulli", T=4))
    assert actor.encoder.spike_mode == "bernoulli"
    obs = firing_obs(batch=32)
    assert not torch.equal(actor(obs), actor(obs))


# --------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("gaussian", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_parameters_at_t1(family, gaussian):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=1, gaussian=gaussian))
    obs = make_fire(actor)
    if gaussian:
        mean, log_std = actor.mean_log_std(obs)
        (mean.pow(2).sum() + log_std.sum()).backward()
    else:
        actor(obs).pow(2).sum().backward()

    for name, parameter in actor.named_parameters():
        grad = parameter.grad
        if structurally_silent(family, name):
            assert grad is None or not grad.any(), f"{name} cannot act at T = 1 yet received a gradient"
        else:
            assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", SPIKING)
def test_gradients_reach_every_parameter_at_t5(family):
    torch.manual_seed(0)
    actor = build_actor(family, spec(T=5))
    actor(firing_obs()).pow(2).sum().backward()
    for name, parameter in actor.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", SPIKING)
def test_surrogate_is_selectable(family):
    grads = {}
    for surrogate in ("rectangular", "atan"):
        torch.manual_seed(0)
        actor = build_actor(family, spec(T=3, surrogate=surrogate))
        actor(firing_obs()).pow(2).sum().backward()
        first = next(module for module in actor.modules() if isinstance(module, nn.Linear))
        grads[surrogate] = first.weight.grad.clone()
    assert not torch.allclose(grads["rectangular"], grads["atan"])


# --------------------------------------------------------------------------------- MDC-SAN dynamic neuron


def dynamic_reference(inputs, theta_v=-0.172, theta_u=0.529, theta_r=0.021, theta_s=0.132, alpha=0.5, threshold=0.5):
    """MDC-SAN's dynamic neuron written out with Python floats."""
    c = v = u = 0.0
    trace = []
    for current in inputs:
        c = alpha * c + current
        fired = 1.0 if v > threshold else 0.0
        v_hat = v * (1 - fired) + theta_r * fired
        u_hat = u + theta_s * fired
        v = v_hat + (v_hat**2 - v_hat - u_hat + c)
        u = u_hat + theta_v * v_hat - theta_u * u_hat
        trace.append((c, v, u, 1.0 if v > threshold else 0.0))
    return trace


def test_dynamic_neuron_trace_matches_equations():
    inputs = [0.3, 0.5, -0.4, 0.9, 0.1, -1.2, 0.0, 0.6, 0.2, 0.7]
    expected = dynamic_reference(inputs)
    assert sum(o for *_, o in expected) >= 2, "the input must make the neuron spike more than once"

    neuron = DynamicNeuron()
    syn = mem = rec = torch.zeros(1)
    for current, (c_ref, v_ref, u_ref, o_ref) in zip(inputs, expected):
        spike, syn, mem, rec = neuron(torch.tensor([current]), syn, mem, rec)
        assert syn.item() == pytest.approx(c_ref, abs=1e-5)
        assert mem.item() == pytest.approx(v_ref, abs=1e-5)
        assert rec.item() == pytest.approx(u_ref, abs=1e-5)
        assert spike.item() == o_ref


def test_dynamic_neuron_layer_steps_from_zero_each_call():
    layer = DynamicNeuronLayer(DynamicNeuron())
    currents = torch.rand(6, 3, 4)
    first = layer(currents)
    assert torch.equal(layer(currents), first)
    assert first.sum() > 0
    together = layer(currents)
    alone = torch.cat([layer(currents[:, row : row + 1]) for row in range(3)], dim=1)
    assert torch.equal(together, alone)


def test_dynamic_neuron_is_snntorch_neuron():
    assert isinstance(DynamicNeuron(), snn.SpikingNeuron)


def test_mdcsan_thetas_learn_at_t3():
    torch.manual_seed(0)
    actor = build_actor("mdcsan", spec(T=3))
    actor(make_fire(actor)).pow(2).sum().backward()
    for name, parameter in actor.named_parameters():
        if "theta" in name:
            assert parameter.grad is not None and parameter.grad.abs() > 0, name


# --------------------------------------------------------------------------------- ILC-SAN


def test_membrane_integrator_matches_snntorch_leaky():
    currents = torch.randn(7, 3, 4)
    for beta in (1.0, 0.6):
        integrator = MembraneIntegrator(beta)
        reference = snn.Leaky(beta=beta, reset_mechanism="none")
        mem = torch.zeros(3, 4)
        expected = []
        for current in currents:
            _, mem = reference(current, mem)
            expected.append(mem)
        assert torch.allclose(integrator(currents), torch.stack(expected), atol=1e-6)


def test_membrane_readout_kinds():
    membrane = torch.tensor([[[1.0, -0.5]], [[-3.0, 2.0]], [[0.5, 1.0]]])
    values = membrane[:, 0, :].numpy()
    assert membrane_readout(membrane, "last")[0].tolist() == values[-1].tolist()
    assert np.allclose(membrane_readout(membrane, "mean")[0].numpy(), values.mean(axis=0))
    assert membrane_readout(membrane, "max")[0].tolist() == [-3.0, 2.0]
    with pytest.raises(ValueError, match="unknown membrane readout 'median'"):
        membrane_readout(membrane, "median")


def test_population_lateral_is_block_diagonal():
    torch.manual_seed(0)
    lateral = PopulationLateral(groups=3, pop_size=4)
    spikes = (torch.rand(5, 12) < 0.5).float()
    weight = lateral.conv.weight.detach()
    matrix = torch.zeros(12, 12)
    for group in range(3):
        for target in range(4):
            for source in range(4):
                matrix[group * 4 + target, group * 4 + source] = weight[group * 4 + target, 0, source]
    assert torch.allclose(lateral(spikes), spikes @ matrix.T, atol=1e-6)


def test_recurrent_layer_without_lateral_input_equals_feedforward():
    torch.manual_seed(0)
    for kind in ("leaky", "clif"):
        feedforward = make_neuron(kind)
        lateral = PopulationLateral(groups=2, pop_size=3)
        nn.init.zeros_(lateral.conv.weight)
        recurrent = RecurrentNeuronLayer(make_neuron(kind).neuron, lateral)
        currents = torch.rand(6, 4, 6)
        assert torch.equal(recurrent(currents), feedforward(currents))


@pytest.mark.parametrize("target", ["current", "membrane"])
def test_recurrent_layer_matches_hand_loop(target):
    torch.manual_seed(0)
    lateral = PopulationLateral(groups=2, pop_size=3)
    layer = RecurrentNeuronLayer(CurrentLIF(), lateral, target=target)
    currents = torch.rand(6, 4, 6) * 0.6
    weight = lateral.conv.weight.detach()

    c = v = o = torch.zeros(4, 6)
    expected = []
    for t, current in enumerate(currents):
        recurrent = torch.zeros_like(current)
        if t > 0:
            for neuron in range(6):
                first = (neuron // 3) * 3
                recurrent[:, neuron] = o[:, first : first + 3] @ weight[neuron, 0, :]
        if target == "current":
            c = 0.5 * c + current + recurrent
            v = 0.75 * v * (1 - o) + c
        else:
            c = 0.5 * c + current
            v = 0.75 * v * (1 - o) + c + recurrent
        o = (v > 0.5).float()
        expected.append(o)
    expected = torch.stack(expected)
    assert expected.sum() > 0
    assert torch.equal(layer(currents), expected)


def test_ilcsan_forward_matches_stepwise_loop():
    """The batched layers plus the recurrent output layer must equal stepping every layer through time."""
    torch.manual_seed(1)
    actor = build_actor("ilcsan", spec(T=4, neuron="clif", readout="mean"))
    obs = firing_obs(batch=5)
    encoded = actor.encoder(obs, actor.T)

    hidden_states = [None] * len(actor.layers)
    out_syn = out_mem = torch.zeros(5, actor.groups * actor.pop_size)
    out_spike = torch.zeros_like(out_syn)
    membrane = torch.zeros(5, actor.groups)
    trace = []
    for t in range(actor.T):
        x = encoded[t]
        for index, (layer, neuron) in enumerate(zip(actor.layers, actor.neurons)):
            current = layer(x)
            if hidden_states[index] is None:
                hidden_states[index] = (torch.zeros_like(current), torch.zeros_like(current))
            x, syn, mem = neuron.neuron(current, *hidden_states[index])
            hidden_states[index] = (syn, mem)
        current = actor.output_layer(x)
        if t > 0:
            current = current + actor.output_neurons.lateral(out_spike)
        out_spike, out_syn, out_mem = actor.output_neurons.neuron(current, out_syn, out_mem)
        decoded = actor.decoder(out_spike.view(5, actor.groups, actor.pop_size)).view(5, actor.groups)
        membrane = membrane + decoded
        trace.append(membrane)
    expected = torch.tanh(torch.stack(trace).mean(0))
    assert torch.allclose(actor(obs), expected, atol=1e-5)


def test_ilcsan_has_no_firing_rate_decoder():
    actor = build_actor("ilcsan", spec())
    kinds = [module.input_kind for module in actor.modules() if isinstance(module, (nn.Linear, nn.Conv1d))]
    assert kinds and set(kinds) == {"spike"}


# --------------------------------------------------------------------------------- BPT-SAN


def test_dendritic_layer_matches_branch_loop():
    torch.manual_seed(0)
    layer = DendriticLayer(in_features=6, out_features=4, branches=3)
    with torch.no_grad():
        layer.soma.weight.uniform_(-1, 1)
        layer.soma.bias.uniform_(-1, 1)
    spikes = (torch.rand(2, 3, 6) < 0.5).float()
    W, w = layer.branch.weight.detach(), layer.branch.bias.detach()
    g, g0 = layer.soma.weight.detach(), layer.soma.bias.detach()

    expected = torch.zeros(2, 3, 4)
    for t in range(2):
        for row in range(3):
            for j in range(4):
                total = g0[j]
                for k in range(3):
                    branch_index = j * 3 + k
                    branch = W[branch_index] @ spikes[t, row] + w[branch_index]
                    total = total + g[j, 0, k] * torch.tanh(branch)
                expected[t, row, j] = total
    assert torch.allclose(layer(spikes), expected, atol=1e-5)


def test_adjacent_lateral_reaches_only_neighbours():
    torch.manual_seed(0)
    lateral = AdjacentLateral(5)
    spikes = (torch.rand(3, 5) < 0.6).float()
    weight = lateral.conv.weight.detach()
    expected = torch.zeros(3, 5)
    for j in range(5):
        if j > 0:
            expected[:, j] += weight[j, 0, 0] * spikes[:, j - 1]
        if j < 4:
            expected[:, j] += weight[j, 0, 1] * spikes[:, j + 1]
    assert torch.allclose(lateral(spikes), expected, atol=1e-6)


def test_bptsan_soma_starts_as_plain_sum():
    actor = build_actor("bptsan", spec(branches=3))
    for layer in [*actor.layers, actor.output_layer]:
        assert torch.equal(layer.soma.weight, torch.ones_like(layer.soma.weight))
        assert layer.branch.out_features == layer.out_features * 3


# --------------------------------------------------------------------------------- energy


def brute_force_linear(layer: nn.Linear, inputs: torch.Tensor) -> tuple[int, int]:
    """Return (events, connections): non-zero inputs × non-zero fan-out, and rows × in × out."""
    weight = layer.weight.detach()
    rows = inputs.reshape(-1, layer.in_features)
    events = 0
    for row in rows:
        for i, value in enumerate(row.tolist()):
            if value != 0:
                events += sum(1 for o in range(layer.out_features) if weight[o, i] != 0)
    return events, rows.shape[0] * layer.in_features * layer.out_features


def brute_force_conv1d(layer: nn.Conv1d, inputs: torch.Tensor) -> tuple[int, int]:
    """Return (events, connections) of a stride-1, unpadded Conv1d by looping over every tap."""
    assert layer.stride == (1,)
    assert layer.padding == (0,)
    assert layer.dilation == (1,)
    weight = layer.weight.detach()
    kernel = layer.kernel_size[0]
    in_per_group = layer.in_channels // layer.groups
    out_per_group = layer.out_channels // layer.groups
    events = connections = 0
    for sample in inputs:
        positions = sample.shape[-1] - kernel + 1
        for out_channel in range(layer.out_channels):
            group = out_channel // out_per_group
            for position in range(positions):
                for local in range(in_per_group):
                    channel = group * in_per_group + local
                    for tap in range(kernel):
                        connections += 1
                        if sample[channel, position + tap] != 0 and weight[out_channel, local, tap] != 0:
                            events += 1
    return events, connections


def record_synapse_inputs(actor: nn.Module):
    records: list[tuple[nn.Module, torch.Tensor]] = []
    handles = []
    for module in actor.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            def hook(layer, args, records=records):
                records.append((layer, args[0].detach().clone()))
            handles.append(module.register_forward_pre_hook(hook))
    return records, handles


def brute_force_counts(actor: nn.Module, records, obs: torch.Tensor) -> dict[str, int]:
    totals = {"ac": 0, "mac": 0, "lateral_ac": 0}
    for layer, inputs in records:
        if isinstance(layer, nn.Linear):
            events, connections = brute_force_linear(layer, inputs)
        else:
            events, connections = brute_force_conv1d(layer, inputs)
        if layer.input_kind == "spike":
            assert set(inputs.unique().tolist()) <= {0.0, 1.0}
            totals["ac"] += events
            if any(layer is module.conv for module in actor.modules() if isinstance(module, (PopulationLateral, AdjacentLateral))):
                totals["lateral_ac"] += events
        else:
            totals["mac"] += connections
    encoder = getattr(actor, "encoder", None)
    if encoder is not None:
        totals["mac"] += obs.shape[0] * encoder.obs_dim * encoder.pop_size
    return totals


@pytest.mark.parametrize("family", FAMILIES)
def test_energy_counts_match_brute_force(family):
    torch.manual_seed(0)
    actor = build_actor(family, spec(obs_dim=3, act_dim=2, hidden=(8, 6), T=3, pop_size=4, out_pop_size=3))
    obs = make_fire(actor, batch=3)
    records, handles = record_synapse_inputs(actor)
    try:
        result = count_operations(actor, obs)
    finally:
        for handle in handles:
            handle.remove()

    expected = brute_force_counts(actor, records, obs)
    assert result["totals"]["ac"] == expected["ac"]
    assert result["totals"]["mac"] == expected["mac"]
    if family in SPIKING:
        assert expected["ac"] > 0
    if family in ("ilcsan", "bptsan"):
        assert expected["lateral_ac"] > 0, "the lateral connections must carry spikes in this check"


@pytest.mark.parametrize("family", SPIKING)
def test_energy_counts_every_neuron_update(family):
    torch.manual_seed(0)
    T, batch = 3, 2
    actor = build_actor(family, spec(obs_dim=3, act_dim=2, hidden=(8, 6), T=T, pop_size=4, out_pop_size=3))
    result = count_operations(actor, firing_obs(batch=batch, obs_dim=3))
    population_sizes = [3 * 4, 8, 6, 2 * 3]
    expected = T * sum(population_sizes)
    if family == "ilcsan":
        expected += T * 2
    assert sum(result["neuron_updates"].values()) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_nan_observation_caught_by_counter(family):
    actor = build_actor(family, spec(T=2))
    obs = firing_obs(batch=2)
    obs[1, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        count_operations(actor, obs)
