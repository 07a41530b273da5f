"""Entropy of TD3's exploration distribution, for comparing policies with and without resilient replay.

TD3 acts with a = clip(μ(s) + ε, −1, 1), ε ~ N(0, σ²I). Clipping puts probability mass
p⁻ = Φ((−1 − μ)/σ) exactly on −1 and p⁺ = 1 − Φ((1 − μ)/σ) exactly on +1, so the action has no
density and its differential entropy is −∞. :func:`clipped_gaussian_entropy` therefore returns
the Shannon entropy of the action quantised to bins of width Δ (``resolution``), in the small-Δ
form H(X_Δ) ≈ h(X) − log Δ for the continuous part. Per action dimension, with z = (x − μ)/σ,
a = (−1 − μ)/σ, b = (1 − μ)/σ, P = Φ(b) − Φ(a) the mass inside (−1, 1), φ and Φ the standard
normal density and CDF:

    H = −p⁻·log p⁻ − p⁺·log p⁺ + P·(log(σ√(2π)) − log Δ) + ½·[P − (b·φ(b) − a·φ(a))]

summed over action dimensions (the noise is independent per dimension) and averaged over the
given states. Far from the bounds it is ½·log(2πeσ²) − log Δ per dimension. It falls when the
policy's actions approach ±1, because clipping collapses mass there into a single bin. With Δ = 1 it is
the entropy relative to Lebesgue measure plus unit point masses at ±1, where a point mass can
outweigh a narrow Gaussian, so a resolution much finer than σ is the meaningful choice.

The value is in nats per state. It is comparable between TD3 runs with the same σ and Δ, not with
SAC's differential entropy of a tanh-squashed Gaussian (``SACAgent.policy_entropy``). Xu et al.
(IEEE TPAMI 2026) report a policy-entropy change below 0.015 when resilient replay is added, but
do not publish how they measured it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, xlogy

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
DEFAULT_RESOLUTION = 0.01


def clipped_gaussian_entropy(
    mean_actions: np.ndarray, noise_std: float, resolution: float = DEFAULT_RESOLUTION
) -> float:
    """Return the mean entropy (nats) of clip(μ + N(0, σ²I), −1, 1), quantised at ``resolution``, over states.

    :param mean_actions: deterministic actions μ(s), shape [N, act_dim] (N, act_dim ≥ 1).
    :param noise_std: exploration noise σ > 0 (TD3's ``exploration_noise``).
    :param resolution: bin width Δ > 0 of the quantised action, in action units.
    :raises ValueError: on an empty or non-2-D array, NaN actions, or a non-positive σ or Δ.
    """
    mean = np.asarray(mean_actions, dtype=np.float64)
    if mean.ndim != 2 or mean.shape[0] == 0 or mean.shape[1] == 0:
        raise ValueError(f"mean_actions must have shape [N, act_dim] with N, act_dim ≥ 1, got {mean.shape}")
    if np.isnan(mean).any():
        raise ValueError(f"mean_actions contains {int(np.isnan(mean).sum())} NaN values; evaluate the policy on valid states")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive, got {noise_std}")
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")

    per_dimension = _entropy_per_dimension(mean, float(noise_std), float(resolution))
    return float(per_dimension.sum(axis=1).mean())


def clipped_gaussian_log_prob(
    actions: np.ndarray, mean_actions: np.ndarray, noise_std: float, resolution: float = DEFAULT_RESOLUTION
) -> np.ndarray:
    """Return the log-probability of each clipped action's bin, summed over dimensions: log p⁻ at
    −1, log p⁺ at +1, log(φ(z)·Δ/σ) inside.

    −mean(log-probability) over samples of the clipped Gaussian estimates
    :func:`clipped_gaussian_entropy`.
    """
    a = np.asarray(actions, dtype=np.float64)
    mean = np.asarray(mean_actions, dtype=np.float64)
    sigma = float(noise_std)

    lower_mass = ndtr((-1.0 - mean) / sigma)
    upper_mass = 1.0 - ndtr((1.0 - mean) / sigma)
    z = (a - mean) / sigma
    interior = -0.5 * z * z - _LOG_SQRT_2PI - math.log(sigma) + math.log(resolution)
    with np.errstate(divide="ignore"):
        log_prob = np.where(a <= -1.0, np.log(lower_mass), np.where(a >= 1.0, np.log(upper_mass), interior))
    return log_prob.sum(axis=-1)


def _entropy_per_dimension(mean: np.ndarray, sigma: float, resolution: float) -> np.ndarray:
    a = (-1.0 - mean) / sigma
    b = (1.0 - mean) / sigma
    lower_mass = ndtr(a)
    upper_mass = 1.0 - ndtr(b)
    inside = ndtr(b) - ndtr(a)

    point_masses = -xlogy(lower_mass, lower_mass) - xlogy(upper_mass, upper_mass)
    log_scale = (_LOG_SQRT_2PI + math.log(sigma) - math.log(resolution)) * inside
    quadratic = 0.5 * (inside - (b * _normal_pdf(b) - a * _normal_pdf(a)))
    return point_masses + log_scale + quadratic


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z - _LOG_SQRT_2PI)
