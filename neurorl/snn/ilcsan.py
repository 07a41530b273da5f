"""ILC-SAN: fully spiking actor with intra-layer connections (Chen, Peng, Huang, Tian, IEEE TNNLS 2024).

Structure: population encoder → hidden spiking layers (as in PopSAN) → output populations → a
per-step spike decoder → non-spiking output neurons. Each output neuron also receives the spikes
of its own population from the previous step, and the membrane voltage of the non-spiking neurons
is the pre-tanh action. No layer works on firing rates, so every synaptic layer after the encoder
is fed by spikes (ACs).

Equations, per output population g (``pop_size`` neurons, one population per action output):

    c_t = α·c_{t−1} + W·h_t + L_g·o_{t−1}         (L_g: pop_size × pop_size, self-connections included)
    v_t = β·v_{t−1}·(1 − o_{t−1}) + c_t,  o_t = H(v_t − θ)   (PopSAN's current-based LIF for ``clif``)
    m_t = β_out·m_{t−1} + D_g·o_t + b_g           (non-spiking output neuron, β_out = 1)
    a_g = tanh(readout(m_1 … m_T))

Facts taken from the authors' public code (github.com/lucifer2859/ILC-SAN):
* The intra-layer connection is a grouped Conv1d over each output population, self-connections
  included (``--connections intra``). Its input is the previous step's spikes, and its output is
  added to the synaptic input before the current filter.
* The decoder is a grouped Conv1d applied to the output spikes at every step.
* The output membrane decays with ``v_decay`` = 1.0, a pure integrator.
* The readout defaults to the last membrane voltage, with the mean and the value of largest
  magnitude as options.
* T = 5 and PopSAN's constants (α 0.5, β 0.75, θ 0.5, rectangular window 0.5).

Choices made here where neither the paper nor that code fixes them for this framework:
* The intra-layer Conv1d has no bias, because the output layer's own bias already adds the same
  constant current at every step.
* The intra-layer input is skipped at t = 1, when no spike has happened yet, so at T = 1 the
  intra-layer weights structurally get no gradient.
* Reset signals are detached, as snnTorch does; the authors' code lets gradient pass through
  the reset.
* The hidden and output neuron model follows ``ActorSpec.neuron`` (``clif`` is the authors' LIF).

This module also contains the building blocks that the other recurrent families and the spiking
critic reuse: :class:`RecurrentNeuronLayer`, :class:`MembraneIntegrator` and :func:`membrane_readout`.
"""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

from neurorl.snn.actors import READOUT_KINDS, ActorHead, ActorSpec, register_actor
from neurorl.snn.decoding import CoveringConv1d
from neurorl.snn.encoding import PopulationEncoder
from neurorl.snn.linear import Linear
from neurorl.snn.neurons import CurrentLIF, make_neuron

NeuronState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

RECURRENT_TARGETS = ("current", "membrane")
ILCSAN_OUTPUT_BETA = 1.0


def step_neuron(
    neuron: nn.Module,
    current: torch.Tensor,
    state: NeuronState | None,
    membrane_input: torch.Tensor | None = None,
) -> tuple[torch.Tensor, NeuronState]:
    """Advance an snnTorch ``Leaky``, ``Synaptic`` or :class:`CurrentLIF` by one step.

    Applies the same update as :func:`neurorl.snn.neurons.run_neuron` (reset from the detached
    o_{t−1}, integrate, fire on v_t − θ > 0), so a layer stepped here with no recurrent input
    gives the same spikes. ``membrane_input`` is added to v_t after integration, bypassing the
    current filter. ``state`` is None at the first step (zeros).
    """
    if state is None:
        zeros = torch.zeros_like(current)
        state = (zeros, zeros, zeros)
    syn, mem, reset = state

    beta = neuron.beta.clamp(0, 1)
    if isinstance(neuron, snn.Synaptic):
        syn = neuron.alpha.clamp(0, 1) * syn + current
        drive = syn
    else:
        drive = current

    if neuron._reset_mechanism == "subtract":
        mem = beta * mem + drive - reset * neuron.threshold
    elif isinstance(neuron, CurrentLIF) or not isinstance(neuron, snn.Synaptic):
        mem = beta * mem * (1 - reset) + drive
    else:
        # snnTorch's own Synaptic reset to zero also drops this step's current after a spike.
        mem = (beta * mem + drive) * (1 - reset)
    if membrane_input is not None:
        mem = mem + membrane_input

    spike = neuron.spike_grad(mem - neuron.threshold)
    return spike, (syn, mem, spike.detach())


def check_steppable(neuron: nn.Module) -> None:
    """Raise ValueError unless :func:`step_neuron` implements ``neuron``'s equations exactly."""
    if type(neuron) not in (snn.Leaky, snn.Synaptic, CurrentLIF):
        raise ValueError(
            f"step_neuron supports snnTorch Leaky, Synaptic and CurrentLIF, got {type(neuron).__name__}; "
            "build the neuron with neurorl.snn.neurons.make_neuron"
        )
    plain = not neuron.inhibition and not neuron.state_quant and neuron.reset_delay
    graded = float(neuron.graded_spikes_factor) != 1.0
    if not plain or graded or neuron._reset_mechanism not in ("zero", "subtract"):
        raise ValueError(
            f"step_neuron supports reset 'zero' or 'subtract' without inhibition, quantisation or graded "
            f"spikes; {type(neuron).__name__} has reset={neuron._reset_mechanism!r}, "
            f"inhibition={neuron.inhibition}, graded_spikes_factor={float(neuron.graded_spikes_factor)}"
        )


class RecurrentNeuronLayer(nn.Module):
    """A neuron population whose input at step t adds a synaptic layer fed by its own spikes of t−1.

    ``lateral`` maps spikes [B, N] to currents [B, N]; it is called once per step from t = 2 on, so
    the energy counter books its ACs per step. ``target`` chooses where the recurrent current
    enters: ``current`` (added to the synaptic input, filtered by a ``Synaptic`` neuron's current)
    or ``membrane`` (added to v_t directly). Like :class:`neurorl.snn.neurons.NeuronLayer`, the
    layer carries ``neuron_model`` so the counter books numel(spikes) neuron updates per call.
    """

    def __init__(self, neuron: nn.Module, lateral: nn.Module, target: str = "current") -> None:
        super().__init__()
        check_steppable(neuron)
        if target not in RECURRENT_TARGETS:
            raise ValueError(f"unknown recurrent target {target!r}; choose one of {', '.join(RECURRENT_TARGETS)}")
        self.neuron = neuron
        self.lateral = lateral
        self.target = target
        self.neuron_model = type(neuron).__name__

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        state: NeuronState | None = None
        previous: torch.Tensor | None = None
        spikes = []
        for current in currents:
            membrane_input = None
            if previous is not None:
                recurrent = self.lateral(previous)
                if self.target == "current":
                    current = current + recurrent
                else:
                    membrane_input = recurrent

            previous, state = step_neuron(self.neuron, current, state, membrane_input)
            spikes.append(previous)
        return torch.stack(spikes)


class PopulationLateral(nn.Module):
    """All-to-all connections inside each output population (self-connections included).

    A grouped Conv1d with one group per population: spikes [B, groups·pop_size] are viewed as
    [B, groups, pop_size], and each population's pop_size spikes reach all pop_size neurons of the
    same population through their own weights (pop_size² per population).
    """

    def __init__(self, groups: int, pop_size: int) -> None:
        super().__init__()
        self.groups = groups
        self.pop_size = pop_size
        self.conv = CoveringConv1d(groups, groups * pop_size, kernel_size=pop_size, groups=groups, bias=False)
        self.conv.input_kind = "spike"

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        grouped = spikes.view(-1, self.groups, self.pop_size)
        return self.conv(grouped).view(-1, self.groups * self.pop_size)


class MembraneIntegrator(nn.Module):
    """Non-spiking output neurons: m_t = β·m_{t−1} + I_t from m_0 = 0, with no threshold and no reset.

    The snnTorch ``Leaky`` with reset ``none`` in ``neuron`` supplies β and the equations. This
    module steps them over currents [T, B, N] and returns the membrane voltages [T, B, N], so the
    spikes snnTorch would compute are never formed. The counter books one neuron update per
    output neuron and step under ``NonSpikingLeaky``.
    """

    neuron_model = "NonSpikingLeaky"

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"membrane decay beta={beta} must lie in [0, 1]")
        self.neuron = snn.Leaky(beta=beta, reset_mechanism="none")

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        beta = self.neuron.beta.clamp(0, 1)
        membrane = torch.zeros_like(currents[0])
        trace = []
        for current in currents:
            membrane = beta * membrane + current
            trace.append(membrane)
        return torch.stack(trace)


def membrane_readout(membrane: torch.Tensor, kind: str) -> torch.Tensor:
    """Reduce membrane voltages [T, B, N] to [B, N]: the ``last`` step, the ``mean`` over T, or
    ``max``, the value of largest magnitude over T with its sign (ILC-SAN's ``max-mem``)."""
    if kind == "last":
        return membrane[-1]
    if kind == "mean":
        return membrane.mean(dim=0)
    if kind == "max":
        highest = membrane.max(dim=0).values
        lowest = membrane.min(dim=0).values
        return torch.where(highest.abs() > lowest.abs(), highest, lowest)
    raise ValueError(f"unknown membrane readout {kind!r}; choose one of {', '.join(READOUT_KINDS)}")


class ILCSpikingActor(ActorHead):
    """ILC-SAN actor: intra-layer connections in the output populations and a membrane-voltage readout."""

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        self.obs_dim = spec.obs_dim
        self.act_dim = spec.act_dim
        self.gaussian = spec.gaussian
        self.T = spec.T
        self.readout = spec.readout
        self.groups = spec.out_dim
        self.pop_size = spec.out_pop_size
        self.encoder = PopulationEncoder(spec.obs_dim, spec.pop_size, spike_mode=spec.encoder)

        sizes = [self.encoder.out_features, *spec.hidden]
        self.layers = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.layers.append(_spike_linear(fan_in, fan_out))
            self.neurons.append(make_neuron(spec.neuron, spec.surrogate))

        self.output_layer = _spike_linear(spec.hidden[-1], self.groups * self.pop_size)
        output_neuron = make_neuron(spec.neuron, spec.surrogate).neuron
        self.output_neurons = RecurrentNeuronLayer(output_neuron, PopulationLateral(self.groups, self.pop_size))

        self.decoder = nn.Conv1d(self.groups, self.groups, kernel_size=self.pop_size, groups=self.groups)
        self.decoder.input_kind = "spike"
        self.integrator = MembraneIntegrator(ILCSAN_OUTPUT_BETA)

    def pre_activation(self, obs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder(obs, self.T)
        steps, batch = spikes.shape[0], spikes.shape[1]

        for layer, neuron in zip(self.layers, self.neurons):
            spikes = neuron(layer(spikes.reshape(steps * batch, -1)).view(steps, batch, -1))

        currents = self.output_layer(spikes.reshape(steps * batch, -1)).view(steps, batch, -1)
        out_spikes = self.output_neurons(currents)

        grouped = out_spikes.reshape(steps * batch, self.groups, self.pop_size)
        decoded = self.decoder(grouped).view(steps, batch, self.groups)
        return membrane_readout(self.integrator(decoded), self.readout)


def _spike_linear(fan_in: int, fan_out: int) -> nn.Linear:
    layer = Linear(fan_in, fan_out)
    layer.input_kind = "spike"
    return layer


register_actor("ilcsan", ILCSpikingActor, spiking=True)
