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

    return _with_backward(
        surrogate.custom_surrogate(gradient),
        lambda shifted, grad: shifted.abs_().lt_(window).mul_(grad),
    )


# snnTorch's default surrogate constants, which make_surrogate uses.
ATAN_ALPHA = 2.0
FAST_SIGMOID_SLOPE = 25
TRIANGULAR_THRESHOLD = 1


def make_surrogate(kind: str = "rectangular") -> SurrogateFn:
    """Build the surrogate gradient named ``kind`` (one of :data:`SURROGATE_KINDS`).

    Each carries ``surrogate_backward(shifted, grad)``, the same arithmetic as its snnTorch
    backward, which :func:`lif_sequence` applies to all T steps at once without building an
    autograd graph (a graph per call costs more than the arithmetic at batch 256). It may
    overwrite ``shifted``.
    """
    if kind == "rectangular":
        return rectangular()
    if kind == "atan":
        return _with_backward(surrogate.atan(ATAN_ALPHA), _atan_backward)
    if kind == "fast_sigmoid":
        return _with_backward(
            surrogate.fast_sigmoid(FAST_SIGMOID_SLOPE),
            lambda shifted, grad: grad / (FAST_SIGMOID_SLOPE * torch.abs(shifted) + 1.0) ** 2,
        )
    if kind == "triangular":
        return _with_backward(surrogate.triangular(TRIANGULAR_THRESHOLD), _triangular_backward)
    raise ValueError(f"unknown surrogate {kind!r}; choose one of {', '.join(SURROGATE_KINDS)}")


def straight_through() -> SurrogateFn:
    """Return snnTorch's straight-through estimator (gradient 1 everywhere)."""
    return _with_backward(surrogate.straight_through_estimator(), lambda shifted, grad: grad)


def _with_backward(spike_grad: SurrogateFn, backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> SurrogateFn:
    spike_grad.surrogate_backward = backward  # type: ignore[attr-defined]
    return spike_grad


def _atan_backward(shifted: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return ATAN_ALPHA / 2 / (1 + (torch.pi / 2 * ATAN_ALPHA * shifted).pow_(2)) * grad


def _triangular_backward(shifted: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # 1 − 2·[v − θ ≥ 0] is the sign snnTorch applies. It is computed in floats because CPU
    # comparisons that write bool tensors ran several times slower here than float ones.
    return shifted.ge_(0).mul_(-2).add_(1).mul_(grad * TRIANGULAR_THRESHOLD)


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
    alpha = neuron.alpha if isinstance(neuron, snn.Synaptic) else None
    return lif_sequence(currents, neuron.beta, neuron.threshold, alpha, reset_kind(neuron), neuron.spike_grad)


RESET_KINDS = ("popsan", "snntorch_zero", "subtract")


def reset_kind(neuron: nn.Module) -> str:
    """Name the reset a fusable snnTorch neuron applies (see :func:`lif_sequence`)."""
    if neuron._reset_mechanism == "subtract":
        return "subtract"
    if isinstance(neuron, snn.Synaptic) and not isinstance(neuron, CurrentLIF):
        return "snntorch_zero"
    return "popsan"


def lif_sequence(
    currents: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    alpha: torch.Tensor | None,
    reset: str,
    spike_grad: SurrogateFn,
    time_dim: int = 0,
) -> torch.Tensor:
    """Step a leaky integrate-and-fire population over the ``time_dim`` axis of ``currents``; return spikes.

    With a current filter (``alpha`` given) c_t = α·c_{t−1} + I_t drives the membrane, else I_t does.
    ``reset`` picks the membrane update, o_{t−1} being the previous step's detached spikes:

    * ``popsan``: v_t = β·v_{t−1}·(1 − o_{t−1}) + c_t (snnTorch ``Leaky`` reset to zero, and
      :class:`CurrentLIF`);
    * ``snntorch_zero``: v_t = (β·v_{t−1} + c_t)·(1 − o_{t−1}) (snnTorch ``Synaptic`` reset to zero);
    * ``subtract``: v_t = β·v_{t−1} + c_t − o_{t−1}·θ.

    Spikes are o_t = H(v_t − θ), the forward pass of every snnTorch surrogate; gradients are
    ``spike_grad``'s. β and α are clamped to [0, 1] as snnTorch does. When none of β, α and θ
    needs a gradient, a custom autograd function runs the loop on preallocated buffers and
    back-propagates through time by hand. It applies autograd's operations in autograd's order,
    so spikes and gradients equal the autograd loop's bit for bit. Learned constants take the
    autograd loop.
    """
    if reset not in RESET_KINDS:
        raise ValueError(f"unknown reset {reset!r}; choose one of {', '.join(RESET_KINDS)}")
    beta = beta.clamp(0, 1)
    alpha = alpha.clamp(0, 1) if alpha is not None else None
    learned = any(t is not None and t.requires_grad for t in (beta, alpha, threshold))
    if learned:
        return _autograd_lif(currents.movedim(time_dim, 0), beta, threshold, alpha, reset, spike_grad).movedim(0, time_dim)
    return _LIFSequence.apply(currents, beta, threshold, alpha, reset, spike_grad, time_dim)


def _autograd_lif(
    currents: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    alpha: torch.Tensor | None,
    reset_kind_: str,
    spike_grad: SurrogateFn,
) -> torch.Tensor:
    syn = mem = torch.zeros_like(currents[0])
    reset = torch.zeros_like(currents[0])
    spikes = []
    for current in currents:
        drive = current
        if alpha is not None:
            syn = alpha * syn + current
            drive = syn

        if reset_kind_ == "subtract":
            mem = beta * mem + drive - reset * threshold
        elif reset_kind_ == "snntorch_zero":
            # snnTorch's own Synaptic reset to zero also drops this step's current after a spike.
            mem = (beta * mem + drive) * (1 - reset)
        else:
            mem = beta * mem * (1 - reset) + drive

        spike = spike_grad(mem - threshold)
        reset = spike.detach()
        spikes.append(spike)
    return torch.stack(spikes)


class _LIFSequence(torch.autograd.Function):
    """The loop of :func:`lif_sequence` with constant β, α, θ, and its back-propagation through time.

    Forward writes v_t, o_t and the leak left after the reset, m_t (β·(1 − o_t) for ``popsan``,
    1 − o_t for ``snntorch_zero``), into preallocated [T, ...] buffers. Products with m_t equal
    autograd's products with (1 − o_t) and β taken one after the other, because 1 − o_t is 0 or 1.

    Backward: the surrogate turns the spikes' gradient into each step's own membrane gradient for
    all T at once; the recurrence then only carries gradients back through the leak:
    ∂L/∂v_t = surrogate_t + ∂L/∂v_{t+1}·β·(1 − o_t) for ``popsan`` (for ``snntorch_zero`` the
    (1 − o_t) bracket is taken before β; for ``subtract`` there is none), and with a current
    filter ∂L/∂c_t = ∂L/∂v_t + α·∂L/∂c_{t+1}. Resets are detached, so no gradient crosses them.
    """

    @staticmethod
    def forward(ctx, currents, beta, threshold, alpha, reset, spike_grad, time_dim):  # type: ignore[override]
        output, membranes, leak = (torch.empty_like(currents) for _ in range(3))
        steps, spikes, mems, leaks = (t.movedim(time_dim, 0) for t in (currents, output, membranes, leak))
        # o_t is 0 or 1, so β + (−β)·o_t equals β·(1 − o_t) exactly: one scaled addition makes
        # the leak in one operation instead of two. Its scale must be a Python number, so it is
        # read once here from a 0-dim CPU β. Other β keep two operations: a device β would need a
        # host sync, and a wider β of shape (1,) would change the dtype the sum is computed in.
        negative_beta = -beta
        leak_scale = -float(beta) if beta.device.type == "cpu" and beta.dim() == 0 else None
        full_leak = torch.ones((), dtype=currents.dtype, device=currents.device) if reset == "snntorch_zero" else None

        syn = None
        for t in range(steps.shape[0]):
            drive = steps[t]
            if alpha is not None:
                syn = drive if syn is None else torch.mul(syn, alpha).add_(drive)
                drive = syn

            if t == 0:
                mems[0].copy_(drive)
            elif reset == "popsan":
                torch.mul(mems[t - 1], leaks[t - 1], out=mems[t]).add_(drive)
            elif reset == "snntorch_zero":
                torch.mul(mems[t - 1], beta, out=mems[t]).add_(drive).mul_(leaks[t - 1])
            else:
                # o·θ is exact (o is 0 or 1), so the fused multiply-add rounds like mem − o·θ.
                torch.mul(mems[t - 1], beta, out=mems[t]).add_(drive).addcmul_(spikes[t - 1], threshold, value=-1)

            torch.gt(mems[t], threshold, out=spikes[t])
            if reset == "popsan":
                if leak_scale is None:
                    torch.mul(spikes[t], negative_beta, out=leaks[t]).add_(beta)
                else:
                    torch.add(beta, spikes[t], alpha=leak_scale, out=leaks[t])
            elif reset == "snntorch_zero":
                torch.add(full_leak, spikes[t], alpha=-1, out=leaks[t])

        ctx.save_for_backward(membranes, leak, beta, threshold, alpha)
        ctx.reset, ctx.spike_grad, ctx.time_dim = reset, spike_grad, time_dim
        return output

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        membranes, leak, beta, threshold, alpha = ctx.saved_tensors
        surrogate_grad = _surrogate_gradient(ctx.spike_grad, membranes - threshold, grad_output)

        time_dim, reset = ctx.time_dim, ctx.reset
        grad_currents = torch.empty_like(surrogate_grad)
        local, leaks, grads = (t.movedim(time_dim, 0) for t in (surrogate_grad, leak, grad_currents))
        steps = local.shape[0]
        # Without a current filter ∂L/∂I_t is ∂L/∂v_t (times 1 − o_{t−1} for snntorch_zero), so
        # the membrane gradient can live in the output buffer.
        filtered = alpha is not None or reset == "snntorch_zero"
        grad_mem = torch.empty_like(local[0]) if filtered else None
        next_grad_mem = torch.empty_like(local[0]) if filtered else None

        for t in reversed(range(steps)):
            target = grad_mem if filtered else grads[t]
            if t == steps - 1:
                target.copy_(local[t])
            elif reset == "popsan":
                torch.mul(next_grad_mem if filtered else grads[t + 1], leaks[t], out=target).add_(local[t])
            elif reset == "snntorch_zero":
                torch.mul(next_grad_mem, leaks[t], out=target).mul_(beta).add_(local[t])
            else:
                torch.mul(next_grad_mem if filtered else grads[t + 1], beta, out=target).add_(local[t])

            if filtered:
                drive_grad = torch.mul(target, leaks[t - 1]) if reset == "snntorch_zero" and t > 0 else target
                if alpha is None:
                    grads[t].copy_(drive_grad)
                elif t == steps - 1:
                    grads[t].copy_(drive_grad)
                else:
                    torch.mul(grads[t + 1], alpha, out=grads[t]).add_(drive_grad)
                grad_mem, next_grad_mem = next_grad_mem, grad_mem
        return grad_currents, None, None, None, None, None, None


def _surrogate_gradient(spike_grad: SurrogateFn, shifted: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Return ``grad`` times the surrogate's derivative at ``shifted`` = v − θ."""
    backward = getattr(spike_grad, "surrogate_backward", None)
    if backward is not None:
        return backward(shifted, grad)

    with torch.enable_grad():
        shifted = shifted.detach().requires_grad_()
        (result,) = torch.autograd.grad(spike_grad(shifted), shifted, grad)
    return result


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
