"""Q-function networks."""

from __future__ import annotations

import torch
from torch import nn

from neurorl.snn.actors import dense_mlp


class MLPCritic(nn.Module):
    """Q(s, a): ReLU MLP on the concatenated normalised state and action."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        self.net = dense_mlp([obs_dim + act_dim, *hidden, 1])

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)
