"""Actor networks: the PopSAN spiking actor, the ANN actor, the shared output head and the registry.

Every actor maps normalised observations [B, obs_dim] to actions in [−1, 1]^act_dim (tanh);
the agent scales them to the environment's bounds. Every synaptic layer carries ``input_kind``
("spike", "dense" or "encoder"), from which the energy counter books it as ACs or MACs.

The other spiking families live in their own modules (:mod:`neurorl.snn.mdcsan`,
:mod:`neurorl.snn.ilcsan`, :mod:`neurorl.snn.bptsan`); each registers itself with one
:func:`register_actor` line, and this module imports them at its end so that ``ACTORS`` lists
every family as soon as ``neurorl.snn.actors`` is imported.

With ``ActorSpec(gaussian=True)`` an actor's output layer has 2·act_dim units: the first act_dim
are the mean and the last act_dim the log standard deviation of a Gaussian over pre-tanh actions,
as SAC needs. ``forward`` still returns the deterministic action tanh(mean), so TD3 and evaluation
use every actor the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from neurorl.snn.decoding import PopulationDecoder
from neurorl.snn.encoding import ENCODER_KINDS, PopulationEncoder
from neurorl.snn.linear import Linear
from neurorl.snn.neurons import NEURON_KINDS, SURROGATE_KINDS, make_neuron

# Stable-Baselines3 2.9.2's SAC clamps log σ to this range: σ from 2e−9 (a numerically
# deterministic policy) to e² ≈ 7.4 (wider than tanh can use).
LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0

READOUT_KINDS = ("last", "mean", "max")


@dataclass(frozen=True)
class ActorSpec:
    """Everything an actor builder needs; fields a family does not use are ignored by it.

    :param obs_dim: observation dimension.
    :param act_dim: action dimension.
    :param hidden: hidden layer widths.
    :param T: simulation time steps of the spiking actors (the ANN ignores it).
    :param neuron: hidden neuron model of PopSAN, ILC-SAN and BPT-SAN (``leaky`` or ``clif``);
        MDC-SAN always uses its dynamic neuron.
    :param encoder: population encoder spike mode (``deterministic`` or ``bernoulli``).
    :param pop_size: encoder neurons per observation dimension.
    :param out_pop_size: output neurons per action dimension.
    :param surrogate: surrogate gradient of every spiking neuron (PopSAN's ``rectangular`` window
        by default, for every family).
    :param gaussian: give 2·act_dim outputs (mean and log σ) for SAC.
    :param readout: how ILC-SAN reads its non-spiking output neurons over T: the ``last``
        membrane voltage, the ``mean``, or ``max`` (the value of largest magnitude).
    :param branches: dendritic branches per neuron of BPT-SAN.
    """

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (256, 256)
    T: int = 5
    neuron: str = "leaky"
    encoder: str = "deterministic"
    pop_size: int = 10
    out_pop_size: int = 10
    surrogate: str = "rectangular"
    gaussian: bool = False
    readout: str = "last"
    branches: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        problems = _spec_problems(self)
        if problems:
            raise ValueError("invalid ActorSpec:\n  " + "\n  ".join(problems))

    @property
    def out_dim(self) -> int:
        """Units of the output head: act_dim, or 2·act_dim (mean and log σ) when ``gaussian``."""
        return 2 * self.act_dim if self.gaussian else self.act_dim


def _spec_problems(spec: ActorSpec) -> list[str]:
    problems = []
    for name in ("obs_dim", "act_dim", "T", "pop_size", "out_pop_size", "branches"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{name}={value!r} must be a positive integer")
    hidden = spec.hidden
    if not isinstance(hidden, tuple) or not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
        problems.append(f"hidden={hidden!r} must be a non-empty tuple of positive integers")
    choices = {
        "neuron": NEURON_KINDS,
        "encoder": ENCODER_KINDS,
        "surrogate": SURROGATE_KINDS,
        "readout": READOUT_KINDS,
    }
    for name, allowed in choices.items():
        value = getattr(spec, name)
        if value not in allowed:
            problems.append(f"{name}={value!r} is unknown; choose one of {', '.join(allowed)}")
    if not isinstance(spec.gaussian, bool):
        problems.append(f"gaussian={spec.gaussian!r} must be True or False")
    return problems


class ActorHead(nn.Module):
    """Base class of every actor: turns :meth:`pre_activation` into actions or Gaussian parameters.

    Subclasses set ``obs_dim``, ``act_dim``, ``gaussian`` and ``T`` and implement
    :meth:`pre_activation`, which returns [B, act_dim] (deterministic head) or [B, 2·act_dim]
    (Gaussian head, means first).
    """

    obs_dim: int
    act_dim: int
    gaussian: bool
    T: int

    def pre_activation(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, obs: torch.Tensor, distribution: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return the deterministic action tanh(mean) [B, act_dim], or with ``distribution=True``
        the pre-tanh Gaussian mean and log σ (see :meth:`mean_log_std`)."""
        out = self.pre_activation(self._check_obs(obs))
        if not distribution:
            return torch.tanh(out[:, : self.act_dim])

        mean, log_std = out.split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the pre-tanh Gaussian mean and log σ, each [B, act_dim], log σ clamped to
        [``LOG_STD_MIN``, ``LOG_STD_MAX``].

        The call goes through the module's ``__call__``, so forward hooks on the actor (the energy
        counter's sample count among them) see it like an ordinary forward pass.

        :raises RuntimeError: when the actor was built without ``gaussian=True``.
        """
        if not self.gaussian:
            raise RuntimeError(
                f"{type(self).__name__} has a deterministic head; build it with ActorSpec(gaussian=True) "
                "to get a mean and log standard deviation"
            )
        return self(obs, distribution=True)

    def _check_obs(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"{type(self).__name__} expects observations of shape [batch, {self.obs_dim}], "
                f"got {tuple(obs.shape)}; add a batch dimension with obs[None] for a single observation"
            )
        return obs


class PopSpikingActor(ActorHead):
    """PopSAN spiking actor (Tang et al., CoRL 2020).

    Population encoder → hidden spiking layers → output population of spiking neurons → firing
    rates over T steps → population decoder → tanh. Each synaptic layer is applied to the spikes of
    all T steps in one matrix product ([T·B, in] rows), and only the neuron dynamics step through
    time, which is exact for a feedforward network. Subclasses change the neuron model by
    overriding :meth:`make_neuron_layer`.
    """

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        self.obs_dim = spec.obs_dim
        self.act_dim = spec.act_dim
        self.gaussian = spec.gaussian
        self.T = spec.T
        self.encoder = PopulationEncoder(spec.obs_dim, spec.pop_size, spike_mode=spec.encoder)

        sizes = [self.encoder.out_features, *spec.hidden, spec.out_dim * spec.out_pop_size]
        self.layers = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layer = Linear(fan_in, fan_out)
            layer.input_kind = "spike"
            self.layers.append(layer)
            self.neurons.append(self.make_neuron_layer(spec))

        self.decoder = PopulationDecoder(spec.out_dim, spec.out_pop_size)

    def make_neuron_layer(self, spec: ActorSpec) -> nn.Module:
        """Build one neuron population mapping currents [T, B, N] to spikes [T, B, N]."""
        return make_neuron(spec.neuron, spec.surrogate)

    def pre_activation(self, obs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder(obs, self.T)
        steps, batch = spikes.shape[0], spikes.shape[1]

        for layer, neuron in zip(self.layers, self.neurons):
            currents = layer(spikes.reshape(steps * batch, -1)).view(steps, batch, -1)
            spikes = neuron(currents)

        firing_rate = spikes.mean(dim=0)
        return self.decoder(firing_rate)


def dense_mlp(sizes: list[int]) -> nn.Sequential:
    """Build Linear layers of the given sizes with ReLU between them, each marked as a dense-input layer."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = Linear(fan_in, fan_out)
        linear.input_kind = "dense"
        layers.append(linear)
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPActor(ActorHead):
    """ANN actor: ReLU MLP with the same hidden sizes, tanh output."""

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        self.obs_dim = spec.obs_dim
        self.act_dim = spec.act_dim
        self.gaussian = spec.gaussian
        self.T = 1

        self.net = dense_mlp([spec.obs_dim, *spec.hidden, spec.out_dim])

    def pre_activation(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


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

# The family modules import ActorSpec and register_actor from this module, so they are imported
# last, once those names exist. Importing them registers mdcsan, ilcsan and bptsan.
from neurorl.snn import bptsan, ilcsan, mdcsan  # noqa: E402, F401
