"""MDC-SAN: population coding with second-order dynamic neurons (Zhang, Zhang, Jia, Xu, AAAI 2022).

MDC-SAN keeps PopSAN's structure (population encoder, spiking hidden layers, output populations,
firing-rate decoder) and replaces the LIF neuron by a dynamic neuron with two state variables,
membrane voltage v and recovery u, in the spirit of Izhikevich's simple model
(dv/dt = k(v − v_r)(v − v_t) − u + I, du/dt = a(b(v − v_r) − u), reset v ← c, u ← u + d), with
learned parameters θ_v, θ_u, θ_r, θ_s. One step of :class:`DynamicNeuron`, with o_{t−1} the
previous spike:

    c_t = α·c_{t−1} + I_t                                    (PopSAN's current, α = 0.5)
    v̂ = v_{t−1}·(1 − o_{t−1}) + θ_r·o_{t−1}                 (reset the voltage to θ_r)
    û = u_{t−1} + θ_s·o_{t−1}                                (step the recovery by θ_s)
    v_t = v̂ + (v̂² − v̂ − û + c_t)                           (so v_t = v̂² − û + c_t)
    u_t = û + θ_v·v̂ − θ_u·û
    o_t = H(v_t − θ),  θ = 0.5

Facts taken from the public re-implementation in the ILC-SAN authors' code
(github.com/lucifer2859/ILC-SAN, ``mdcsan.py``): these update equations, the order of reset and
integration, the current filter α = 0.5, θ = 0.5, the rectangular pseudo-gradient of window 0.5,
and the parameter values θ_v = −0.172, θ_u = 0.529, θ_r = 0.021, θ_s = 0.132 (used there as fixed
constants). Their roles map onto Izhikevich's a, b, c, d: θ_u is the recovery rate (a), θ_v the
recovery's sensitivity to v (a·b), θ_r the reset voltage (c) and θ_s the recovery step (d).

Choices made here where MDC-SAN does not fix them for this framework:
* The four θ are learned, one scalar each per layer (not per neuron), initialised to the values
  above, and not clamped.
* The reset signal o_{t−1} is detached, as snnTorch does; the authors' code lets gradient pass
  through the reset.
* The encoder follows ``ActorSpec.encoder`` (deterministic or Bernoulli spikes), so the first
  hidden layer is fed by spikes. The ILC-SAN authors' MDC-SAN run (``--encode pop``) feeds the
  real-valued receptive-field activations instead, which would make that layer cost MACs.

Gradient reach: at T = 1 the state starts from zero, so v_1 = c_1 and none of the θ receive a
gradient; θ_r and θ_s first matter at T = 2 (after a spike at t = 1) and θ_v, θ_u at T = 3.
"""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

from neurorl.snn.actors import ActorSpec, PopSpikingActor, register_actor
from neurorl.snn.neurons import POPSAN_ALPHA, POPSAN_THRESHOLD, SurrogateFn, make_surrogate, rectangular

MDCSAN_THETA_V = -0.172
MDCSAN_THETA_U = 0.529
MDCSAN_THETA_R = 0.021
MDCSAN_THETA_S = 0.132


class DynamicNeuron(snn.SpikingNeuron):
    """MDC-SAN's second-order dynamic neuron as an snnTorch ``SpikingNeuron`` subclass.

    ``forward(input_, syn, mem, rec)`` advances one step and returns ``(spk, syn, mem, rec)``:
    the spike, the current c, the voltage v and the recovery u, following the snnTorch convention
    of explicit state. :class:`DynamicNeuronLayer` steps it over T.
    """

    def __init__(
        self,
        alpha: float = POPSAN_ALPHA,
        threshold: float = POPSAN_THRESHOLD,
        theta_v: float = MDCSAN_THETA_V,
        theta_u: float = MDCSAN_THETA_U,
        theta_r: float = MDCSAN_THETA_R,
        theta_s: float = MDCSAN_THETA_S,
        spike_grad: SurrogateFn | None = None,
    ) -> None:
        super().__init__(
            threshold=threshold,
            spike_grad=spike_grad if spike_grad is not None else rectangular(),
            reset_mechanism="zero",
        )
        self.register_buffer("alpha", torch.as_tensor(float(alpha)))
        self.theta_v = nn.Parameter(torch.tensor(float(theta_v)))
        self.theta_u = nn.Parameter(torch.tensor(float(theta_u)))
        self.theta_r = nn.Parameter(torch.tensor(float(theta_r)))
        self.theta_s = nn.Parameter(torch.tensor(float(theta_s)))

    def forward(
        self, input_: torch.Tensor, syn: torch.Tensor, mem: torch.Tensor, rec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        syn = self.alpha * syn + input_
        # o_{t−1} recomputed from v_{t−1}, detached like snnTorch's own reset signal.
        reset = (mem - self.threshold > 0).to(mem.dtype)

        voltage = mem * (1 - reset) + self.theta_r * reset
        recovery = rec + self.theta_s * reset
        mem = voltage + (voltage * voltage - voltage - recovery + syn)
        rec = recovery + self.theta_v * voltage - self.theta_u * recovery

        spk = self.spike_grad(mem - self.threshold)
        return spk, syn, mem, rec


class DynamicNeuronLayer(nn.Module):
    """A population of :class:`DynamicNeuron` stepped over T from a zero state: currents [T, B, N] →
    spikes [T, B, N]. Carries ``neuron_model`` so the energy counter books numel(spikes) updates."""

    neuron_model = "DynamicNeuron"

    def __init__(self, neuron: DynamicNeuron) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros_like(currents[0])
        syn = mem = rec = zeros
        spikes = []
        for current in currents:
            spike, syn, mem, rec = self.neuron(current, syn, mem, rec)
            spikes.append(spike)
        return torch.stack(spikes)


class MDCSpikingActor(PopSpikingActor):
    """MDC-SAN actor: PopSAN's encoder, layers and decoder with :class:`DynamicNeuron` populations."""

    def make_neuron_layer(self, spec: ActorSpec) -> nn.Module:
        return DynamicNeuronLayer(DynamicNeuron(spike_grad=make_surrogate(spec.surrogate)))


register_actor("mdcsan", MDCSpikingActor, spiking=True)
