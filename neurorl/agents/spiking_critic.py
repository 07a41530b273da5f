"""Spiking critic: Q(s, a) read from the membrane voltage of a non-spiking output neuron.

The design follows the deep spiking Q-network of Chen, Peng, Huang and Tian (arXiv:2201.09754):
spiking hidden layers, and an output layer of non-spiking neurons whose membrane voltage is the
Q-value, so no firing-rate decoder is needed. For continuous control the network takes s ⊕ a:

    I⁰ = W⁰·(s ⊕ a) + b⁰                        (real-valued input, computed once, fed at every step)
    o¹_t = LIF(I⁰),  oˡ_t = LIF(Wˡ·oˡ⁻¹_t + bˡ)  (hidden spiking layers, ``neuron`` and ``surrogate``)
    m_t = β·m_{t−1} + w·oᴸ_t + b                 (one non-spiking output neuron, β = 1)
    Q(s, a) = readout(m_1 … m_T)                 (``last``, ``mean`` or ``max``)

The first layer is fed real values, so the energy counter books it as MACs. It runs once per
forward pass because its currents are the same at every step. Every later layer is fed spikes (ACs).

Choices: which statistic of the membrane voltage over T Chen et al. use could not be checked
against a stored copy of their paper or code, so ``readout`` offers the last value (default), the
mean and the value of largest magnitude, as ILC-SAN's code (same authors) does for actions. The
output decay β = 1 follows ILC-SAN's default ``v_decay``.

:func:`make_critic` builds either this critic or the ReLU :class:`~neurorl.agents.critics.MLPCritic`,
both with ``forward(obs, action) -> [B]``.
"""

from __future__ import annotations

import torch
from torch import nn

from neurorl.agents.critics import MLPCritic
from neurorl.snn.actors import READOUT_KINDS
from neurorl.snn.ilcsan import MembraneIntegrator, membrane_readout
from neurorl.snn.linear import Linear
from neurorl.snn.neurons import NEURON_KINDS, SURROGATE_KINDS, make_neuron

CRITIC_KINDS = ("mlp", "spiking-q")


class SpikingQCritic(nn.Module):
    """Q(s, a) from the membrane voltage of one non-spiking output neuron after T steps.

    :param obs_dim: observation dimension.
    :param act_dim: action dimension.
    :param hidden: widths of the spiking hidden layers.
    :param T: simulation time steps.
    :param neuron: hidden neuron model (``leaky`` or ``clif``).
    :param surrogate: surrogate gradient of the hidden neurons.
    :param readout: ``last``, ``mean`` or ``max`` (largest magnitude) of the membrane voltage over T.
    :param output_beta: decay of the output neuron's membrane voltage, in [0, 1].
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (256, 256),
        T: int = 5,
        neuron: str = "leaky",
        surrogate: str = "rectangular",
        readout: str = "last",
        output_beta: float = 1.0,
    ) -> None:
        super().__init__()
        _check_options(obs_dim, act_dim, hidden, T, neuron, surrogate, readout)
        self.T = T
        self.readout = readout

        self.input_layer = Linear(obs_dim + act_dim, hidden[0])
        self.input_layer.input_kind = "dense"
        self.neurons = nn.ModuleList([make_neuron(neuron, surrogate)])
        self.layers = nn.ModuleList()
        for fan_in, fan_out in zip(hidden[:-1], hidden[1:]):
            layer = Linear(fan_in, fan_out)
            layer.input_kind = "spike"
            self.layers.append(layer)
            self.neurons.append(make_neuron(neuron, surrogate))

        self.output_layer = Linear(hidden[-1], 1)
        self.output_layer.input_kind = "spike"
        self.integrator = MembraneIntegrator(output_beta)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        currents = self.input_layer(torch.cat([obs, action], dim=-1))
        batch = currents.shape[0]
        spikes = self.neurons[0](currents.expand(self.T, *currents.shape))

        for layer, neuron in zip(self.layers, self.neurons[1:]):
            spikes = neuron(layer(spikes.reshape(self.T * batch, -1)).view(self.T, batch, -1))

        out = self.output_layer(spikes.reshape(self.T * batch, -1)).view(self.T, batch, 1)
        return membrane_readout(self.integrator(out), self.readout).squeeze(-1)


def make_critic(
    kind: str,
    obs_dim: int,
    act_dim: int,
    hidden: tuple[int, ...] = (256, 256),
    T: int = 5,
    **spiking_options,
) -> nn.Module:
    """Build a critic with ``forward(obs, action) -> [B]``: ``mlp`` (ReLU MLP; ``T`` and the
    spiking options are ignored) or ``spiking-q`` (:class:`SpikingQCritic`, which takes
    ``neuron``, ``surrogate``, ``readout`` and ``output_beta`` as ``spiking_options``)."""
    if kind == "mlp":
        return MLPCritic(obs_dim, act_dim, tuple(hidden))
    if kind == "spiking-q":
        return SpikingQCritic(obs_dim, act_dim, tuple(hidden), T, **spiking_options)
    raise ValueError(f"unknown critic {kind!r}; choose one of {', '.join(CRITIC_KINDS)}")


def _check_options(obs_dim, act_dim, hidden, T, neuron, surrogate, readout) -> None:
    problems = []
    for name, value in (("obs_dim", obs_dim), ("act_dim", act_dim), ("T", T)):
        if not isinstance(value, int) or value < 1:
            problems.append(f"{name}={value!r} must be a positive integer")
    if not hidden or any(not isinstance(width, int) or width < 1 for width in hidden):
        problems.append(f"hidden={hidden!r} must be a non-empty sequence of positive integers")
    for name, value, allowed in (
        ("neuron", neuron, NEURON_KINDS),
        ("surrogate", surrogate, SURROGATE_KINDS),
        ("readout", readout, READOUT_KINDS),
    ):
        if value not in allowed:
            problems.append(f"{name}={value!r} is unknown; choose one of {', '.join(allowed)}")
    if problems:
        raise ValueError("invalid SpikingQCritic options:\n  " + "\n  ".join(problems))
