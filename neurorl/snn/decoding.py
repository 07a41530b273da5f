"""Population decoder (PopSAN, Tang et al., CoRL 2020).

Each action dimension k reads the firing rates fr_k (spike count / T) of its own ``pop_size``
output neurons through its own weights: a_k = W_k·fr_k + b_k, a grouped Conv1d with one group per
action dimension. The firing rates are real-valued, so the energy counter books this layer as MACs.
"""

from __future__ import annotations

import torch
from torch import nn


class PopulationDecoder(nn.Module):
    """Decode firing rates [B, act_dim·pop_size] into pre-activation actions [B, act_dim]."""

    def __init__(self, act_dim: int, pop_size: int = 10) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.pop_size = pop_size
        self.conv = nn.Conv1d(act_dim, act_dim, kernel_size=pop_size, groups=act_dim)
        self.conv.input_kind = "dense"

    def forward(self, firing_rate: torch.Tensor) -> torch.Tensor:
        grouped = firing_rate.view(-1, self.act_dim, self.pop_size)
        return self.conv(grouped).view(-1, self.act_dim)
