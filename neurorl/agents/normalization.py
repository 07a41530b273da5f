"""Running observation normalisation, as PopSAN applies it: (s − mean) / std, clipped to ±3."""

from __future__ import annotations

import numpy as np
import torch

CLIP = 3.0
EPSILON = 1e-8


class RunningNormalizer:
    """Running mean and variance of observations (Chan et al. parallel update), applied in torch.

    Statistics are kept in float64 on the host; the torch copies used by :meth:`normalize` are
    refreshed only after an update, so a batch of updates sees one fixed normalisation.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu", clip: float = CLIP) -> None:
        self.dim = dim
        self.clip = clip
        self.device = torch.device(device)
        self.mean = np.zeros(dim, dtype=np.float64)
        self.var = np.ones(dim, dtype=np.float64)
        self.count = 0.0
        self._torch_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, batch: np.ndarray) -> None:
        """Fold observations of shape [dim] or [N, dim] into the statistics."""
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, self.dim)
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)

        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * batch_count / total
        combined = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = combined / total
        self.count = total
        self._torch_stats = None

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Return (obs − mean) / std clipped to ±clip; obs is a float32 tensor on ``device``."""
        if self._torch_stats is None:
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=self.device)
            std = torch.as_tensor(np.sqrt(self.var + EPSILON), dtype=torch.float32, device=self.device)
            self._torch_stats = (mean, std)
        mean, std = self._torch_stats
        return ((obs - mean) / std).clamp(-self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        self.var = np.asarray(state["var"], dtype=np.float64).copy()
        self.count = float(state["count"])
        self._torch_stats = None
