"""Population decoder (PopSAN, Tang et al., CoRL 2020).

Each action dimension k reads the firing rates fr_k (spike count / T) of its own ``pop_size``
output neurons through its own weights: a_k = W_k·fr_k + b_k, a grouped Conv1d with one group per
action dimension. The firing rates are real-valued, so the energy counter books this layer as MACs.
"""

from __future__ import annotations

import torch
from torch import nn


# Kernels up to this length are summed slice by slice in depthwise_dot.
SLICED_KERNEL_MAX = 4


def depthwise_dot(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Return a depthwise Conv1d whose kernel spans the whole input: out[b, c] = Σ_k w[c, k]·x[b, c, k] + b[c].

    ``x`` is [B, C, K], ``weight`` [C, 1, K] and ``bias`` [C] or None. The result is [B, C, 1],
    as ``F.conv1d(x, weight, bias, groups=C)`` returns it. On CPU (torch 2.13, oneDNN) that
    convolution took 113 µs forward and 445 µs forward and backward for the 6 x 10 decoder of one
    sample, this product and sum 24 µs and 176 µs (``python tools/bench_layers.py``).
    """
    kernels = weight.view(weight.shape[0], weight.shape[-1])
    length = kernels.shape[1]
    if length <= SLICED_KERNEL_MAX:
        # Summed over its last dimension, BPT-SAN's lateral layer ([256, 256, 2]) took 497 µs forward,
        # slower than nn.Conv1d's 330 µs. Added slice by slice it takes 162 µs (tools/bench_layers.py).
        out = x[..., 0] * kernels[:, 0]
        for k in range(1, length):
            out = out + x[..., k] * kernels[:, k]
        out = out.unsqueeze(-1)
    else:
        out = (x * kernels).sum(-1, keepdim=True)
    return out if bias is None else out + bias.unsqueeze(-1)


def covering_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Return ``F.conv1d(x, weight, bias, groups=C)`` for x [B, C, K] with one input channel per group and a kernel of length K.

    ``weight`` is [C·Q, 1, K] and the result [B, C·Q, 1], so group c maps its K inputs to Q
    outputs. Q = 1 is :func:`depthwise_dot`. Q > 1 is one batched matrix product over the C groups,
    which took 0.44 ms instead of oneDNN's 2.4 ms forward and backward for ILC-SAN's 6 populations
    of 10 at batch 256 (``python tools/bench_layers.py`` on a 2-core x86_64 VM).
    """
    batch, groups, length = x.shape
    per_group = weight.shape[0] // groups
    if per_group == 1:
        return depthwise_dot(x, weight, bias)
    kernels = weight.view(groups, per_group, length).transpose(1, 2)
    out = torch.bmm(x.transpose(0, 1), kernels).transpose(0, 1).reshape(batch, groups * per_group, 1)
    return out if bias is None else out + bias.unsqueeze(-1)


class CoveringConv1d(nn.Conv1d):
    """A grouped ``nn.Conv1d`` with one input channel per group, computed by :func:`covering_conv1d` when its kernel covers the input.

    It stays an ``nn.Conv1d`` with the same parameters, so checkpoints, the energy counter and
    NeuroBench treat it as one. Any other input (longer than the kernel, of another channel count
    or dtype, or after its padding, dilation or groups were changed) takes ``nn.Conv1d.forward``,
    which also raises on invalid inputs.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        covers = (
            input.dim() == 3
            and input.shape[1] == self.in_channels
            and input.dtype == self.weight.dtype
            and input.shape[-1] == self.kernel_size[0]
            and self.groups == self.in_channels
            and self.out_channels % self.groups == 0
            and self.padding == (0,)
            and self.dilation == (1,)
        )
        if covers:
            return covering_conv1d(input, self.weight, self.bias)
        return super().forward(input)


class PopulationDecoder(nn.Module):
    """Decode firing rates [B, act_dim·pop_size] into pre-activation actions [B, act_dim]."""

    def __init__(self, act_dim: int, pop_size: int = 10) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.pop_size = pop_size
        self.conv = CoveringConv1d(act_dim, act_dim, kernel_size=pop_size, groups=act_dim)
        self.conv.input_kind = "dense"

    def forward(self, firing_rate: torch.Tensor) -> torch.Tensor:
        grouped = firing_rate.view(-1, self.act_dim, self.pop_size)
        return self.conv(grouped).view(-1, self.act_dim)
