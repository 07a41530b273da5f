"""Critic regression losses: the squared TD error and a truncated variant.

``td_loss(q, target, weights, kind="mse")`` is mean(w·(q − y)²), the loss TD3Agent uses for each
critic. ``kind="truncated"`` clips the TD error δ = q − y at ±clip inside the gradient, the error
clipping of DQN (Mnih et al., Nature 2015): the loss is δ² for |δ| ≤ clip and 2·clip·|δ| − clip²
beyond, so its gradient 2·w·clamp(δ, −clip, clip) never exceeds 2·w·clip per sample and a few
large TD errors (for example from a spiking critic at T = 1, whose Q-values jump with single
spikes) cannot dominate an update. Inside the bound it equals ``mse`` exactly.

Xu et al. (IEEE TPAMI 2026, resilient experience replay) report that a truncated TD loss helps
their SpikingQ critic at T = 1 but not at T = 10, without publishing its form or bound; this is
one standard reading of "truncated", not their design.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

TD_LOSS_KINDS = ("mse", "truncated")
DEFAULT_TD_CLIP = 1.0


def td_loss(
    q: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    kind: str = "mse",
    clip: float = DEFAULT_TD_CLIP,
) -> torch.Tensor:
    """Return the weighted mean TD loss of predictions ``q`` [B] against fixed ``target`` [B].

    :param weights: importance weights [B] (None means ones).
    :param kind: ``mse`` (squared TD error) or ``truncated`` (TD error clipped at ±``clip`` in
        the gradient).
    :param clip: bound on |δ| for ``truncated``; ignored by ``mse``.
    :raises ValueError: on an unknown ``kind``, a non-positive ``clip`` or mismatched shapes.
    """
    if kind not in TD_LOSS_KINDS:
        raise ValueError(f"unknown TD loss {kind!r}; choose one of {', '.join(TD_LOSS_KINDS)}")
    if kind == "truncated" and not clip > 0:
        raise ValueError(f"truncated TD loss needs clip > 0, got {clip}")
    if q.shape != target.shape:
        raise ValueError(f"q of shape {tuple(q.shape)} and target of shape {tuple(target.shape)} must match")
    if weights is not None and weights.shape != q.shape:
        raise ValueError(f"weights of shape {tuple(weights.shape)} must match q of shape {tuple(q.shape)}")

    if kind == "mse":
        per_sample = (q - target) ** 2
    else:
        # Huber's loss is ½δ² inside the bound and clip·(|δ| − ½clip) outside; twice it has the
        # squared error's scale and the clipped gradient.
        per_sample = 2.0 * F.huber_loss(q, target, reduction="none", delta=float(clip))

    if weights is not None:
        per_sample = weights * per_sample
    return per_sample.mean()


def compile_loss(loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile ``loss_fn`` with ``torch.compile`` (Inductor) for fixed input shapes.

    The training batch never changes shape, so shapes are static. The first call traces and
    compiles the forward and backward graphs, which took about 20-50 s on a 2-core CPU.
    """
    return torch.compile(loss_fn, dynamic=False)
