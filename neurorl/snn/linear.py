"""Linear layers whose large products run on oneDNN instead of the BLAS library.

PyTorch computes ``F.linear`` on the CPU with its BLAS library (MKL in the x86_64 wheels). On a
2-core AMD EPYC VM with AVX-512, MKL's float32 product reached about 107 GFLOP/s on one core, and
setting MKL_ENABLE_INSTRUCTIONS=AVX512 did not change that. oneDNN, PyTorch's other CPU kernel
library, reached about 227 GFLOP/s for the same [256, 256] x [256, 256] product
(``python tools/bench_layers.py --json``, entry ``linear``).

This module sends the forward product and both backward products of a layer to oneDNN when the
product is large enough to pay for oneDNN's fixed cost per call (about 10 µs), and everything
else to ``F.linear`` and ``torch.mm``:

    y = x Wᵀ + b,    ∂L/∂x = g W,    ∂L/∂W = gᵀ x,    ∂L/∂b = Σ_rows g

The two libraries sum in different orders, so results agree to float32 rounding, not bit for bit.
The backend is a process-wide setting (:func:`set_backend`, ``--linear-backend``): ``"auto"``
uses oneDNN where this PyTorch build has it, ``"blas"`` always uses ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

BACKENDS = ("auto", "onednn", "blas")

# Products of fewer multiply-accumulates (rows · in · out) run on BLAS, because below about 2**19
# oneDNN's fixed cost per call outweighs its faster kernel. In tools/bench_layers.py (entry
# linear), 256 rows of 256 → 3 took 18 µs forward with F.linear and 20 µs on oneDNN. 256 rows of
# 14 → 256 (917,504 MACs) took 178 µs forward+backward with F.linear and 170 µs on oneDNN.
ONEDNN_MIN_MACS = 2**19

# Set by set_backend("auto") at the end of this module.
_use_onednn = False


def onednn_available() -> bool:
    """Return whether this PyTorch build can run a dense float32 linear product on oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return False
    return True


def set_backend(name: str) -> str:
    """Choose where large linear products run in this process; return the backend now in use.

    ``"auto"`` resolves to ``"onednn"`` where :func:`onednn_available`, else ``"blas"``.
    """
    # NOTE: "auto" prefers oneDNN on every CPU, but oneDNN's lead was measured only on AMD EPYC.
    # On other processors, Intel's included, MKL may be as fast, which is unmeasured.
    global _use_onednn
    if name not in BACKENDS:
        raise ValueError(f"linear backend {name!r} is unknown; use one of {', '.join(BACKENDS)}")
    if name == "onednn" and not onednn_available():
        raise ValueError("linear backend 'onednn': this PyTorch build has no oneDNN linear product; use 'blas' or 'auto'")
    _use_onednn = name == "onednn" or (name == "auto" and onednn_available())
    return current_backend()


def current_backend() -> str:
    """Return ``"onednn"`` or ``"blas"``: where large linear products run now."""
    return "onednn" if _use_onednn else "blas"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``F.linear(x, weight, bias)``, computed on oneDNN when the backend and the product allow it."""
    if not onednn_applies(x, weight, bias):
        return F.linear(x, weight, bias)
    x2d = x.reshape(-1, x.shape[-1])
    needs_graph = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    y = _OneDNNLinear.apply(x2d, weight, bias) if needs_graph else linear_product(x2d, weight, bias)
    return y.view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear`: the same parameters, state dict and initialisation."""

    # The forward pass is exactly x·Wᵀ + b on its one input, so the energy counter may treat a
    # chain of these like a chain of nn.Linear layers.
    computes_linear_map = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def onednn_applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Return whether :func:`linear` sends this product to oneDNN: backend, dtype, device and size allow it."""
    # The size test comes first because it rejects the acting calls (one observation) cheaply.
    if not _use_onednn or weight.dim() != 2 or x.numel() * weight.shape[0] < ONEDNN_MIN_MACS:
        return False
    # Compiled graphs and autocast regions keep F.linear, which they know how to trace or cast.
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    if x.dtype is not torch.float32 or weight.dtype is not torch.float32 or x.device.type != "cpu":
        return False
    if x.dim() < 2 or weight.device.type != "cpu" or x.shape[-1] != weight.shape[1]:
        return False
    return bias is None or (bias.dtype is torch.float32 and bias.device.type == "cpu" and bias.shape == weight.shape[:1])


def linear_product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Return a bᵀ (+ bias) for float32 CPU matrices a [m, k] and b [n, k], on oneDNN for large products.

    Only for callers that checked :func:`onednn_applies`: it does not test the backend setting.
    """
    if a.numel() * b.shape[0] >= ONEDNN_MIN_MACS:
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    if bias is None:
        return torch.mm(a, b.t())
    return torch.addmm(bias, a, b.t())


class _OneDNNLinear(torch.autograd.Function):
    """x Wᵀ + b on a 2-d input, with each backward product sent to the faster library for its size."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return linear_product(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = linear_product(grad, weight.t(), None) if ctx.needs_input_grad[0] else None
        grad_weight = linear_product(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


set_backend("auto")
