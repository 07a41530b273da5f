"""Spiking neurons and surrogate gradients, all built on snnTorch.

Two hidden-layer neurons are offered:

``leaky``
    snnTorch ``Leaky`` with reset to zero: v_t = β·v_{t−1}·(1 − o_{t−1}) + I_t, o_t = H(v_t − θ),
    with β = 0.75 and θ = 0.5 (PopSAN's membrane constants without its current filter).

``clif``
    PopSAN's current-based LIF (Tang et al., CoRL 2020):
    c_t = α·c_{t−1} + I_t,  v_t = β·v_{t−1}·(1 − o_{t−1}) + c_t,  o_t = H(v_t − θ),
    α = 0.5, β = 0.75, θ = 0.5. snnTorch's ``Synaptic`` with reset "zero" computes
    v_t = (β·v_{t−1} + c_t)·(1 − o_{t−1}) instead, which also drops the current of the step after
    a spike, so :class:`CurrentLIF` overrides only that reset step.

Spikes use the strict test v_t − θ > 0 in both. The default surrogate gradient is PopSAN's
rectangular window: ∂o/∂v = 1 where |v − θ| < 0.5, else 0.
"""

from __future__ import annotations

from typing import Callable

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

SurrogateFn = Callable[[torch.Tensor], torch.Tensor]

NEURON_KINDS = ("leaky", "clif")
SURROGATE_KINDS = ("rectangular", "atan", "fast_sigmoid", "triangular")

POPSAN_ALPHA = 0.5
POPSAN_BETA = 0.75
POPSAN_THRESHOLD = 0.5
POPSAN_GRAD_WINDOW = 0.5


def rectangular(window: float = POPSAN_GRAD_WINDOW) -> SurrogateFn:
    """Return PopSAN's rectangular pseudo-gradient: 1 inside |v − θ| < window, 0 outside."""

    def gradient(shifted_mem: torch.Tensor, grad_output: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        return grad_output * (shifted_mem.abs() < window).to(grad_output.dtype)

    return surrogate.custom_surrogate(gradient)


def make_surrogate(kind: str = "rectangular") -> SurrogateFn:
    """Build the surrogate gradient named ``kind`` (one of :data:`SURROGATE_KINDS`)."""
    if kind == "rectangular":
        return rectangular()
    if kind == "atan":
        return surrogate.atan()
    if kind == "fast_sigmoid":
        return surrogate.fast_sigmoid()
    if kind == "triangular":
        return surrogate.triangular()
    raise ValueError(f"unknown surrogate {kind!r}; choose one of {', '.join(SURROGATE_KINDS)}")


class CurrentLIF(snn.Synaptic):
    """PopSAN's current-based LIF neuron as an snnTorch ``Synaptic`` subclass.

    c_t = α·c_{t−1} + I_t;  v_t = β·v_{t−1}·(1 − o_{t−1}) + c_t;  o_t = H(v_t − θ).
    ``self.reset`` is snnTorch's detached o_{t−1}, computed from the previous membrane potential
    before this step's update, so the reset applies to v_{t−1} only and c_t always reaches v_t.
    """

    def __init__(
        self,
        alpha: float = POPSAN_ALPHA,
        beta: float = POPSAN_BETA,
        threshold: float = POPSAN_THRESHOLD,
        spike_grad: SurrogateFn | None = None,
    ) -> None:
        super().__init__(
            alpha=alpha,
            beta=beta,
            threshold=threshold,
            spike_grad=spike_grad if spike_grad is not None else rectangular(),
            reset_mechanism="zero",
        )

    def _base_zero(self, input_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        syn = self.alpha.clamp(0, 1) * self.syn + input_
        mem = self.beta.clamp(0, 1) * self.mem * (1 - self.reset) + syn
        return syn, mem


class NeuronLayer(nn.Module):
    """A population of one snnTorch neuron model stepped over T: currents [T, B, N] → spikes [T, B, N].

    The energy counter books numel(spikes) neuron updates per call under ``neuron_model`` (the
    snnTorch class name), because the fused loop never calls the wrapped neuron's own forward.
    """

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.neuron = neuron
        self.neuron_model = type(neuron).__name__

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        return _step_neuron(self.neuron, currents)


def make_neuron(kind: str, surrogate_kind: str = "rectangular") -> NeuronLayer:
    """Build one hidden-layer neuron population of ``kind`` (``leaky`` or ``clif``)."""
    spike_grad = make_surrogate(surrogate_kind)
    if kind == "leaky":
        neuron = snn.Leaky(
            beta=POPSAN_BETA,
            threshold=POPSAN_THRESHOLD,
            spike_grad=spike_grad,
            reset_mechanism="zero",
        )
        return NeuronLayer(neuron)
    if kind == "clif":
        return NeuronLayer(CurrentLIF(spike_grad=spike_grad))
    raise ValueError(f"unknown neuron {kind!r}; choose one of {', '.join(NEURON_KINDS)}")


def run_neuron(neuron: nn.Module, currents: torch.Tensor) -> torch.Tensor:
    """Step a :class:`NeuronLayer` or a bare snnTorch neuron over currents [T, B, N]; return spikes.

    Prefer a :class:`NeuronLayer`: called as a module, its neuron updates reach the energy counter.
    """
    if isinstance(neuron, NeuronLayer):
        return neuron(currents)
    return _step_neuron(neuron, currents)


def _step_neuron(neuron: nn.Module, currents: torch.Tensor) -> torch.Tensor:
    """Step ``neuron`` over currents of shape [T, B, N] from a zero state; return spikes [T, B, N].

    The state starts from zeros at every call, so nothing leaks between forward calls even when
    consecutive batches share a shape (snnTorch keeps the last state otherwise). snnTorch ``Leaky``,
    ``Synaptic`` and :class:`CurrentLIF` run through :func:`_fused_loop`, which applies the same
    equations with the neuron's own parameters and surrogate but without the per-step module
    overhead (about 250 µs per snnTorch call on a 2-core x86_64 CPU); other neurons are stepped
    through their own forward.
    """
    if _fusable(neuron):
        return _fused_loop(neuron, currents)
    return _module_loop(neuron, currents)


def _fusable(neuron: nn.Module) -> bool:
    if type(neuron) not in (snn.Leaky, snn.Synaptic, CurrentLIF):
        return False
    plain = not neuron.inhibition and not neuron.state_quant and neuron.reset_delay
    return plain and neuron._reset_mechanism in ("zero", "subtract") and float(neuron.graded_spikes_factor) == 1.0


def _fused_loop(neuron: nn.Module, currents: torch.Tensor) -> torch.Tensor:
    """Apply snnTorch's update order: reset from o_{t−1}, integrate, fire on v_t − θ > 0."""
    beta = neuron.beta.clamp(0, 1)
    threshold = neuron.threshold
    subtract = neuron._reset_mechanism == "subtract"
    synaptic = isinstance(neuron, snn.Synaptic)
    popsan_order = isinstance(neuron, CurrentLIF)
    alpha = neuron.alpha.clamp(0, 1) if synaptic else None

    syn = mem = torch.zeros_like(currents[0])
    reset = torch.zeros_like(currents[0])
    spikes = []
    for current in currents:
        if synaptic:
            syn = alpha * syn + current
            drive = syn
        else:
            drive = current

        if subtract:
            mem = beta * mem + drive - reset * threshold
        elif popsan_order:
            mem = beta * mem * (1 - reset) + drive
        elif synaptic:
            # snnTorch's own Synaptic reset to zero also drops this step's current after a spike.
            mem = (beta * mem + drive) * (1 - reset)
        else:
            mem = beta * mem * (1 - reset) + drive

        spike = neuron.spike_grad(mem - threshold)
        reset = spike.detach()
        spikes.append(spike)
    return torch.stack(spikes)


def _module_loop(neuron: nn.Module, currents: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros_like(currents[0])
    spikes = []
    if isinstance(neuron, snn.Synaptic):
        syn, mem = zeros, zeros
        for current in currents:
            spike, syn, mem = neuron(current, syn, mem)
            spikes.append(spike)
    else:
        mem = zeros
        for current in currents:
            spike, mem = neuron(current, mem)
            spikes.append(spike)
    _clear_state(neuron)
    return torch.stack(spikes)


def _clear_state(neuron: nn.Module) -> None:
    for name in ("mem", "syn"):
        if hasattr(neuron, name):
            setattr(neuron, name, torch.zeros(0, device=getattr(neuron, name).device))
