"""Policy-buffer discrepancy measures of resilient experience replay.

Resilient experience replay (Xu, Chen, Liu, Lin, Li, Wang, IEEE TPAMI 48(4), 2026) compares
the current policy with a mini-batch D' of stored transitions. Stored points are
p_i = β·(s_i ⊕ a_i) and queries are q_i = β·(s_i ⊕ â_i) with â_i = π(s_i).

- `kd_tree_discrepancy` builds a scipy KD-tree on the stored points and sums (or averages) the
  distance from each query to its nearest stored point.
- `direct_discrepancy` compares each query with its own stored point: ‖β_a·(â_i − a_i)‖, because
  the state parts cancel.

The nearest stored point of q_i is never farther than p_i, so the KD-tree Dis is at most the
direct Dis for the same inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import KDTree

from neurorl.replay._validation import first_non_finite

REDUCTIONS = ("sum", "mean")


def kd_tree_discrepancy(
    states: np.ndarray,
    stored_actions: np.ndarray,
    predicted_actions: np.ndarray,
    beta: float | np.ndarray = 1.0,
    reduction: str = "sum",
) -> float:
    """Compute Dis with a KD-tree built on the stored points β·(s ⊕ a).

    Args:
        states: States s_i of D', shape [N, obs_dim].
        stored_actions: Actions a_i stored with those states, shape [N, act_dim].
        predicted_actions: Actions â_i = π(s_i) of the current policy, shape [N, act_dim].
        beta: Scale β, a positive scalar or one positive value per point dimension
            (obs_dim + act_dim).
        reduction: "sum" (as Xu et al. write Dis) or "mean" of the N nearest-neighbour distances.

    Returns:
        Dis as a Python float.
    """
    validate_reduction(reduction)
    distances = kd_tree_distances(states, stored_actions, predicted_actions, beta)
    return _reduce(distances, reduction)


def direct_discrepancy(
    states: np.ndarray,
    stored_actions: np.ndarray,
    predicted_actions: np.ndarray,
    beta: float | np.ndarray = 1.0,
    reduction: str = "sum",
) -> float:
    """Compute Dis by comparing each prediction with its own stored action, ‖β_a·(â_i − a_i)‖.

    Takes the same arguments as `kd_tree_discrepancy`; the states only fix the shape of β.
    """
    validate_reduction(reduction)
    distances = direct_distances(states, stored_actions, predicted_actions, beta)
    return _reduce(distances, reduction)


def kd_tree_distances(
    states: np.ndarray,
    stored_actions: np.ndarray,
    predicted_actions: np.ndarray,
    beta: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Return each query's Euclidean distance to its nearest stored point, float64 [N]."""
    s, a, a_hat, scale = _validated(states, stored_actions, predicted_actions, beta)
    stored_points = np.concatenate([s, a], axis=1) * scale
    query_points = np.concatenate([s, a_hat], axis=1) * scale

    tree = KDTree(stored_points)
    distances, _ = tree.query(query_points, k=1, workers=1)
    return np.asarray(distances, dtype=np.float64)


def direct_distances(
    states: np.ndarray,
    stored_actions: np.ndarray,
    predicted_actions: np.ndarray,
    beta: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Return ‖β_a·(â_i − a_i)‖ for every pair, float64 [N]."""
    s, a, a_hat, scale = _validated(states, stored_actions, predicted_actions, beta)
    action_scale = scale[..., s.shape[1]:] if scale.ndim else scale
    return np.linalg.norm((a_hat - a) * action_scale, axis=1)


def _reduce(distances: np.ndarray, reduction: str) -> float:
    if reduction == "sum":
        return float(np.sum(distances))
    return float(np.mean(distances))


def _validated(
    states: Any, stored_actions: Any, predicted_actions: Any, beta: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convert the inputs to float64 and raise ValueError on wrong shapes or values."""
    s = _as_matrix("states", states)
    a = _as_matrix("stored_actions", stored_actions)
    a_hat = _as_matrix("predicted_actions", predicted_actions)

    if a.shape != a_hat.shape:
        raise ValueError(
            f"stored_actions has shape {a.shape} but predicted_actions has shape {a_hat.shape}; "
            "pass one predicted action per stored action"
        )
    if s.shape[0] != a.shape[0]:
        raise ValueError(
            f"states has {s.shape[0]} rows but the actions have {a.shape[0]}; "
            "pass one state per action"
        )
    if s.shape[0] == 0:
        raise ValueError("states is empty (0 rows); Dis needs at least one transition")

    scale = _as_scale(beta, s.shape[1] + a.shape[1])
    return s, a, a_hat, scale


def _as_matrix(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [N, dim], got shape {array.shape}; "
            "reshape single samples to [1, dim]"
        )
    if not np.isfinite(array).all():
        raise ValueError(first_non_finite(name, array) + "; Dis is defined for finite inputs only")
    return array


def _as_scale(beta: Any, point_dim: int) -> np.ndarray:
    scale = np.asarray(beta, dtype=np.float64)
    if scale.ndim == 0:
        ok = bool(np.isfinite(scale)) and float(scale) > 0.0
    else:
        ok = scale.shape == (point_dim,) and bool(np.all(np.isfinite(scale) & (scale > 0.0)))
    if not ok:
        raise ValueError(
            f"beta must be a positive finite scalar or an array of {point_dim} positive finite "
            f"values (obs_dim + act_dim), got {beta!r}"
        )
    return scale


def validate_reduction(reduction: Any) -> None:
    """Raise ValueError unless reduction is "sum" or "mean"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
