"""Discrepancy measures against brute-force numpy computations."""

from __future__ import annotations

import numpy as np
import pytest

from neurorl.replay import direct_discrepancy, kd_tree_discrepancy
from neurorl.replay.discrepancy import direct_distances, kd_tree_distances


def brute_force_nearest(states, stored, predicted, scale):
    """Return each query's distance to its nearest stored point from all pairwise distances."""
    points = np.concatenate([states, stored], axis=1) * scale
    queries = np.concatenate([states, predicted], axis=1) * scale
    pairwise = np.sqrt(((queries[:, None, :] - points[None, :, :]) ** 2).sum(axis=2))
    return pairwise.min(axis=1)


def brute_force_direct(states, stored, predicted, scale):
    """Return ‖β·((s ⊕ â) − (s ⊕ a))‖ per row, computed on the full points."""
    points = np.concatenate([states, stored], axis=1) * scale
    queries = np.concatenate([states, predicted], axis=1) * scale
    return np.sqrt(((queries - points) ** 2).sum(axis=1))


def random_case(rng, n=64, obs_dim=5, act_dim=3, spread=1.0):
    states = rng.normal(size=(n, obs_dim)) * spread
    stored = rng.uniform(-1, 1, size=(n, act_dim))
    predicted = rng.uniform(-1, 1, size=(n, act_dim))
    return states, stored, predicted


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kd_tree_matches_all_pairs(seed, reduction):
    rng = np.random.default_rng(seed)
    states, stored, predicted = random_case(rng, spread=0.3)
    expected = brute_force_nearest(states, stored, predicted, 1.0)
    reduce = np.sum if reduction == "sum" else np.mean

    result = kd_tree_discrepancy(states, stored, predicted, reduction=reduction)

    assert result == pytest.approx(float(reduce(expected)), rel=1e-12)


def test_kd_tree_distances_per_query():
    rng = np.random.default_rng(3)
    states, stored, predicted = random_case(rng, n=40, spread=0.2)
    scale = rng.uniform(0.5, 2.0, size=8)

    distances = kd_tree_distances(states, stored, predicted, scale)

    np.testing.assert_allclose(distances, brute_force_nearest(states, stored, predicted, scale),
                               rtol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 0.25, "vector"])
def test_direct_matches_numpy(beta):
    rng = np.random.default_rng(4)
    states, stored, predicted = random_case(rng)
    scale = rng.uniform(0.1, 3.0, size=8) if beta == "vector" else beta

    expected = brute_force_direct(states, stored, predicted, scale)

    assert direct_discrepancy(states, stored, predicted, scale) == pytest.approx(expected.sum())
    assert direct_discrepancy(states, stored, predicted, scale, "mean") == pytest.approx(
        expected.mean())
    np.testing.assert_allclose(direct_distances(states, stored, predicted, scale), expected)


@pytest.mark.parametrize("seed", range(20))
def test_kd_tree_never_above_direct(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 80))
    obs_dim, act_dim = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    states, stored, predicted = random_case(rng, n, obs_dim, act_dim,
                                            spread=float(rng.uniform(0.01, 2)))
    scale = rng.uniform(0.1, 5.0, size=obs_dim + act_dim) if seed % 2 else float(rng.uniform(0.1, 5))

    per_query_kd = kd_tree_distances(states, stored, predicted, scale)
    per_query_direct = direct_distances(states, stored, predicted, scale)

    assert np.all(per_query_kd <= per_query_direct + 1e-12)
    assert kd_tree_discrepancy(states, stored, predicted, scale) <= direct_discrepancy(
        states, stored, predicted, scale) + 1e-9


def test_identical_policy_gives_zero():
    rng = np.random.default_rng(5)
    states, stored, _ = random_case(rng)

    assert kd_tree_discrepancy(states, stored, stored) == 0.0
    assert direct_discrepancy(states, stored, stored) == 0.0


def test_single_transition():
    states = np.array([[0.0, 1.0]])
    stored = np.array([[0.5]])
    predicted = np.array([[-0.5]])

    assert kd_tree_discrepancy(states, stored, predicted) == pytest.approx(1.0)
    assert direct_discrepancy(states, stored, predicted, beta=2.0) == pytest.approx(2.0)


def test_far_apart_states_equal_direct():
    # When every state is far from the others, each query's nearest stored point is its own.
    states = np.arange(10, dtype=np.float64)[:, None] * 100.0
    stored = np.zeros((10, 2))
    predicted = np.full((10, 2), 0.3)

    kd = kd_tree_discrepancy(states, stored, predicted)

    assert kd == pytest.approx(direct_discrepancy(states, stored, predicted))
    assert kd == pytest.approx(10 * np.hypot(0.3, 0.3))


def test_not_the_spread_of_predictions():
    # A tree built on the predicted points and queried with themselves would give 0 here.
    states = np.zeros((5, 1))
    stored = np.zeros((5, 1))
    predicted = np.ones((5, 1))

    assert kd_tree_discrepancy(states, stored, predicted) == pytest.approx(5.0)


@pytest.mark.parametrize("function", [kd_tree_discrepancy, direct_discrepancy])
def test_bad_inputs_raise(function):
    rng = np.random.default_rng(6)
    states, stored, predicted = random_case(rng, n=4, obs_dim=2, act_dim=2)
    nan_states = states.copy()
    nan_states[1, 0] = np.nan
    inf_predicted = predicted.copy()
    inf_predicted[0, 1] = np.inf

    cases = [
        ((states, stored, predicted[:3]), {}, "shape"),
        ((states[:3], stored, predicted), {}, "rows"),
        ((states[0], stored, predicted), {}, "2-D"),
        ((nan_states, stored, predicted), {}, "non-finite"),
        ((states, stored, inf_predicted), {}, "non-finite"),
        ((states, stored, predicted), {"beta": 0.0}, "beta"),
        ((states, stored, predicted), {"beta": -1.0}, "beta"),
        ((states, stored, predicted), {"beta": np.ones(3)}, "beta"),
        ((states, stored, predicted), {"reduction": "max"}, "reduction"),
        ((states[:0], stored[:0], predicted[:0]), {}, "empty"),
    ]
    for arguments, options, message in cases:
        with pytest.raises(ValueError, match=message):
            function(*arguments, **options)
