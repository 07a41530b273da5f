"""Spiking Q critic (membrane-voltage readout), the critic factory and the TD losses."""

from __future__ import annotations

import pytest
import torch

from neurorl.agents.critics import MLPCritic
from neurorl.agents.losses import td_loss
from neurorl.agents.spiking_critic import SpikingQCritic, make_critic
from neurorl.energy import count_operations

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 4, 2


def inputs(batch: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, OBS_DIM, generator=generator) * 2
    actions = torch.rand(batch, ACT_DIM, generator=generator) * 2 - 1
    return obs, actions


def critic(**overrides) -> SpikingQCritic:
    torch.manual_seed(0)
    options = dict(hidden=(24, 24), T=3)
    options.update(overrides)
    return SpikingQCritic(OBS_DIM, ACT_DIM, **options)


# --------------------------------------------------------------------------------- spiking critic


@pytest.mark.parametrize("readout", ["last", "mean", "max"])
@pytest.mark.parametrize("T", [1, 2, 5, 10])
def test_spiking_critic_shapes(T, readout):
    q = critic(T=T, readout=readout)(*inputs(batch=7))
    assert q.shape == (7,)
    assert torch.isfinite(q).all()


def test_spiking_critic_matches_stepwise_loop():
    """Q must equal the membrane of the output neuron after stepping each layer through time."""
    model = critic(T=4, neuron="clif", readout="mean")
    obs, actions = inputs(batch=5)
    drive = model.input_layer(torch.cat([obs, actions], dim=-1))

    states = [(torch.zeros_like(drive), torch.zeros_like(drive))] + [None] * len(model.layers)
    membrane = torch.zeros(5)
    trace = []
    for _ in range(model.T):
        spikes, syn, mem = model.neurons[0].neuron(drive, *states[0])
        states[0] = (syn, mem)
        for index, (layer, neuron) in enumerate(zip(model.layers, model.neurons[1:]), start=1):
            current = layer(spikes)
            if states[index] is None:
                states[index] = (torch.zeros_like(current), torch.zeros_like(current))
            spikes, syn, mem = neuron.neuron(current, *states[index])
            states[index] = (syn, mem)
        membrane = membrane + model.output_layer(spikes).squeeze(-1)
        trace.append(membrane)
    expected = torch.stack(trace).mean(0)
    assert torch.allclose(model(obs, actions), expected, atol=1e-5)


def test_spiking_critic_repeatable_and_rows_independent():
    model = critic(T=5)
    obs, actions = inputs(batch=4)
    first = model(obs, actions)
    model(*inputs(batch=9, seed=1))
    assert torch.equal(model(obs, actions), first)
    rows = torch.cat([model(obs[i : i + 1], actions[i : i + 1]) for i in range(4)])
    assert torch.allclose(first, rows, atol=1e-5)


@pytest.mark.parametrize("T", [1, 3])
def test_spiking_critic_gradients_reach_every_parameter(T):
    model = critic(T=T)
    model(*inputs(batch=64)).pow(2).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_spiking_critic_reads_membrane_not_firing_rate():
    """With β = 1 and the last-step readout, Q is T·b plus the weighted spike count."""
    model = critic(T=5, readout="last")
    obs, actions = inputs(batch=3)
    recorded = []
    handle = model.output_layer.register_forward_pre_hook(lambda layer, args: recorded.append(args[0].detach()))
    q = model(obs, actions)
    handle.remove()
    spike_counts = recorded[0].view(5, 3, -1).sum(0)
    expected = spike_counts @ model.output_layer.weight.detach().T + 5 * model.output_layer.bias.detach()
    assert torch.allclose(q, expected.squeeze(-1), atol=1e-5)


def test_spiking_critic_energy_matches_brute_force():
    model = critic(T=3, hidden=(10, 8))
    obs, actions = inputs(batch=4)
    recorded = []
    handles = [
        layer.register_forward_pre_hook(lambda layer, args: recorded.append((layer, args[0].detach())))
        for layer in (model.input_layer, *model.layers, model.output_layer)
    ]
    result = count_operations(model, (obs, actions))
    for handle in handles:
        handle.remove()

    ac = mac = 0
    for layer, x in recorded:
        rows = x.reshape(-1, layer.in_features)
        if layer.input_kind == "dense":
            mac += rows.shape[0] * layer.in_features * layer.out_features
            continue
        for row in rows:
            for i, value in enumerate(row.tolist()):
                if value != 0:
                    ac += sum(1 for o in range(layer.out_features) if layer.weight[o, i] != 0)
    assert ac > 0
    assert result["totals"]["ac"] == ac
    assert result["totals"]["mac"] == mac == 4 * (OBS_DIM + ACT_DIM) * 10


def test_spiking_critic_rejects_bad_options():
    with pytest.raises(ValueError) as error:
        SpikingQCritic(OBS_DIM, ACT_DIM, hidden=(), T=0, neuron="hh", readout="median")
    message = str(error.value)
    for fragment in ("T=0", "hidden=()", "neuron='hh'", "readout='median'"):
        assert fragment in message


def test_make_critic_kinds():
    assert isinstance(make_critic("mlp", OBS_DIM, ACT_DIM, (8, 8)), MLPCritic)
    spiking = make_critic("spiking-q", OBS_DIM, ACT_DIM, (8, 8), T=2, readout="max")
    assert isinstance(spiking, SpikingQCritic)
    assert spiking.T == 2
    assert spiking.readout == "max"
    with pytest.raises(ValueError, match="unknown critic 'gru'"):
        make_critic("gru", OBS_DIM, ACT_DIM)


# --------------------------------------------------------------------------------- TD losses


def td_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q = (torch.randn(32, generator=generator) * 3).requires_grad_(True)
    target = torch.randn(32, generator=generator) * 3
    weights = torch.rand(32, generator=generator) + 0.5
    return q, target, weights


def test_mse_equals_weighted_squared_error():
    q, target, weights = td_batch()
    expected = (weights * (q - target) ** 2).mean()
    assert torch.allclose(td_loss(q, target, weights, "mse"), expected)
    assert torch.allclose(td_loss(q, target, None, "mse"), ((q - target) ** 2).mean())


def test_truncated_equals_mse_inside_bound():
    q, target, weights = td_batch()
    bound = float((q.detach() - target).abs().max()) + 1.0
    assert torch.allclose(td_loss(q, target, weights, "truncated", clip=bound), td_loss(q, target, weights, "mse"))


def test_truncated_values_beyond_bound():
    q = torch.tensor([0.0, 0.0, 0.0, 0.0])
    target = torch.tensor([0.5, -3.0, 4.0, 1.0])
    per_sample = [0.25, 2 * 1.0 * 3.0 - 1.0, 2 * 1.0 * 4.0 - 1.0, 1.0]
    expected = torch.tensor(per_sample).mean()
    assert torch.allclose(td_loss(q, target, None, "truncated", clip=1.0), expected)


def test_truncated_gradient_is_clipped_td_error():
    q, target, weights = td_batch()
    clip = 1.5
    td_loss(q, target, weights, "truncated", clip=clip).backward()
    delta = (q - target).detach()
    expected = 2 * weights * delta.clamp(-clip, clip) / len(q)
    assert torch.allclose(q.grad, expected, atol=1e-6)
    assert q.grad.abs().max() <= 2 * weights.max() * clip / len(q) + 1e-7
    assert (delta.abs() > clip).any(), "the batch must contain TD errors beyond the bound"


@pytest.mark.parametrize(
    "kind, clip, shapes, message",
    [("huber", 1.0, (3, 3, 3), "unknown TD loss 'huber'"), ("truncated", 0.0, (3, 3, 3), "clip > 0"),
     ("mse", 1.0, (3, 2, 3), "must match"), ("mse", 1.0, (3, 3, 2), "weights of shape")],
)
def test_td_loss_rejects_bad_input(kind, clip, shapes, message):
    q, target, weights = (torch.zeros(n) for n in shapes)
    with pytest.raises(ValueError, match=message):
        td_loss(q, target, weights, kind, clip)


def test_mse_reproduces_td3_critic_loss():
    """The td3.py change replaces its inline loss; the sum over both critics must stay identical."""
    q1, target, weights = td_batch(seed=1)
    q2 = q1.detach() * 0.5
    inline = (weights * ((q1 - target) ** 2 + (q2 - target) ** 2)).mean()
    replaced = td_loss(q1, target, weights, "mse") + td_loss(q2, target, weights, "mse")
    assert torch.allclose(inline, replaced)


def test_spiking_critic_fits_a_target():
    """A few hundred MSE steps must reduce the regression error of the spiking critic."""
    model = critic(T=2, hidden=(32, 32))
    obs, actions = inputs(batch=64, seed=3)
    target = torch.tanh(obs[:, 0]) + actions[:, 1]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = td_loss(model(obs, actions), target, None, "mse")
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first
