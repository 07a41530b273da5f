"""Q-function networks."""

from __future__ import annotations

import torch
from torch import nn


class MLPCritic(nn.Module):
    """Q(s, a): ReLU MLP on the concatenated normalised state and action."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden, 1]
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(fan_in, fan_out)
            linear.input_kind = "dense"
            layers.append(linear)
            if index < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)
