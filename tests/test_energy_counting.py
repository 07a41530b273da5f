"""Operation counting: exact AC/MAC/neuron-update counts against brute-force loops and NeuroBench."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import snntorch as snn
import torch
from torch import nn

from neurorl.energy import OperationCounter, OperationCounts, count_operations, get_energy_model

torch.set_num_threads(1)


# --------------------------------------------------------------------------------- networks


def mlp_actor(obs_dim: int = 17, hidden: int = 256, act_dim: int = 6) -> nn.Sequential:
    layers = [nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, act_dim), nn.Tanh()]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            layer.input_kind = "dense"
    return nn.Sequential(*layers)


class SmallSNN(nn.Module):
    """Two spiking layers (multi-step Linear + snnTorch Leaky stepped per time step) and a dense readout.

    ``forward`` takes spikes [B, T, in] and records every synaptic layer's input in ``recorded``
    so the tests can count operations by brute force without the counter.
    """

    def __init__(self, sizes=(12, 9, 7), out: int = 3, declare: bool = True, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(sizes[0], sizes[1])
        self.fc2 = nn.Linear(sizes[1], sizes[2])
        self.readout = nn.Linear(sizes[2], out)
        with torch.no_grad():
            for layer in (self.fc1, self.fc2, self.readout):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.weight.mul_(torch.rand(layer.weight.shape, generator=generator) > 0.3)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
        if declare:
            self.fc1.input_kind = "spike"
            self.fc2.input_kind = "spike"
            self.readout.input_kind = "dense"
        self.lif1 = snn.Leaky(beta=0.8, threshold=0.5)
        self.lif2 = snn.Leaky(beta=0.8, threshold=0.5)
        self.recorded: list[tuple[nn.Linear, torch.Tensor]] = []

    def _run(self, layer: nn.Linear, neuron: snn.Leaky, spikes: torch.Tensor) -> torch.Tensor:
        steps, batch = spikes.shape[0], spikes.shape[1]
        flat = spikes.reshape(steps * batch, -1)
        self.recorded.append((layer, flat.clone()))
        currents = layer(flat).view(steps, batch, -1)
        mem = torch.zeros_like(currents[0])
        out = []
        for current in currents:
            spike, mem = neuron(current, mem)
            out.append(spike)
        return torch.stack(out)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        self.recorded = []
        steps_first = spikes.transpose(0, 1)
        hidden = self._run(self.fc1, self.lif1, steps_first)
        hidden = self._run(self.fc2, self.lif2, hidden)
        rates = hidden.mean(0)
        self.recorded.append((self.readout, rates.clone()))
        return self.readout(rates)


def brute_force_ops(layer: nn.Linear, inputs: torch.Tensor) -> int:
    """Count 1 for every (row, non-zero input, non-zero weight in that input's column)."""
    weight = layer.weight.detach()
    count = 0
    for row in inputs:
        for i, value in enumerate(row.tolist()):
            if value == 0:
                continue
            for o in range(weight.shape[0]):
                if weight[o, i] != 0:
                    count += 1
    return count


def spike_input(batch: int = 4, steps: int = 5, features: int = 12, rate: float = 0.4, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, steps, features, generator=generator) < rate).float()


def zero_free_spike_linear(seed: int) -> nn.Linear:
    """Return a 12 -> 5 spike-fed Linear layer whose weights lie in [0.5, 1.5), so none is zero."""
    layer = nn.Linear(12, 5)
    layer.input_kind = "spike"
    with torch.no_grad():
        layer.weight.copy_(torch.rand(5, 12, generator=torch.Generator().manual_seed(seed)) + 0.5)
    return layer


def count_phase(modules, *args, phase: str = "acting") -> OperationCounts:
    counter = OperationCounter(*modules) if isinstance(modules, (tuple, list)) else OperationCounter(modules)
    with torch.no_grad(), counter.phase(phase):
        modules_called = modules[0] if isinstance(modules, (tuple, list)) else modules
        modules_called(*args)
    counts = counter.take(phase)
    counter.remove()
    return counts


# --------------------------------------------------------------------------------- MLP


def test_mlp_actor_macs_per_action():
    actor = mlp_actor()
    expected = 17 * 256 + 256 * 256 + 256 * 6
    result = count_operations(actor, torch.randn(1, 17))
    assert expected == 71_424
    assert result["mac"] == expected
    assert result["ac"] == 0
    assert result["effective_mac"] <= expected


def test_mlp_actor_batch_totals():
    actor = mlp_actor()
    counts = count_phase(actor, torch.randn(32, 17))
    assert counts.mac == 32 * 71_424
    assert counts.samples == 32
    assert counts.forward_passes == 1


def test_mlp_effective_macs_skip_relu_zeros():
    actor = mlp_actor()
    obs = torch.randn(8, 17)
    counts = count_phase(actor, obs)

    with torch.no_grad():
        hidden1 = torch.relu(actor[0](obs))
        hidden2 = torch.relu(actor[2](hidden1))
    expected = 0
    for layer, inputs in ((actor[0], obs), (actor[2], hidden1), (actor[4], hidden2)):
        expected += int(((inputs != 0).float() @ (layer.weight != 0).float().T).sum())
    assert counts.effective_mac == expected
    assert counts.effective_mac < counts.mac


# --------------------------------------------------------------------------------- spiking network


@pytest.mark.parametrize("declare", [True, False])
def test_snn_acs_match_brute_force(declare):
    net = SmallSNN(declare=declare)
    spikes = spike_input()
    counts = count_phase(net, spikes)

    spike_layers = [(layer, x) for layer, x in net.recorded if layer is not net.readout]
    expected_ac = sum(brute_force_ops(layer, x) for layer, x in spike_layers)
    readout_inputs = net.recorded[-1][1]
    assert counts.ac == expected_ac
    assert counts.ac > 0
    assert counts.effective_mac == brute_force_ops(net.readout, readout_inputs)
    assert counts.mac == readout_inputs.shape[0] * 7 * 3


def test_snn_neuron_updates_per_step():
    net = SmallSNN()
    batch, steps = 4, 5
    counts = count_phase(net, spike_input(batch, steps))
    assert counts.neuron_updates == {"Leaky": steps * batch * (9 + 7)}


def test_snn_spike_statistics():
    net = SmallSNN()
    spikes = spike_input()
    counts = count_phase(net, spikes)
    spike_layers = [x for layer, x in net.recorded if layer is not net.readout]
    assert counts.spike_inputs == sum(int((x != 0).sum()) for x in spike_layers)
    assert counts.spike_input_slots == sum(x.numel() for x in spike_layers)
    assert counts.ac_connections == sum(x.shape[0] * layer.in_features * layer.out_features for layer, x in net.recorded[:2])


def test_count_operations_layers_report():
    net = SmallSNN()
    batch, steps = 4, 5
    result = count_operations(net, spike_input(batch, steps))
    by_name = {layer["name"]: layer for layer in result["layers"]}

    fc1_inputs = net.recorded[0][1]
    assert by_name["fc1"]["kind"] == "spike"
    assert by_name["fc1"]["time_steps"] == steps
    assert by_name["fc1"]["neurons"] == 9
    assert by_name["fc1"]["ac"] == pytest.approx(brute_force_ops(net.fc1, fc1_inputs) / batch)
    assert by_name["fc1"]["input_firing_rate"] == pytest.approx(float((fc1_inputs != 0).float().mean()))
    assert by_name["readout"]["kind"] == "dense"
    assert by_name["readout"]["input_firing_rate"] is None
    assert by_name["lif1"]["kind"] == "neuron"
    assert by_name["lif1"]["time_steps"] == steps
    assert by_name["lif1"]["neurons"] == 9
    assert result["ac"] == pytest.approx(sum(layer["ac"] for layer in result["layers"]))


def test_linear_3d_input_like_flat():
    layer = nn.Linear(6, 4)
    layer.input_kind = "spike"
    spikes = (torch.rand(3, 2, 6, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    counts_3d = count_phase(layer, spikes)
    counts_2d = count_phase(layer, spikes.reshape(6, 6))
    assert counts_3d.ac == counts_2d.ac == brute_force_ops(layer, spikes.reshape(6, 6))


# --------------------------------------------------------------------------------- NeuroBench


def neurobench_synops(net: nn.Module, data: torch.Tensor) -> dict:
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    model = TorchModel(net)
    model.register_hooks()
    try:
        with torch.no_grad():
            preds = model(data)
        metric = SynapticOperations()
        return metric(model, preds, (data, None))
    finally:
        model.cleanup_hooks()


@pytest.mark.parametrize("declare", [True, False])
def test_snn_counts_match_neurobench(declare):
    pytest.importorskip("neurobench")
    net = SmallSNN(declare=declare)
    spikes = spike_input(batch=6)
    reference = neurobench_synops(net, spikes)
    ours = count_operations(net, spikes)

    # NeuroBench stores an exception inside a metric as 0.0, so a zero would hide a failure.
    assert reference["Effective_ACs"] > 0
    assert reference["Effective_MACs"] > 0
    assert ours["ac"] == pytest.approx(reference["Effective_ACs"])
    assert ours["effective_mac"] == pytest.approx(reference["Effective_MACs"])
    assert ours["ac_connections"] + ours["mac"] == pytest.approx(reference["Dense"])


def test_grouped_conv_matches_neurobench():
    pytest.importorskip("neurobench")
    conv = nn.Conv1d(4, 6, kernel_size=3, stride=2, padding=1, dilation=2, groups=2)
    conv.input_kind = "dense"
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(5)) > 0.4)
    x = torch.randn(3, 4, 11) * (torch.rand(3, 4, 11, generator=torch.Generator().manual_seed(6)) > 0.5)
    reference = neurobench_synops(nn.Sequential(conv), x)
    ours = count_operations(conv, x)
    assert reference["Effective_MACs"] > 0
    assert ours["effective_mac"] == pytest.approx(reference["Effective_MACs"])
    assert ours["mac"] == pytest.approx(reference["Dense"])


# --------------------------------------------------------------------------------- convolution


def brute_force_conv(conv: nn.Conv1d, x: torch.Tensor, all_ones: bool = False) -> int:
    """Count (input element, weight) pairs an output actually multiplies, by looping over outputs."""
    weight = conv.weight.detach()
    in_per_group = conv.in_channels // conv.groups
    out_per_group = conv.out_channels // conv.groups
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    length = x.shape[-1]
    out_length = (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    count = 0
    for b, o, position in itertools.product(range(x.shape[0]), range(conv.out_channels), range(out_length)):
        group = o // out_per_group
        for c_local, k in itertools.product(range(in_per_group), range(kernel)):
            source = position * stride + k * dilation - padding
            if not 0 <= source < length:
                continue
            c = group * in_per_group + c_local
            if all_ones or (x[b, c, source] != 0 and weight[o, c_local, k] != 0):
                count += 1
    return count


def test_population_decoder_conv_counts():
    act_dim, pop = 6, 10
    decoder = nn.Conv1d(act_dim, act_dim, kernel_size=pop, groups=act_dim)
    decoder.input_kind = "dense"
    rates = torch.randint(0, 6, (5, act_dim, pop)).float() / 5
    counts = count_phase(decoder, rates)
    assert counts.mac == 5 * act_dim * pop
    assert counts.effective_mac == brute_force_conv(decoder, rates)
    assert counts.effective_mac == int((rates != 0).sum())


@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [(1, 0, 1, 1), (2, 1, 2, 2), (1, 3, 1, 4), (3, 2, 2, 1)],
)
def test_conv_counts_match_brute_force(stride, padding, dilation, groups):
    conv = nn.Conv1d(4, 8, kernel_size=3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    conv.input_kind = "spike"
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(7)) > 0.3)
    spikes = (torch.rand(2, 4, 13, generator=torch.Generator().manual_seed(8)) < 0.4).float()
    counts = count_phase(conv, spikes)
    assert counts.ac == brute_force_conv(conv, spikes)
    assert counts.ac_connections == brute_force_conv(conv, spikes, all_ones=True)


def test_conv2d_counts_match_binary_convolution():
    conv = nn.Conv2d(3, 4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2))
    conv.input_kind = "spike"
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(9)) > 0.3)
    spikes = (torch.rand(2, 3, 7, 6, generator=torch.Generator().manual_seed(10)) < 0.4).float()
    counts = count_phase(conv, spikes)
    binary = nn.functional.conv2d(
        spikes, (conv.weight != 0).float(), stride=conv.stride, padding=conv.padding, dilation=conv.dilation
    )
    assert counts.ac == int(binary.sum())


# --------------------------------------------------------------------------------- lateral and recurrent


class LateralSNN(nn.Module):
    """Feedforward spikes plus a lateral Linear on the previous step's spikes of the same layer."""

    def __init__(self, n_in: int = 5, n_hidden: int = 6) -> None:
        super().__init__()
        self.ff = nn.Linear(n_in, n_hidden, bias=False)
        self.lateral = nn.Linear(n_hidden, n_hidden, bias=False)
        self.ff.input_kind = "spike"
        self.lateral.input_kind = "spike"
        self.lif = snn.Leaky(beta=0.9, threshold=0.3)
        self.lateral_inputs: list[torch.Tensor] = []

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        self.lateral_inputs = []
        previous = torch.zeros(spikes.shape[1], self.lateral.in_features)
        mem = torch.zeros_like(previous)
        for step in spikes:
            self.lateral_inputs.append(previous.clone())
            previous, mem = self.lif(self.ff(step) + self.lateral(previous), mem)
        return previous


def test_lateral_linear_counted():
    net = LateralSNN()
    with torch.no_grad():
        net.ff.weight.fill_(1.0)
        net.lateral.weight.copy_(torch.randn(6, 6, generator=torch.Generator().manual_seed(11)))
    spikes = (torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(12)) < 0.6).float()
    counts = count_phase(net, spikes)
    lateral_expected = sum(brute_force_ops(net.lateral, x) for x in net.lateral_inputs)
    ff_expected = sum(brute_force_ops(net.ff, step) for step in spikes)
    assert lateral_expected > 0
    assert counts.ac == ff_expected + lateral_expected


def test_rleaky_recurrent_connections_counted():
    n = 5
    all_to_all = snn.RLeaky(beta=0.9, linear_features=n, threshold=0.2)
    one_to_one = snn.RLeaky(beta=0.9, V=torch.tensor([0.5, 0.0, 1.0, 2.0, 0.0]), all_to_all=False, threshold=0.2)
    currents = torch.rand(4, 3, n, generator=torch.Generator().manual_seed(13))

    for neuron in (all_to_all, one_to_one):
        recurrent_inputs: list[torch.Tensor] = []
        recorder = neuron.recurrent.register_forward_pre_hook(lambda m, args: recurrent_inputs.append(args[0].clone()))
        counter = OperationCounter(neuron)
        spk, mem = neuron.init_rleaky()
        with torch.no_grad(), counter.phase("acting"):
            for current in currents:
                spk, mem = neuron(current, spk, mem)
        counts = counter.take("acting")
        counter.remove()
        recorder.remove()

        assert len(recurrent_inputs) == 4
        if neuron is all_to_all:
            expected = sum(brute_force_ops(neuron.recurrent, x) for x in recurrent_inputs)
        else:
            nonzero_v = torch.tensor([0.5, 0.0, 1.0, 2.0, 0.0]) != 0
            expected = sum(int(((x != 0) & nonzero_v).sum()) for x in recurrent_inputs)
        assert expected > 0
        assert counts.ac == expected
        assert counts.neuron_updates == {"RLeaky": 4 * 3 * n}


# --------------------------------------------------------------------------------- rules and edge cases


def test_biases_not_counted():
    with_bias = nn.Linear(8, 5, bias=True)
    without_bias = nn.Linear(8, 5, bias=False)
    with torch.no_grad():
        without_bias.weight.copy_(with_bias.weight)
        with_bias.bias.fill_(3.0)
    for layer in (with_bias, without_bias):
        layer.input_kind = "spike"
    spikes = (torch.rand(6, 8, generator=torch.Generator().manual_seed(14)) < 0.5).float()
    assert count_phase(with_bias, spikes).ac == count_phase(without_bias, spikes).ac
    assert count_phase(with_bias, torch.zeros(6, 8)).ac == 0


def test_zero_weights_reduce_fanout():
    layer = nn.Linear(4, 3, bias=False)
    layer.input_kind = "spike"
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
    counts = count_phase(layer, torch.tensor([[1.0, 1.0, 0.0, 1.0]]))
    assert counts.ac == 2 + 0 + 2


def test_empty_input_counts_zero():
    layer = nn.Linear(8, 4)
    layer.input_kind = "spike"
    counts = count_phase(layer, torch.zeros(0, 8))
    assert counts.ac == 0
    assert counts.samples == 0
    assert counts.forward_passes == 1


def test_count_operations_rejects_empty_batch():
    with pytest.raises(ValueError, match="0 rows"):
        count_operations(mlp_actor(), torch.zeros(0, 17))


def test_nan_input_raises_at_take():
    actor = mlp_actor()
    counter = OperationCounter(actor)
    obs = torch.randn(3, 17)
    obs[1, 4] = float("nan")
    with torch.no_grad(), counter.phase("acting"):
        actor(obs)
    with pytest.raises(ValueError, match="NaN"):
        counter.take("acting")
    assert counter.take("acting").mac == 0


def test_declared_spike_layer_rejects_real_values():
    layer = nn.Linear(4, 2)
    layer.input_kind = "spike"
    with pytest.raises(ValueError, match="outside"):
        count_phase(layer, torch.tensor([[0.5, 1.0, 0.0, 0.0]]))


def test_signed_spikes_need_declaration():
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    signed = torch.tensor([[-1.0, 1.0, 0.0]])

    assert count_phase(layer, signed).ac == 4
    layer.input_kind = "spike"
    with pytest.raises(ValueError, match="signed_spikes"):
        count_phase(layer, signed)
    layer.signed_spikes = True
    assert count_phase(layer, signed).ac == 4
    with pytest.raises(ValueError, match="outside"):
        count_phase(layer, torch.tensor([[-2.0, 1.0, 0.0]]))


def test_spike_check_can_be_disabled():
    layer = nn.Linear(2, 2)
    layer.input_kind = "spike"
    counter = OperationCounter(layer, spike_check_calls=0)
    with torch.no_grad(), counter.phase("acting"):
        layer(torch.tensor([[0.5, 0.0]]))
    assert counter.take("acting").spike_input_slots == 2
    counter.remove()


def test_no_counts_outside_phase():
    net = SmallSNN()
    counter = OperationCounter(net)
    with torch.no_grad():
        net(spike_input())
    assert all(not record.calls for site in counter._sites for record in site.tallies)
    counts = counter.take("acting")
    counter.remove()
    assert counts == OperationCounts()


def test_phases_are_separate():
    actor = mlp_actor()
    counter = OperationCounter(actor)
    with torch.no_grad():
        with counter.phase("acting"):
            actor(torch.randn(1, 17))
        with counter.phase("learning"):
            actor(torch.randn(4, 17))
            with counter.phase("replay"):
                actor(torch.randn(2, 17))
    assert counter.take("acting").mac == 71_424
    assert counter.take("replay").mac == 2 * 71_424
    assert counter.take("learning").mac == 4 * 71_424
    assert counter.take("learning").mac == 0
    counter.remove()


def test_unknown_phase_rejected():
    counter = OperationCounter(mlp_actor())
    with pytest.raises(ValueError, match="unknown phase"):
        with counter.phase("training"):
            pass
    counter.remove()


def test_remove_detaches_every_hook():
    net = SmallSNN()
    # A module with its own instance-level forward gets hooks instead of a wrapper.
    own_forward = net.fc1.forward
    net.fc1.forward = own_forward
    modules = list(net.modules())
    before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]
    counter = OperationCounter(net)
    assert len(net.fc1._forward_pre_hooks) == 1
    assert "forward" in vars(net.fc2)
    counter.remove()
    after = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]
    assert after == before
    assert vars(net.fc1)["forward"] == own_forward
    assert "forward" not in vars(net.fc2)
    with pytest.raises(RuntimeError, match="removed"):
        with counter.phase("acting"):
            pass


def test_fanout_follows_weight_updates():
    layer = nn.Linear(4, 3, bias=False)
    layer.input_kind = "spike"
    counter = OperationCounter(layer)
    spikes = torch.ones(2, 4)
    with torch.no_grad(), counter.phase("learning"):
        layer(spikes)
        layer.weight[:, 0] = 0.0
        layer(spikes)
    counts = counter.take("learning")
    counter.remove()
    assert counts.ac == 2 * 12 + 2 * 9


def test_counting_leaves_gradients_unchanged():
    net = SmallSNN()
    spikes = spike_input()
    torch.manual_seed(0)
    net(spikes).sum().backward()
    reference = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()

    counter = OperationCounter(net)
    with counter.phase("learning"):
        net(spikes).sum().backward()
    counter.remove()
    for expected, param in zip(reference, net.parameters()):
        assert torch.equal(param.grad, expected)


def test_nested_roots_rejected():
    net = SmallSNN()
    with pytest.raises(ValueError, match="inside argument"):
        OperationCounter(net, net.fc1)


def test_invalid_input_kind_rejected():
    layer = nn.Linear(2, 2)
    layer.input_kind = "spikes"
    with pytest.raises(ValueError, match="input_kind='spikes' is invalid"):
        OperationCounter(layer)


def test_unsupported_layer_rejected():
    with pytest.raises(ValueError, match="GRU is not supported"):
        OperationCounter(nn.Sequential(nn.GRU(3, 4)))


# --------------------------------------------------------------------------------- encoder and T


class Encoder(nn.Module):
    """Gaussian receptive-field encoder with an optional snnTorch spike generator."""

    input_kind = "encoder"

    def __init__(self, obs_dim: int = 3, pop_size: int = 4, bernoulli: bool = False) -> None:
        super().__init__()
        self.obs_dim, self.pop_size, self.bernoulli = obs_dim, pop_size, bernoulli
        self.mean = nn.Parameter(torch.linspace(-1, 1, pop_size).repeat(obs_dim, 1))
        self.generator = snn.Leaky(beta=1.0, threshold=0.999, reset_mechanism="subtract")

    def forward(self, obs: torch.Tensor, steps: int) -> torch.Tensor:
        currents = torch.exp(-0.5 * ((obs.unsqueeze(-1) - self.mean) / 0.4) ** 2).flatten(1)
        if self.bernoulli:
            return torch.bernoulli(currents.expand(steps, *currents.shape))
        mem = torch.zeros_like(currents)
        out = []
        for _ in range(steps):
            spike, mem = self.generator(currents, mem)
            out.append(spike)
        return torch.stack(out)


class TinyPopActor(nn.Module):
    def __init__(self, steps: int, bernoulli: bool = False) -> None:
        super().__init__()
        self.T = steps
        self.encoder = Encoder(bernoulli=bernoulli)
        self.fc = nn.Linear(12, 5)
        self.fc.input_kind = "spike"

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder(obs, self.T)
        return self.fc(spikes.reshape(-1, 12)).view(self.T, obs.shape[0], -1).mean(0)


@pytest.mark.parametrize("bernoulli", [False, True])
def test_encoder_macs_and_spike_generation(bernoulli):
    actor = TinyPopActor(steps=4, bernoulli=bernoulli)
    counts = count_phase(actor, torch.randn(5, 3))
    assert counts.mac == 5 * 3 * 4
    key = "Encoder" if bernoulli else "Leaky"
    assert counts.neuron_updates == {key: 4 * 5 * 12}


def test_energy_scales_with_steps():
    layer = nn.Linear(10, 6, bias=False)
    layer.input_kind = "spike"
    neuron = snn.Leaky(beta=0.7)
    pattern = (torch.rand(3, 10, generator=torch.Generator().manual_seed(15)) < 0.5).float()
    model = get_energy_model("horowitz45-fp32")

    def run(steps: int) -> OperationCounts:
        counter = OperationCounter(layer, neuron)
        with torch.no_grad(), counter.phase("acting"):
            currents = layer(pattern.repeat(steps, 1)).view(steps, 3, 6)
            mem = torch.zeros(3, 6)
            for current in currents:
                _, mem = neuron(current, mem)
        counts = counter.take("acting")
        counter.remove()
        return counts

    one = run(1)
    assert one.ac > 0
    for steps in (1, 2, 5, 10):
        counts = run(steps)
        assert counts.ac == steps * one.ac
        assert counts.neuron_updates["Leaky"] == steps * one.neuron_updates["Leaky"]
        assert model.energy_j(counts) == pytest.approx(steps * model.energy_j(one), rel=1e-12)


def test_neuron_model_wrapper_counted_once():
    class NeuronLayer(nn.Module):
        neuron_model = "Leaky"

        def __init__(self) -> None:
            super().__init__()
            self.neuron = snn.Leaky(beta=0.5)

        def forward(self, currents: torch.Tensor) -> torch.Tensor:
            mem = torch.zeros_like(currents[0])
            out = []
            for current in currents:
                spike, mem = self.neuron(current, mem)
                out.append(spike)
            return torch.stack(out)

    counts = count_phase(NeuronLayer(), torch.rand(5, 2, 7))
    assert counts.neuron_updates == {"Leaky": 5 * 2 * 7}


# --------------------------------------------------------------------------------- OperationCounts


def test_operation_counts_add_and_round_trip():
    a = OperationCounts(ac=3, mac=4, effective_mac=2, neuron_updates={"Leaky": 5}, samples=1, forward_passes=1)
    b = OperationCounts(ac=1, mac=1, effective_mac=1, neuron_updates={"Leaky": 1, "Synaptic": 2}, samples=2)
    total = a + b
    assert total.ac == 4
    assert total.neuron_updates == {"Leaky": 6, "Synaptic": 2}
    assert total.samples == 3
    assert a.neuron_updates == {"Leaky": 5}
    assert OperationCounts.from_dict(total.as_dict()) == total
    with pytest.raises(ValueError, match="unknown operation count fields"):
        OperationCounts.from_dict({"acs": 1})


# --------------------------------------------------------------------------------- options and modes


def test_learning_dense_effective_equals_mac():
    actor = mlp_actor()
    counter = OperationCounter(actor)
    obs = torch.randn(4, 17)
    with torch.no_grad():
        with counter.phase("learning"):
            actor(obs)
        with counter.phase("acting"):
            actor(obs)
    learning = counter.take("learning")
    acting = counter.take("acting")
    counter.remove()
    assert learning.mac == acting.mac == 4 * 71_424
    assert learning.effective_mac == learning.mac
    assert acting.effective_mac < acting.mac


def test_effective_mac_phases_option():
    actor = mlp_actor()
    counter = OperationCounter(actor, effective_mac_phases=("learning",))
    with torch.no_grad(), counter.phase("learning"):
        actor(torch.randn(4, 17))
    assert counter.take("learning").effective_mac < 4 * 71_424
    counter.remove()
    with pytest.raises(ValueError, match="effective_mac_phases"):
        OperationCounter(actor, effective_mac_phases="acting")
    with pytest.raises(ValueError, match="spike_check_calls"):
        OperationCounter(actor, spike_check_calls=-1)


def test_spike_check_limited_to_first_calls():
    layer = nn.Linear(2, 2)
    layer.input_kind = "spike"
    counter = OperationCounter(layer, spike_check_calls=2)
    with torch.no_grad(), counter.phase("acting"):
        layer(torch.ones(1, 2))
        layer(torch.ones(1, 2))
        layer(torch.tensor([[0.5, 0.0]]))
    counter.take("acting")

    with torch.no_grad(), counter.phase("acting"):
        layer(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        counter.take("acting")
    counter.remove()


def test_nan_spike_input_raises():
    layer = nn.Linear(3, 2)
    layer.input_kind = "spike"
    with pytest.raises(ValueError, match="NaN"):
        count_phase(layer, torch.tensor([[1.0, float("nan"), 0.0]]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_encoder_input_raises(bad):
    actor = TinyPopActor(steps=2)
    obs = torch.randn(3, 3)
    obs[0, 1] = bad
    with pytest.raises(ValueError, match="encoder"):
        count_phase(actor, obs)


@pytest.mark.parametrize("phase", ["replay", "learning"])
def test_encoder_nan_check_by_phase(phase):
    actor = TinyPopActor(steps=2)
    obs = torch.randn(200, 3)
    obs[7, 2] = float("nan")
    clean = count_phase(actor, torch.zeros(200, 3), phase=phase)

    if phase == "replay":
        with pytest.raises(ValueError, match="encoder"):
            count_phase(actor, obs, phase=phase)
    else:
        # The learning phase counts shapes only, like its dense layers: the MACs are booked and
        # the observations are not read.
        assert count_phase(actor, obs, phase=phase).mac == clean.mac == 200 * 3 * 4
        counter = OperationCounter(actor, effective_mac_phases=("learning",))
        with torch.no_grad(), counter.phase("learning"):
            actor(obs)
        with pytest.raises(ValueError, match="encoder"):
            counter.take("learning")
        counter.remove()


def test_counting_under_inference_mode():
    net = SmallSNN()
    spikes = spike_input()
    counter = OperationCounter(net)
    with torch.inference_mode(), counter.phase("acting"):
        net(spikes)
    with torch.no_grad(), counter.phase("acting"):
        net(spikes)
    counts = counter.take("acting")
    counter.remove()
    assert counts.ac == 2 * count_phase(SmallSNN(), spikes).ac


def test_undeclared_layer_with_mixed_inputs():
    layer = nn.Linear(3, 2, bias=False)
    counter = OperationCounter(layer)
    with torch.no_grad(), counter.phase("acting"):
        layer(torch.tensor([[1.0, 0.0, 1.0]]))
        layer(torch.tensor([[0.5, 0.0, 2.0]]))
    [report] = counter.layer_counts("acting")
    counts = counter.take("acting")
    counter.remove()
    assert report["kind"] == "mixed"
    assert counts.ac == 4
    assert counts.effective_mac == 4
    assert counts.mac == 6


def test_take_peek_and_reset():
    actor = mlp_actor()
    counter = OperationCounter(actor)
    with torch.no_grad(), counter.phase("acting"):
        actor(torch.randn(2, 17))
    assert counter.peek("acting") == counter.peek("acting")
    counter.reset()
    assert counter.take("acting") == OperationCounts()
    counter.remove()


def test_one_dimensional_observation_is_one_sample():
    counts = count_phase(mlp_actor(), torch.randn(17))
    assert counts.samples == 1
    assert counts.mac == 71_424


# --------------------------------------------------------------------------------- project actors


def project_actor_names() -> list[str]:
    try:
        from neurorl.snn import actors
    except ImportError:
        return []
    return sorted(actors.ACTORS)


def test_project_ann_actor_macs():
    actors = pytest.importorskip("neurorl.snn.actors")
    ann = actors.build_actor("ann", actors.ActorSpec(obs_dim=17, act_dim=6))
    assert count_operations(ann, torch.randn(3, 17))["mac"] == 71_424


@pytest.mark.parametrize("name", project_actor_names())
@pytest.mark.parametrize("steps", [1, 5])
def test_project_actors_match_neurobench(name, steps):
    actors = pytest.importorskip("neurorl.snn.actors")
    pytest.importorskip("neurobench")
    torch.manual_seed(0)
    actor = actors.build_actor(name, actors.ActorSpec(obs_dim=17, act_dim=6, T=steps))
    obs = torch.randn(8, 17) * 2

    ours = count_operations(actor, obs)
    reference = neurobench_synops(actor, obs)
    encoder_macs = sum(layer["mac"] for layer in ours["layers"] if layer["kind"] == "encoder")
    assert reference["Effective_ACs"] + reference["Effective_MACs"] > 0
    assert ours["ac"] == pytest.approx(reference["Effective_ACs"])
    assert ours["effective_mac"] - encoder_macs == pytest.approx(reference["Effective_MACs"])
    assert ours["ac_connections"] + ours["mac"] - encoder_macs == pytest.approx(reference["Dense"])


def test_conv_counts_across_shapes_and_weights():
    conv = nn.Conv1d(2, 3, kernel_size=3, padding=1)
    conv.input_kind = "spike"
    spikes = [(torch.rand(2, 2, length, generator=torch.Generator().manual_seed(length)) < 0.5).float() for length in (5, 5, 8)]
    counter = OperationCounter(conv)
    expected = 0
    with torch.no_grad(), counter.phase("acting"):
        for index, x in enumerate(spikes):
            if index == 2:
                conv.weight[:, 0, 1] = 0.0
            expected += brute_force_conv(conv, x)
            conv(x)
    counts = counter.take("acting")
    counter.remove()
    assert counts.ac == expected


def test_unchecked_spike_path_matches_brute_force():
    net = SmallSNN()
    spikes = spike_input()
    counter = OperationCounter(net, spike_check_calls=0)
    with torch.no_grad(), counter.phase("learning"):
        net(spikes)
    counts = counter.take("learning")
    counter.remove()
    expected = sum(brute_force_ops(layer, x) for layer, x in net.recorded[:2])
    assert counts.ac == expected
    assert counts.effective_mac == counts.mac


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("checks", [None, 0])
def test_counts_in_other_dtypes(dtype, checks):
    generator = torch.Generator().manual_seed(17)
    spike_layer = nn.Linear(12, 7).to(dtype)
    dense_layer = nn.Linear(12, 7).to(dtype)
    spike_layer.input_kind = "spike"
    dense_layer.input_kind = "dense"
    with torch.no_grad():
        spike_layer.weight.mul_((torch.rand(7, 12, generator=generator) > 0.3).to(dtype))
    spikes = (torch.rand(30, 12, generator=generator) < 0.4).to(dtype)
    rates = torch.relu(torch.randn(30, 12, generator=generator)).to(dtype)

    counter = OperationCounter(spike_layer, dense_layer, spike_check_calls=checks)
    with torch.no_grad(), counter.phase("acting"):
        spike_layer(spikes)
        dense_layer(rates)
    counts = counter.take("acting")
    counter.remove()
    assert counts.ac == brute_force_ops(spike_layer.float(), spikes.float())
    assert counts.effective_mac == brute_force_ops(dense_layer.float(), rates.float())


# --------------------------------------------------------------------------------- forward wrappers and accumulators


def test_remove_restores_forward():
    net = SmallSNN()
    spikes = spike_input()
    expected = net(spikes)
    counter = OperationCounter(net)
    wrapped = [m for m in net.modules() if "forward" in vars(m)]
    assert wrapped
    with torch.no_grad(), counter.phase("acting"):
        assert torch.equal(net(spikes), expected)
    counter.remove()
    assert all("forward" not in vars(m) for m in net.modules())
    assert torch.equal(net(spikes), expected)


def test_deep_copy_is_not_counted():
    net = SmallSNN()
    spikes = spike_input()
    counter = OperationCounter(net)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin.fc1.weight.mul_(2.0)
    reference = SmallSNN()
    reference.load_state_dict(twin.state_dict())
    with torch.no_grad(), counter.phase("acting"):
        out = twin(spikes)
    assert torch.equal(out, reference(spikes))
    assert counter.take("acting") == OperationCounts()
    counter.remove()


def test_two_counters_on_one_module():
    net = SmallSNN()
    spikes = spike_input()
    first = OperationCounter(net, spike_check_calls=0)
    second = OperationCounter(net, spike_check_calls=0)
    with torch.no_grad(), first.phase("acting"), second.phase("acting"):
        net(spikes)
    expected = sum(brute_force_ops(layer, x) for layer, x in net.recorded[:2])
    assert first.take("acting").ac == expected
    assert second.take("acting").ac == expected

    first.remove()
    with torch.no_grad(), second.phase("acting"):
        net(spikes)
    assert second.take("acting").ac == expected
    second.remove()
    assert all("forward" not in vars(m) for m in net.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_dense_special_values_counted():
    layer = nn.Linear(6, 4, bias=False)
    layer.input_kind = "dense"
    with torch.no_grad():
        layer.weight[1, 2] = 0.0
    x = torch.tensor([
        [0.0, -0.0, 1e-45, float("inf"), -float("inf"), 2.0],
        [0.0, 0.5, 0.0, 0.0, -3.0, 0.0],
    ])
    counter = OperationCounter(layer)
    with torch.no_grad(), counter.phase("acting"):
        for _ in range(3):
            layer(x)
    counts = counter.take("acting")
    counter.remove()
    assert counts.effective_mac == 3 * brute_force_ops(layer, x)
    assert counts.mac == 3 * 2 * 6 * 4


def test_dense_conv_zero_counts_across_calls():
    conv = nn.Conv1d(4, 6, kernel_size=3, padding=1, groups=2)
    conv.input_kind = "dense"
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(21)) > 0.3)
    generator = torch.Generator().manual_seed(22)
    inputs = [torch.randn(3, 4, 9, generator=generator) * (torch.rand(3, 4, 9, generator=generator) > 0.5) for _ in range(4)]
    counter = OperationCounter(conv)
    with torch.no_grad(), counter.phase("acting"):
        for x in inputs:
            conv(x)
    counts = counter.take("acting")
    counter.remove()
    assert counts.effective_mac == sum(brute_force_conv(conv, x) for x in inputs)


@pytest.mark.parametrize("groups", [1, 2])
def test_unchecked_spike_conv_matches_brute_force(groups):
    conv = nn.Conv1d(4, 6, kernel_size=3, stride=2, padding=1, groups=groups)
    conv.input_kind = "spike"
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(23)) > 0.3)
    spikes = [(torch.rand(2, 4, 11, generator=torch.Generator().manual_seed(seed)) < 0.4).float() for seed in (24, 25)]
    counter = OperationCounter(conv, spike_check_calls=0)
    with torch.no_grad(), counter.phase("replay"):
        for x in spikes:
            conv(x)
    counts = counter.take("replay")
    counter.remove()
    assert counts.ac == sum(brute_force_conv(conv, x) for x in spikes)


def test_float32_accumulator_flushed_before_exactness_limit(monkeypatch):
    from neurorl.energy import counting

    monkeypatch.setattr(counting, "FLOAT32_EXACT_ROWS", 7)
    layer = nn.Linear(12, 5)
    layer.input_kind = "spike"
    counter = OperationCounter(layer, spike_check_calls=0)
    batches = [spike_input(batch=1, steps=5, seed=seed).reshape(5, 12) for seed in range(6)]
    with torch.no_grad(), counter.phase("learning"):
        for x in batches:
            layer(x)
    counts = counter.take("learning")
    counter.remove()
    assert counts.ac == sum(brute_force_ops(layer, x) for x in batches)
    assert counts.spike_inputs == sum(int(x.sum()) for x in batches)


def test_take_cycles_start_from_zero():
    net = SmallSNN()
    counter = OperationCounter(net, spike_check_calls=0)
    for seed in range(5):
        spikes = spike_input(batch=seed + 1, seed=seed)
        with torch.no_grad(), counter.phase("replay"):
            net(spikes)
        expected = sum(brute_force_ops(layer, x) for layer, x in net.recorded[:2])
        assert counter.take("replay").ac == expected
    counter.remove()


def test_inference_and_grad_calls_in_one_phase():
    net = SmallSNN()
    spikes = spike_input()
    single = count_phase(SmallSNN(), spikes, phase="learning")
    counter = OperationCounter(net, spike_check_calls=0)
    with counter.phase("learning"):
        with torch.inference_mode():
            net(spikes)
        net(spikes).sum().backward()
        with torch.no_grad():
            net(spikes)
    counts = counter.take("learning")
    counter.remove()
    assert counts.ac == 3 * single.ac
    assert counts.neuron_updates == {key: 3 * value for key, value in single.neuron_updates.items()}
    assert all(p.grad is not None for p in net.fc1.parameters())


def test_encoder_accepts_huge_finite_observations():
    actor = TinyPopActor(steps=2)
    obs = torch.full((4, 3), 3.0e38)
    obs[1] = -3.0e38
    counter = OperationCounter(actor)
    with torch.no_grad(), counter.phase("acting"):
        for _ in range(3):
            actor(obs)
    counts = counter.take("acting")
    counter.remove()
    assert counts.mac == 3 * 4 * 3 * 4


# --------------------------------------------------------------------------------- steady-state paths and timing


def test_seconds_grow_only_when_counting():
    net = SmallSNN()
    spikes = spike_input()
    counter = OperationCounter(net)
    assert counter.seconds == 0.0

    with torch.no_grad():
        net(spikes)
    with counter.phase("acting"):
        pass
    assert counter.seconds == 0.0

    with torch.no_grad(), counter.phase("acting"):
        net(spikes)
    after_calls = counter.seconds
    assert after_calls > 0.0
    counter.take("acting")
    assert counter.seconds > after_calls
    counter.remove()


def test_fanout_follows_fused_optimizer_step():
    layer = nn.Linear(2, 3, bias=False)
    layer.input_kind = "spike"
    with torch.no_grad():
        layer.weight.fill_(0.5)
    net = nn.Sequential(layer)
    # A fused step writes the weight without bumping its version counter (torch 2.13).
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5, fused=True)
    counter = OperationCounter(net, spike_check_calls=0)
    spikes = torch.ones(4, 2)
    expected = 0
    for _ in range(3):
        with torch.no_grad(), counter.phase("learning"):
            net(spikes)
        expected += brute_force_ops(layer, spikes)
        layer.weight.grad = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
        optimizer.step()
    counts = counter.take("learning")
    counter.remove()
    # The second call meets w[0, 0] == 0 (fan-out 2 for input 0), the third w[0, 0] == -0.5.
    assert expected == 4 * 6 + 4 * (2 + 3) + 4 * 6
    assert counts.ac == expected


def test_fused_step_reaches_every_counter():
    # One fused optimizer steps layers counted by different counters. Each step must reach every
    # live counter, also one created after the optimizer's first steps, and charge each its time.
    layers = [nn.Linear(2, 3, bias=False) for _ in range(3)]
    for layer in layers:
        layer.input_kind = "spike"
        with torch.no_grad():
            layer.weight.fill_(0.5)
    nets = [nn.Sequential(layer) for layer in layers]
    optimizer = torch.optim.SGD([layer.weight for layer in layers], lr=0.5, fused=True)
    steady = OperationCounter(nets[1], spike_check_calls=0)
    early = OperationCounter(nets[0], spike_check_calls=0)
    late = None
    spikes = torch.ones(4, 2)
    expected = {"steady": 0, "early": 0, "late": 0}
    for step in range(4):
        if step == 2:
            early.remove()
            late = OperationCounter(nets[2], spike_check_calls=0)
        live = {"steady": (steady, 1), "early": (early, 0)} if step < 2 else {"steady": (steady, 1), "late": (late, 2)}
        for name, (counter, index) in live.items():
            with torch.no_grad(), counter.phase("learning"):
                nets[index](spikes)
            expected[name] += brute_force_ops(layers[index], spikes)

        # Each step zeroes one more weight of every layer (0.5 - 0.5 * 1), the last restores one.
        for layer in layers:
            layer.weight.grad = torch.zeros(3, 2)
            layer.weight.grad[step % 3, step % 2] = 1.0 if step < 3 else -1.0
        before = {name: counter.seconds for name, (counter, _) in live.items()}
        optimizer.step()
        for name, seconds in before.items():
            assert live[name][0].seconds > seconds, (name, step)

    assert expected["steady"] == 4 * 6 + 4 * 5 + 4 * 4 + 4 * 3
    assert steady.take("learning").ac == expected["steady"]
    assert late.take("learning").ac == expected["late"] == 4 * 4 + 4 * 3
    steady.remove()
    late.remove()


def test_wrapped_dense_layer_special_values():
    layer = nn.Linear(6, 4, bias=False)
    layer.input_kind = "dense"
    net = nn.Sequential(layer)
    x = torch.tensor([
        [0.0, -0.0, 1e-45, float("inf"), -float("inf"), 2.0],
        [0.0, 0.5, 0.0, 0.0, -3.0, 0.0],
    ])
    counter = OperationCounter(net)
    with torch.no_grad(), counter.phase("acting"):
        for _ in range(3):
            net(x)
    counts = counter.take("acting")
    assert counts.effective_mac == 3 * brute_force_ops(layer, x)
    assert counts.mac == 3 * 2 * 6 * 4

    with torch.no_grad():
        layer.weight[1, 2] = 0.0
    with torch.no_grad(), counter.phase("acting"):
        net(x)
    assert counter.take("acting").effective_mac == brute_force_ops(layer, x)

    x[1, 3] = float("nan")
    with torch.no_grad(), counter.phase("acting"):
        net(x)
    with pytest.raises(ValueError, match="NaN"):
        counter.take("acting")
    counter.remove()


@pytest.mark.parametrize("batch", [1, 2, 64])
def test_wrapped_decoder_conv_counts(batch):
    act_dim, pop = 6, 10
    conv = nn.Conv1d(act_dim, act_dim, kernel_size=pop, groups=act_dim)
    conv.input_kind = "dense"
    net = nn.Sequential(conv)
    generator = torch.Generator().manual_seed(31)
    rates = [torch.randint(0, 6, (batch, act_dim, pop), generator=generator).float() / 5 for _ in range(3)]
    counter = OperationCounter(net)
    expected = 0
    with torch.no_grad(), counter.phase("acting"):
        for index, x in enumerate(rates):
            if index == 2:
                conv.weight[1, 0, 3] = 0.0
            expected += brute_force_conv(conv, x)
            net(x)
    counts = counter.take("acting")
    counter.remove()
    assert counts.effective_mac == expected
    assert counts.mac == 3 * batch * act_dim * pop


def test_wrapped_spike_layer_across_batch_sizes():
    net = SmallSNN()
    counter = OperationCounter(net, spike_check_calls=0)
    expected = {"acting": 0, "learning": 0}
    for seed, (phase, batch) in enumerate([("acting", 1), ("acting", 1), ("learning", 100), ("acting", 3), ("learning", 100), ("acting", 1)]):
        spikes = spike_input(batch=batch, seed=seed)
        with torch.no_grad(), counter.phase(phase):
            net(spikes)
        expected[phase] += sum(brute_force_ops(layer, x) for layer, x in net.recorded[:2])
        if seed == 3:
            assert counter.take("acting").ac == expected["acting"]
            expected["acting"] = 0
    assert counter.take("acting").ac == expected["acting"]
    assert counter.take("learning").ac == expected["learning"]
    counter.remove()


def test_wrapped_layer_flushed_before_exactness_limit(monkeypatch):
    from neurorl.energy import counting

    monkeypatch.setattr(counting, "FLOAT32_EXACT_ROWS", 7)
    layer = nn.Linear(12, 5)
    layer.input_kind = "spike"
    net = nn.Sequential(layer)
    counter = OperationCounter(net, spike_check_calls=0)
    batches = [spike_input(batch=1, steps=rows, seed=seed).reshape(rows, 12) for seed, rows in enumerate([2, 2, 2, 2, 3, 3, 2])]
    with torch.no_grad(), counter.phase("acting"):
        for x in batches:
            net(x)
    counts = counter.take("acting")
    counter.remove()
    assert counts.ac == sum(brute_force_ops(layer, x) for x in batches)
    assert counts.spike_inputs == sum(int(x.sum()) for x in batches)


class ChainCritic(nn.Module):
    """Q(s, a) over a plain nn.Sequential of dense Linear layers, like the project's MLP critic."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.input_kind = "dense"

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


def test_dense_chain_booked_per_layer():
    critic = ChainCritic()
    counter = OperationCounter(critic)
    assert "forward" in vars(critic.net)
    obs, action = torch.randn(5, 4), torch.randn(5, 3)
    with counter.phase("learning"):
        critic(obs, action).sum().backward()
        critic(obs[None].expand(2, 5, 4), action[None].expand(2, 5, 3))
    layers = {layer["name"]: layer for layer in counter.layer_counts("learning")}
    counts = counter.take("learning")
    counter.remove()

    per_sample = 7 * 16 + 16 * 16 + 16
    assert counts.mac == counts.effective_mac == (5 + 10) * per_sample
    assert counts.samples == 5 + 2
    for name, (fan_in, fan_out) in {"net.0": (7, 16), "net.2": (16, 16), "net.4": (16, 1)}.items():
        assert layers[name]["calls"] == 2
        assert layers[name]["rows"] == 15
        assert layers[name]["mac"] == 15 * fan_in * fan_out
        assert layers[name]["input_elements"] == 15 * fan_in
        assert layers[name]["out_units"] == fan_out
    assert all(p.grad is not None for p in critic.parameters())


def test_dense_chain_matches_per_layer_counts():
    critic = ChainCritic()
    obs, action = torch.randn(6, 4), torch.randn(6, 3)

    def learning_counts(hooked: bool) -> tuple[OperationCounts, list[dict]]:
        counter = OperationCounter(critic)
        # A hook on a chain member makes the chain fall back to per-layer counting.
        handle = critic.net[2].register_forward_hook(lambda module, args, output: None) if hooked else None
        with torch.no_grad(), counter.phase("learning"):
            critic(obs, action)
            critic.net[2](torch.randn(3, 16))
        layers = counter.layer_counts("learning")
        counts = counter.take("learning")
        counter.remove()
        if handle is not None:
            handle.remove()
        return counts, layers

    chained, chained_layers = learning_counts(hooked=False)
    per_layer, per_layer_layers = learning_counts(hooked=True)
    assert chained == per_layer
    assert chained_layers == per_layer_layers
    assert chained.mac == 6 * (7 * 16 + 16 * 16 + 16) + 3 * 16 * 16


def test_chain_hook_dropping_rows():
    # A hook that changes what the chain computes must make it count layer by layer. Here the
    # second Linear's output keeps 2 of 6 rows, so the last layer receives 2 rows, not 6.
    critic = ChainCritic()
    handle = critic.net[2].register_forward_hook(lambda module, args, output: output[:2])
    counter = OperationCounter(critic)
    with torch.no_grad(), counter.phase("learning"):
        critic(torch.randn(6, 4), torch.randn(6, 3))
    counts = counter.take("learning")
    counter.remove()
    handle.remove()
    assert counts.mac == 6 * 7 * 16 + 6 * 16 * 16 + 2 * 16 * 1


def test_dense_chain_counts_zeros_in_acting():
    critic = ChainCritic()
    obs, action = torch.randn(5, 4), torch.randn(5, 3)
    counter = OperationCounter(critic)
    with torch.no_grad(), counter.phase("acting"):
        critic(obs, action)
    counts = counter.take("acting")
    counter.remove()

    with torch.no_grad():
        inputs = torch.cat([obs, action], dim=-1)
        hidden1 = torch.relu(critic.net[0](inputs))
        hidden2 = torch.tanh(critic.net[2](hidden1))
    expected = sum(brute_force_ops(layer, x) for layer, x in ((critic.net[0], inputs), (critic.net[2], hidden1), (critic.net[4], hidden2)))
    assert counts.effective_mac == expected
    assert counts.effective_mac < counts.mac


@pytest.mark.parametrize("elements", [30, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_free_matches_definition(elements, dtype):
    # No exact zero (either sign) and no NaN. Infinities count as non-zero weights.
    from neurorl.energy.synapses import zero_free

    def definition(weight: torch.Tensor) -> bool:
        return bool((weight != 0).all()) and not bool(weight.isnan().any())

    base = torch.rand(elements, dtype=dtype, generator=torch.Generator().manual_seed(elements)) + 0.1
    cases = {"clean": base.clone(), "negative": -base}
    for name, value in [("zero", 0.0), ("negative zero", -0.0), ("nan", math.nan), ("inf", math.inf)]:
        weight = base.clone()
        weight[elements // 2] = value
        cases[name] = weight
    both = base.clone()
    both[0], both[-1] = math.inf, -math.inf
    for name, weight in cases.items():
        parameter = nn.Parameter(weight.view(1, -1))
        assert zero_free(parameter) == definition(weight), name
    assert zero_free(both) == definition(both)
    assert not zero_free(torch.empty(0, dtype=dtype))
    assert not zero_free(torch.ones(elements, dtype=torch.int64))


def test_zero_free_spike_layer_total_follows_weight_zeros():
    # Inputs of 500 x 12 are past the elementwise layout, so a weight without zeros sums them to
    # one total. Zero weights must switch every phase to per-input counts, and restored ones back.
    layer = zero_free_spike_linear(seed=0)
    net = nn.Sequential(layer)
    counter = OperationCounter(net, spike_check_calls=0)
    expected = {"acting": [0, 0], "learning": [0, 0]}
    plan = ["learning", "acting", "learning", "zero", "acting", "learning", "restore", "acting", "learning", "learning"]
    for seed, step in enumerate(plan):
        with torch.no_grad():
            if step == "zero":
                layer.weight[2, 3] = 0.0
                layer.weight[:, 7] = 0.0
                continue
            if step == "restore":
                layer.weight[2, 3] = 0.25
                layer.weight[:, 7] = 0.75
                continue
        x = spike_input(batch=500, steps=1, seed=seed).reshape(500, 12)
        with torch.no_grad(), counter.phase(step):
            net(x)
        expected[step][0] += brute_force_ops(layer, x)
        expected[step][1] += int(x.sum())
    for phase, (ac, spikes) in expected.items():
        counts = counter.take(phase)
        assert (counts.ac, counts.spike_inputs) == (ac, spikes), phase
    counter.remove()


def test_spike_total_over_many_calls():
    # A total keeps each call's sum in one of counting._TOTAL_SLOTS slots and folds full slots
    # into its float64 sum. Peeks and takes land between folds, before and after the slots fill.
    from neurorl.energy import counting

    layer = zero_free_spike_linear(seed=2)
    counter = OperationCounter(layer, spike_check_calls=0)
    calls = 2 * counting._TOTAL_SLOTS + 7
    take_after = {3, counting._TOTAL_SLOTS + 1, calls}
    expected = [0, 0]
    for seed in range(1, calls + 1):
        x = spike_input(batch=400, steps=1, seed=seed).reshape(400, 12)
        with torch.no_grad(), counter.phase("learning"):
            layer(x)
        # Every (row, non-zero input, non-zero weight in its column), as one product of indicators.
        expected[0] += int(((x != 0).double() @ (layer.weight.detach() != 0).double().T).sum())
        expected[1] += int(x.sum())
        if seed % 5 == 0:
            peeked = counter.peek("learning")
            assert (peeked.ac, peeked.spike_inputs) == tuple(expected), seed
        if seed in take_after:
            counts = counter.take("learning")
            assert (counts.ac, counts.spike_inputs) == tuple(expected), seed
            expected = [0, 0]
    counter.remove()


def test_zero_free_spike_layer_total_after_dtype_change():
    layer = zero_free_spike_linear(seed=1)
    counter = OperationCounter(layer, spike_check_calls=0)
    expected = 0
    for seed, dtype in enumerate([torch.float32, torch.float32, torch.float64, torch.float64, torch.float32]):
        layer.to(dtype)
        x = spike_input(batch=400, steps=1, seed=seed).reshape(400, 12).to(dtype)
        with torch.no_grad(), counter.phase("learning"):
            layer(x)
        expected += brute_force_ops(layer, x)
    assert counter.take("learning").ac == expected
    counter.remove()



def count_two_layers_through_steps(optimizer_params, change) -> tuple[int, int]:
    """Count four calls of two spike layers with a fused SGD step after each; return (counted ACs, brute force).

    The step zeroes the second layer's weight [0, 0] once it is in the optimizer, and
    ``change(optimizer, second)`` runs before the second call.
    """
    first, second = nn.Linear(2, 3, bias=False), nn.Linear(3, 2, bias=False)
    for layer in (first, second):
        layer.input_kind = "spike"
        with torch.no_grad():
            layer.weight.fill_(0.5)
    net = nn.Sequential(first, second)
    optimizer = torch.optim.SGD(optimizer_params(first), lr=0.5, fused=True)
    counter = OperationCounter(net, spike_check_calls=0)
    spikes = torch.ones(4, 2)
    expected = 0
    for step in range(4):
        if step == 1:
            change(optimizer, second)
        with torch.no_grad(), counter.phase("learning"):
            net(spikes)
        expected += brute_force_ops(first, spikes) + brute_force_ops(second, torch.ones(4, 3))
        first.weight.grad = torch.zeros(3, 2)
        second.weight.grad = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        optimizer.step()
    counts = counter.take("learning")
    counter.remove()
    return counts.ac, expected


def test_fanout_follows_added_param_group():
    def add_group(optimizer, second):
        # The counter has seen this optimizer with one group, and the new group must be followed too.
        optimizer.add_param_group({"params": second.parameters()})

    counted, expected = count_two_layers_through_steps(lambda first: first.parameters(), add_group)
    assert counted == expected


def test_decoder_nan_rate_raises_after_steady_calls():
    from neurorl.snn.decoding import PopulationDecoder

    decoder = PopulationDecoder(act_dim=3, pop_size=4)
    counter = OperationCounter(decoder)
    rates = torch.rand(1, 12)
    with torch.no_grad(), counter.phase("acting"):
        for _ in range(3):
            decoder(rates)
    assert counter.take("acting").effective_mac == 3 * int((rates != 0).sum())

    bad = rates.clone()
    bad[0, 5] = float("nan")
    with torch.no_grad(), counter.phase("acting"):
        decoder(rates)
        decoder(bad)
    with pytest.raises(ValueError, match="NaN"):
        counter.take("acting")
    counter.remove()


def test_fanout_follows_replaced_param_list():
    def replace_parameter(optimizer, second):
        # A list of the same length at the same place, so only the parameter ids show the change.
        optimizer.param_groups[0]["params"][0] = second.weight
        optimizer.state.clear()

    counted, expected = count_two_layers_through_steps(lambda first: [first.weight], replace_parameter)
    assert counted == expected


def test_decoder_host_count_follows_storage_swap():
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    from neurorl.snn.decoding import PopulationDecoder

    decoder = PopulationDecoder(act_dim=2, pop_size=4)
    counter = OperationCounter(decoder)
    rates = torch.ones(1, 8)
    with torch.no_grad(), counter.phase("acting"):
        decoder(rates)
        vector = parameters_to_vector(decoder.parameters()).clone()
        vector[:4] = 0.0
        # vector_to_parameters assigns .data, which keeps the version counter and swaps the storage.
        vector_to_parameters(vector, decoder.parameters())
        decoder(rates)
    counts = counter.take("acting")
    counter.remove()
    assert counts.effective_mac == 8 + 4


def test_counter_collected_inside_optimizer_step():
    import gc

    from torch.optim.optimizer import register_optimizer_step_post_hook

    layer = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 2)).sum().backward()
    gc.disable()
    # The collecting hook runs before any hook that the counters below could have added.
    collect = register_optimizer_step_post_hook(lambda *args: gc.collect())
    try:
        for _ in range(3):
            # Counters in reference cycles, freed only by the collection inside the step below.
            counter = OperationCounter(nn.Sequential(nn.Linear(2, 2)))
            counter.cycle = counter
            del counter
        before = layer.weight.detach().clone()
        optimizer.step()
    finally:
        collect.remove()
        gc.enable()
    assert not torch.equal(layer.weight.detach(), before)


def test_fanout_follows_weight_tied_after_first_step():
    first, second = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    for layer in (first, second):
        layer.input_kind = "spike"
        with torch.no_grad():
            layer.weight.fill_(0.5)
    net = nn.Sequential(first, second)
    optimizer = torch.optim.SGD([first.weight], lr=0.5, fused=True)
    counter = OperationCounter(net, spike_check_calls=0)
    spikes = torch.ones(4, 2)
    expected = 0
    for step in range(4):
        if step == 1:
            # The second layer now shares the first layer's weight, which the optimizer steps.
            second.weight = first.weight
        with torch.no_grad(), counter.phase("learning"):
            hidden = net[0](spikes)
            net[1](torch.ones_like(hidden))
        expected += brute_force_ops(first, spikes) + brute_force_ops(second, torch.ones(4, 2))
        first.weight.grad = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        optimizer.step()
    counts = counter.take("learning")
    counter.remove()
    assert counts.ac == expected
