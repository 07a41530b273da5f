"""Population encoder, decoder and actors."""

import math

import pytest
import torch

from neurorl.snn.actors import ActorSpec, MLPActor, PopSpikingActor, build_actor
from neurorl.snn.decoding import CoveringConv1d, PopulationDecoder
from neurorl.snn.encoding import PopulationEncoder


def test_encoder_receptive_fields_match_gaussian():
    encoder = PopulationEncoder(obs_dim=2, pop_size=5)
    obs = torch.tensor([[0.0, 1.5]])
    currents = encoder.currents(obs).view(2, 5)
    means = torch.linspace(-3, 3, 5)
    for dim in range(2):
        for j in range(5):
            expected = math.exp(-0.5 * (obs[0, dim].item() - means[j].item()) ** 2 / 0.15)
            assert currents[dim, j].item() == pytest.approx(expected, rel=1e-5)


def test_deterministic_encoder_integrates_and_fires():
    """Integrate-and-fire at threshold 0.999 with subtraction: spikes = floor-like count of A·t."""
    encoder = PopulationEncoder(obs_dim=1, pop_size=3)
    obs = torch.tensor([[0.0]])
    activation = encoder.currents(obs).view(-1).tolist()
    spikes = encoder(obs, T=6).view(6, -1)
    for neuron, a in enumerate(activation):
        v, expected = 0.0, []
        for _ in range(6):
            v += a
            fired = v > 0.999
            v -= 0.999 if fired else 0.0
            expected.append(1.0 if fired else 0.0)
        assert spikes[:, neuron].tolist() == expected


def test_bernoulli_encoder_rate_and_gradient():
    torch.manual_seed(0)
    encoder = PopulationEncoder(obs_dim=1, pop_size=10, spike_mode="bernoulli")
    obs = torch.zeros(2000, 1)
    spikes = encoder(obs, T=1)[0]
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(spikes.mean(0), encoder.currents(obs[:1])[0], atol=0.04)
    spikes.sum().backward()
    assert encoder.mean.grad is not None and encoder.mean.grad.abs().sum() > 0


def test_decoder_is_grouped_per_action_dimension():
    decoder = PopulationDecoder(act_dim=2, pop_size=3)
    rates = torch.tensor([[1.0, 0.0, 0.5, 0.2, 0.2, 0.2]])
    weight, bias = decoder.conv.weight.detach(), decoder.conv.bias.detach()
    expected = [(weight[k, 0] * rates[0, 3 * k : 3 * k + 3]).sum() + bias[k] for k in range(2)]
    assert torch.allclose(decoder(rates)[0], torch.stack(expected))



@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("per_group", [1, 4])
@pytest.mark.parametrize("kernel", [2, 10])
def test_covering_conv_equals_conv1d(batch, per_group, kernel):
    torch.manual_seed(3)
    conv = CoveringConv1d(6, 6 * per_group, kernel_size=kernel, groups=6)
    reference = torch.nn.Conv1d(6, 6 * per_group, kernel_size=kernel, groups=6)
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(batch, 6, kernel, requires_grad=True)
    x_reference = x.detach().clone().requires_grad_(True)

    out, expected = conv(x), reference(x_reference)
    assert out.shape == expected.shape == (batch, 6 * per_group, 1)
    torch.testing.assert_close(out, expected)

    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_reference.grad)
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad)
    torch.testing.assert_close(conv.bias.grad, reference.bias.grad)


def test_covering_conv_falls_back_to_conv1d():
    torch.manual_seed(4)
    conv = CoveringConv1d(4, 4, kernel_size=3, groups=4, bias=False)
    reference = torch.nn.Conv1d(4, 4, kernel_size=3, groups=4, bias=False)
    reference.load_state_dict(conv.state_dict())
    longer = torch.randn(2, 4, 8)
    torch.testing.assert_close(conv(longer), reference(longer))
    covering = torch.randn(2, 4, 3)
    torch.testing.assert_close(conv(covering), reference(covering))
    conv.padding = reference.padding = (1,)
    torch.testing.assert_close(conv(covering), reference(covering))


@pytest.mark.parametrize("neuron", ["leaky", "clif"])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_popsan_shapes_and_bounds(neuron, T):
    actor = PopSpikingActor(ActorSpec(obs_dim=11, act_dim=3, hidden=(32, 32), T=T, neuron=neuron))
    actions = actor(torch.randn(7, 11))
    assert actions.shape == (7, 3)
    assert actions.abs().max() <= 1.0


def test_popsan_is_repeatable_and_rows_independent():
    actor = PopSpikingActor(ActorSpec(obs_dim=5, act_dim=2, hidden=(16, 16), T=3))
    obs = torch.randn(4, 5) * 2
    assert torch.equal(actor(obs), actor(obs))
    rows = torch.cat([actor(obs[i : i + 1]) for i in range(4)])
    assert torch.allclose(actor(obs), rows, atol=1e-6)


def test_popsan_gradients_reach_encoder_and_layers():
    torch.manual_seed(0)
    actor = PopSpikingActor(ActorSpec(obs_dim=4, act_dim=2, hidden=(64, 64), T=5))
    actor(torch.randn(64, 4) * 2).pow(2).sum().backward()
    for name in ("encoder.mean", "encoder.std", "layers.0.weight", "layers.1.weight"):
        grad = dict(actor.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_popsan_multistep_equals_stepwise_loop():
    """Applying each layer to all T steps at once must equal stepping the network through time."""
    from neurorl.snn.neurons import run_neuron

    torch.manual_seed(1)
    actor = PopSpikingActor(ActorSpec(obs_dim=3, act_dim=2, hidden=(20, 20), T=4, neuron="clif"))
    obs = torch.randn(5, 3)
    enc = actor.encoder(obs, actor.T)
    states = [None] * len(actor.layers)
    out_spikes = []
    for t in range(actor.T):
        x = enc[t]
        for i, (layer, neuron) in enumerate(zip(actor.layers, actor.neurons)):
            current = layer(x)
            if states[i] is None:
                states[i] = (torch.zeros_like(current), torch.zeros_like(current))
            spike, syn, mem = neuron.neuron(current, *states[i])
            states[i] = (syn, mem)
            x = spike
        out_spikes.append(x)
    rates = torch.stack(out_spikes).mean(0)
    expected = torch.tanh(actor.decoder(rates))
    assert torch.allclose(actor(obs), expected, atol=1e-6)


def test_ann_actor_and_registry():
    actor = build_actor("ann", ActorSpec(obs_dim=17, act_dim=6))
    assert isinstance(actor, MLPActor)
    assert actor(torch.zeros(2, 17)).shape == (2, 6)
    with pytest.raises(ValueError, match="unknown actor 'lstm'"):
        build_actor("lstm", ActorSpec(obs_dim=1, act_dim=1))


@pytest.mark.parametrize("per_group, shape, dtype", [(4, (2, 3, 10), torch.float32), (1, (2, 1, 10), torch.float32), (1, (2, 6, 10), torch.float64)])
def test_covering_conv_rejects_what_conv1d_rejects(per_group, shape, dtype):
    conv = CoveringConv1d(6, 6 * per_group, kernel_size=10, groups=6)
    with pytest.raises(RuntimeError):
        conv(torch.randn(*shape, dtype=dtype))
