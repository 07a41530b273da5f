"""Population encoder with Gaussian receptive fields (PopSAN, Tang et al., CoRL 2020).

Each observation dimension i drives ``pop_size`` neurons j with the current
A_ij = exp(−½·((s_i − μ_ij)/σ_ij)²). The means start evenly spaced over [−3, 3] and σ² = 0.15;
both are learned. Spikes are generated for T steps either deterministically, by an
integrate-and-fire neuron with threshold 0.999 and reset by subtraction (snnTorch ``Leaky`` with
β = 1), or stochastically, as Bernoulli(A_ij) draws at every step. Both pass gradients straight
through to A, as PopSAN does.
"""

from __future__ import annotations

import math

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from neurorl.snn.neurons import NeuronLayer, straight_through

ENCODER_KINDS = ("deterministic", "bernoulli")
ENCODER_THRESHOLD = 0.999


class PopulationEncoder(nn.Module):
    """Gaussian receptive-field population encoder producing spikes of shape [T, B, obs_dim·pop_size].

    The energy counter books the receptive-field currents as obs_dim·pop_size MACs per forward
    pass (``input_kind = "encoder"``): they are computed once and fed to the spike generator at
    every step.
    """

    input_kind = "encoder"

    def __init__(
        self,
        obs_dim: int,
        pop_size: int = 10,
        mean_range: tuple[float, float] = (-3.0, 3.0),
        std: float = math.sqrt(0.15),
        spike_mode: str = "deterministic",
    ) -> None:
        super().__init__()
        if spike_mode not in ENCODER_KINDS:
            raise ValueError(f"unknown encoder spike mode {spike_mode!r}; choose one of {', '.join(ENCODER_KINDS)}")
        self.obs_dim = obs_dim
        self.pop_size = pop_size
        self.spike_mode = spike_mode

        low, high = mean_range
        means = torch.linspace(low, high, pop_size).repeat(obs_dim, 1)
        self.mean = nn.Parameter(means.unsqueeze(0))
        self.std = nn.Parameter(torch.full((1, obs_dim, pop_size), float(std)))
        self.spike_generator = NeuronLayer(
            snn.Leaky(
                beta=1.0,
                threshold=ENCODER_THRESHOLD,
                spike_grad=straight_through(),
                reset_mechanism="subtract",
            )
        )

    @property
    def out_features(self) -> int:
        return self.obs_dim * self.pop_size

    def currents(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the receptive-field activations A of shape [B, obs_dim·pop_size]."""
        z = (obs.unsqueeze(-1) - self.mean) / self.std
        return torch.exp(-0.5 * z * z).flatten(1)

    def forward(self, obs: torch.Tensor, T: int) -> torch.Tensor:
        activation = self.currents(obs)
        if self.spike_mode == "bernoulli":
            return _bernoulli_spikes(activation, T)

        return self.spike_generator(activation.expand(T, *activation.shape))


def _bernoulli_spikes(activation: torch.Tensor, T: int) -> torch.Tensor:
    repeated = activation.expand(T, *activation.shape)
    spikes = torch.bernoulli(repeated.detach().clamp(0.0, 1.0))
    return repeated + (spikes - repeated).detach()
