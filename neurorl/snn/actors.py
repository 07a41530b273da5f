"""Actor networks: the PopSAN spiking actor, the ANN actor, and the registry that builds them.

Every actor maps normalised observations [B, obs_dim] to actions in [−1, 1]^act_dim (tanh);
the agent scales them to the environment's bounds. Every synaptic layer carries ``input_kind``
("spike", "dense" or "encoder") so the energy counter knows whether it costs ACs or MACs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from neurorl.snn.decoding import PopulationDecoder
from neurorl.snn.encoding import PopulationEncoder
from neurorl.snn.neurons import make_neuron, run_neuron


@dataclass(frozen=True)
class ActorSpec:
    """Everything an actor builder needs; unused fields are ignored by non-spiking actors."""

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (256, 256)
    T: int = 5
    neuron: str = "leaky"
    encoder: str = "deterministic"
    pop_size: int = 10
    out_pop_size: int = 10
    surrogate: str = "rectangular"


class PopSpikingActor(nn.Module):
    """PopSAN spiking actor (Tang et al., CoRL 2020).

    Population encoder → hidden spiking layers → output population of spiking neurons → firing
    rates over T steps → population decoder → tanh. Each synaptic layer is applied to the spikes of
    all T steps in one matrix product ([T·B, in] rows), and only the neuron dynamics step through
    time, which is exact for a feedforward network.
    """

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        self.T = spec.T
        self.encoder = PopulationEncoder(spec.obs_dim, spec.pop_size, spike_mode=spec.encoder)

        sizes = [self.encoder.out_features, *spec.hidden, spec.act_dim * spec.out_pop_size]
        self.layers = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layer = nn.Linear(fan_in, fan_out)
            layer.input_kind = "spike"
            self.layers.append(layer)
            self.neurons.append(make_neuron(spec.neuron, spec.surrogate))

        self.decoder = PopulationDecoder(spec.act_dim, spec.out_pop_size)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder(obs, self.T)
        steps, batch = spikes.shape[0], spikes.shape[1]

        for layer, neuron in zip(self.layers, self.neurons):
            currents = layer(spikes.reshape(steps * batch, -1)).view(steps, batch, -1)
            spikes = run_neuron(neuron, currents)

        firing_rate = spikes.mean(dim=0)
        return torch.tanh(self.decoder(firing_rate))


class MLPActor(nn.Module):
    """Deterministic ANN actor: ReLU MLP with the same hidden sizes, tanh output."""

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        sizes = [spec.obs_dim, *spec.hidden, spec.act_dim]
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(fan_in, fan_out)
            linear.input_kind = "dense"
            layers.append(linear)
            if index < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.T = 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


ActorBuilder = Callable[[ActorSpec], nn.Module]

ACTORS: dict[str, ActorBuilder] = {}
SPIKING_ACTORS: set[str] = set()


def register_actor(name: str, builder: ActorBuilder, *, spiking: bool) -> None:
    """Make ``builder`` available as ``--actor name``."""
    ACTORS[name] = builder
    if spiking:
        SPIKING_ACTORS.add(name)


def build_actor(name: str, spec: ActorSpec) -> nn.Module:
    """Build the actor registered as ``name``."""
    if name not in ACTORS:
        raise ValueError(f"unknown actor {name!r}; choose one of {', '.join(sorted(ACTORS))}")
    return ACTORS[name](spec)


register_actor("popsan", PopSpikingActor, spiking=True)
register_actor("ann", MLPActor, spiking=False)
