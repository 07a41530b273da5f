"""KD-tree cost model: brute-force bound, small sizes, and agreement with a measured reference tree."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import KDTree

from neurorl.energy import kdtree_operation_counts, measure_kdtree_operations


@pytest.mark.parametrize("dim", [1, 2, 3, 5, 8, 23, 64])
@pytest.mark.parametrize("n_points", [1, 9, 10, 11, 100, 256, 1000, 100_000])
def test_distance_evaluations_within_brute_force(dim, n_points):
    counts = kdtree_operation_counts(n_points, dim, 37)
    assert counts["query_distance_evaluations"] <= counts["brute_force_upper_bound"]
    assert counts["brute_force_upper_bound"] == n_points * 37
    assert counts["brute_force_macs"] == n_points * 37 * dim


@pytest.mark.parametrize("dim,n_min", [(1, 16), (2, 32), (3, 64), (4, 128), (6, 1024)])
def test_total_below_brute_force_from_size(dim, n_min):
    # One query per point, as in the replay check (|D'| queries on |D'| points).
    for n_points in (n_min, 4 * n_min, 64 * n_min, 4096 * n_min):
        counts = kdtree_operation_counts(n_points, dim, n_points)
        tree_total = counts["adds"] + counts["macs"] + counts["comparisons"]
        brute_total = counts["brute_force_adds"] + counts["brute_force_macs"] + counts["brute_force_comparisons"]
        assert not counts["exceeds_brute_force"]
        assert tree_total < brute_total


def test_replay_check_shape_exceeds_brute_force():
    # dim 23 (HalfCheetah state 17 + action 6) and |D'| = 256: every leaf is visited.
    counts = kdtree_operation_counts(256, 23, 256)
    assert counts["leaves_visited_per_query"] == counts["leaves"]
    assert counts["query_distance_evaluations"] == counts["brute_force_upper_bound"]
    assert counts["exceeds_brute_force"]


def test_small_tree_is_one_leaf():
    counts = kdtree_operation_counts(10, 4, 3)
    assert counts["depth"] == 0
    assert counts["leaves"] == 1
    assert counts["build_comparisons"] == 0
    assert counts["query_distance_evaluations"] == 30


def test_empty_tree_costs_nothing():
    counts = kdtree_operation_counts(0, 4, 0)
    assert counts["adds"] == counts["macs"] == counts["comparisons"] == 0


def test_queries_on_empty_tree_rejected():
    with pytest.raises(ValueError, match="only 0 points"):
        kdtree_operation_counts(0, 4, 2)


def test_build_grows_as_n_log_n():
    small = kdtree_operation_counts(10 * 2**6, 3, 0)["build_comparisons"]
    large = kdtree_operation_counts(10 * 2**12, 3, 0)["build_comparisons"]
    assert large / small == pytest.approx(2**6 * 12 / 6)


@pytest.mark.parametrize(
    "bad", [dict(n_points=-1), dict(dim=0), dict(n_queries=1.5), dict(leafsize=0), dict(n_points=True)]
)
def test_invalid_sizes_rejected(bad):
    sizes = dict(n_points=10, dim=2, n_queries=3) | {k: v for k, v in bad.items() if k != "leafsize"}
    options = {"leafsize": bad["leafsize"]} if "leafsize" in bad else {}
    with pytest.raises(ValueError, match="invalid KD-tree sizes"):
        kdtree_operation_counts(**sizes, **options)


def test_more_neighbours_than_points_rejected():
    with pytest.raises(ValueError, match="k=5"):
        kdtree_operation_counts(3, 2, 1, k=5)


def test_reference_tree_finds_scipy_neighbours():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 5))
    queries = rng.normal(size=(50, 5))
    measured = measure_kdtree_operations(points, queries)
    distances, _ = KDTree(points).query(queries)
    np.testing.assert_allclose(measured["distances"], distances, rtol=1e-12)
    assert measured["query_distance_evaluations"] < 300 * 50


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("n_points", [256, 2000])
def test_model_bounds_measured_uniform(dim, n_points):
    rng = np.random.default_rng(dim * 1000 + n_points)
    queries = 200
    measured = measure_kdtree_operations(rng.random((n_points, dim)), rng.random((queries, dim)))
    model = kdtree_operation_counts(n_points, dim, queries)

    measured_distances = measured["query_distance_evaluations"]
    assert measured_distances <= model["query_distance_evaluations"]
    assert measured_distances >= model["query_distance_evaluations"] / 3
    assert measured["query_node_visits"] <= model["query_node_visits"]


def test_reference_tree_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        measure_kdtree_operations(np.zeros((0, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        measure_kdtree_operations(np.array([[math.nan, 0.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="same number of columns"):
        measure_kdtree_operations(np.zeros((3, 2)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="leafsize"):
        measure_kdtree_operations(np.zeros((3, 2)), np.zeros((1, 2)), leafsize=0)


def test_high_dimension_examines_almost_everything():
    # Sproull (Algorithmica 1991): at dim 16, a search of 76,000 records examines almost all.
    counts = kdtree_operation_counts(76_000, 16, 1)
    assert counts["query_distance_evaluations"] == 76_000
    rng = np.random.default_rng(16)
    measured = measure_kdtree_operations(rng.random((4_000, 16)), rng.random((5, 16)))
    assert measured["query_distance_evaluations"] > 0.9 * 4_000 * 5
