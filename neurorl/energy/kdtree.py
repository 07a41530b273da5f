"""Operation counts of building a KD-tree and querying it for nearest neighbours.

The resilient replay check builds a KD-tree (scipy.spatial.KDTree, balanced median splits,
``leafsize`` 10 by default in SciPy 1.17) on the |D'| stored points and queries it once per
predicted point. SciPy does not report its operations, so this module estimates them from a
documented cost model (see :func:`kdtree_operation_counts`) and also measures them exactly on a
reference KD-tree written here (:func:`measure_kdtree_operations`), which the tests use to check
the model.

Operation classes: a *distance evaluation* in ``dim`` dimensions costs ``dim`` subtractions
(adds) and ``dim`` squared-difference accumulations (MACs). A *comparison* (a split test, a
candidate against the best distance, a median-selection step) costs one add.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCIPY_LEAFSIZE = 10

# Node visits per extra leaf reached by backtracking: the leaf plus about two internal nodes on
# the way down from the ancestor where the search turned. Fitted as an upper bound to the
# measured reference tree for uniform points with dim <= 4 (see the energy tests).
BACKTRACK_NODES_PER_LEAF = 3

# Expected comparisons of quickselect for the median of n keys, 2·(1 + ln 2)·n ≈ 3.39·n.
MEDIAN_SELECT_COMPARISONS_PER_POINT = 2.0 * (1.0 + math.log(2.0))


def kdtree_operation_counts(
    n_points: int,
    dim: int,
    n_queries: int,
    *,
    leafsize: int = SCIPY_LEAFSIZE,
    k: int = 1,
) -> dict[str, Any]:
    """Estimate the operations of building a KD-tree on ``n_points`` and running ``n_queries``.

    Model (uniformly spread points, Euclidean distance):

    * Tree: median splits until a node contains at most ``leafsize`` points, so
      ``depth = ceil(log2(n / leafsize))`` (0 when n <= leafsize) and ``2**depth`` leaves.
    * Build: at each level every point takes part in finding its node's widest dimension (2·dim
      comparisons, a min and a max per dimension). It also takes part in a median selection
      (about 3.39 comparisons, quickselect's expectation). That makes ``depth·n·(2·dim + 3.39)``
      comparisons in all, O(n log n).
    * Query: descend ``depth`` nodes, then visit the leaves that the nearest-neighbour ball
      overlaps. With n points per unit volume the ball holding ``k`` points has radius r given
      by V_dim·r**dim = k/n; its bounding cube of side 2r overlaps about
      ``(1 + 2r/c)**dim`` leaf cells of side ``c = (leafsize/n)**(1/dim)``. This follows the
      bounds-overlap-ball reasoning of Friedman, Bentley and Finkel (ACM TOMS 3(3), 1977), whose
      records examined per search do not grow with n. Each visited leaf costs ``leafsize``
      distance evaluations. Visits are capped at all leaves and all points, so the distance
      evaluations never exceed the brute-force ``n_points·n_queries``.
    * Node visits: the ``depth + 1`` nodes of the descent plus 3 per extra leaf
      (:data:`BACKTRACK_NODES_PER_LEAF`), capped at all nodes. Each costs one comparison plus
      one MAC and one add (the incremental distance from the query to the node's cell).

    The KD-tree beats brute force only when few leaves are visited. In high dimension or with few
    points (dim 23 and n 256, the check's usual shape) every leaf is visited, and build plus node
    visits make the total larger than brute force, which ``exceeds_brute_force`` reports. Sproull
    (Algorithmica 6, 1991) observed the same: at dim 16 a search of 76,000 records examines
    almost every record, which this model reproduces.

    Returns a dict with ``build_comparisons``, ``query_node_visits``,
    ``query_distance_evaluations``, ``leaves_visited_per_query``, the totals ``adds``, ``macs``
    and ``comparisons`` (build plus queries), ``brute_force_upper_bound`` (distance evaluations
    of brute force, ``n_points·n_queries``), ``brute_force_macs``, ``brute_force_adds`` and
    ``exceeds_brute_force``.
    """
    _check_sizes(n_points=n_points, dim=dim, n_queries=n_queries, leafsize=leafsize, k=k)
    if k > n_points and n_queries:
        raise ValueError(f"k={k} neighbours requested from only {n_points} points. Use k <= n_points")

    depth = _depth(n_points, leafsize)
    leaves = 2**depth if n_points else 0
    nodes = 2 ** (depth + 1) - 1 if n_points else 0

    build_comparisons = depth * n_points * (2 * dim + MEDIAN_SELECT_COMPARISONS_PER_POINT)
    leaves_visited = _expected_leaves_visited(n_points, dim, leafsize, k, leaves)
    distances_per_query = min(n_points, leaves_visited * leafsize)
    nodes_per_query = min(nodes, depth + 1 + BACKTRACK_NODES_PER_LEAF * max(leaves_visited - 1, 0))

    query_distances = distances_per_query * n_queries
    query_nodes = nodes_per_query * n_queries
    adds = query_distances * dim + query_nodes
    macs = query_distances * dim + query_nodes
    comparisons = build_comparisons + query_distances + query_nodes

    brute_distances = n_points * n_queries
    brute_total = brute_distances * (2 * dim + 1)
    return {
        "n_points": n_points,
        "dim": dim,
        "n_queries": n_queries,
        "leafsize": leafsize,
        "k": k,
        "depth": depth,
        "leaves": leaves,
        "build_comparisons": build_comparisons,
        "leaves_visited_per_query": leaves_visited,
        "query_node_visits": query_nodes,
        "query_distance_evaluations": query_distances,
        "adds": adds,
        "macs": macs,
        "comparisons": comparisons,
        "brute_force_upper_bound": brute_distances,
        "brute_force_adds": brute_distances * dim,
        "brute_force_macs": brute_distances * dim,
        "brute_force_comparisons": brute_distances,
        "exceeds_brute_force": bool(adds + macs + comparisons > brute_total),
    }


def _expected_leaves_visited(n_points: int, dim: int, leafsize: int, k: int, leaves: int) -> float:
    if n_points == 0:
        return 0.0
    if n_points <= leafsize:
        return 1.0
    log_ball_volume = (dim / 2) * math.log(math.pi) - math.lgamma(dim / 2 + 1)
    # 2r / c = 2 · (k / (leafsize · V_dim))^(1/dim), computed in logs so dim in the hundreds stays finite.
    log_ratio = math.log(2.0) + (math.log(k) - math.log(leafsize) - log_ball_volume) / dim
    log_leaves = dim * math.log1p(math.exp(log_ratio)) if log_ratio < 700 else math.inf
    return float(min(leaves, math.exp(min(log_leaves, 700.0))))


def _depth(n_points: int, leafsize: int) -> int:
    if n_points <= leafsize:
        return 0
    return math.ceil(math.log2(n_points / leafsize))


def _check_sizes(**sizes: int) -> None:
    problems = []
    for key, value in sizes.items():
        minimum = 1 if key in ("dim", "leafsize", "k") else 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            problems.append(f"{key} must be an integer >= {minimum}, got {value!r}")
    if problems:
        raise ValueError("invalid KD-tree sizes:\n  " + "\n  ".join(problems))


class _Node:
    __slots__ = ("axis", "split", "left", "right", "indices")

    def __init__(self) -> None:
        self.axis = -1
        self.split = 0.0
        self.left: _Node | None = None
        self.right: _Node | None = None
        self.indices: np.ndarray | None = None


def measure_kdtree_operations(
    points: np.ndarray, queries: np.ndarray, *, leafsize: int = SCIPY_LEAFSIZE
) -> dict[str, Any]:
    """Build a reference KD-tree on ``points``, query each row of ``queries``, count operations.

    The tree splits at the median of the widest dimension until a node contains at most
    ``leafsize`` points, as SciPy's balanced tree does. The query descends to the query's leaf,
    then backtracks into every subtree whose splitting plane is closer than the best distance
    found so far (exact 1-nearest-neighbour search). Returns ``nearest`` (indices),
    ``distances``, ``query_distance_evaluations``, ``query_node_visits`` and
    ``leaves_visited``. It is written for checking the cost model on a few hundred points, not
    for speed.
    """
    _check_sizes(leafsize=leafsize)
    points = np.asarray(points, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    if points.ndim != 2 or queries.ndim != 2 or points.shape[1] != queries.shape[1]:
        raise ValueError(
            f"points and queries must be 2-D with the same number of columns, got {points.shape} and {queries.shape}"
        )
    if len(points) == 0:
        raise ValueError("cannot query an empty KD-tree. Pass at least one point")
    if not (np.isfinite(points).all() and np.isfinite(queries).all()):
        raise ValueError("points and queries must be finite, but they contain NaN or inf")

    root = _build(points, np.arange(len(points)), leafsize)
    totals = {"query_distance_evaluations": 0, "query_node_visits": 0, "leaves_visited": 0}
    nearest = np.empty(len(queries), dtype=np.int64)
    distances = np.empty(len(queries))
    for row, query in enumerate(queries):
        best = [math.inf, -1]
        _search(root, points, query, best, totals)
        distances[row] = math.sqrt(best[0])
        nearest[row] = best[1]
    return {"nearest": nearest, "distances": distances, **totals}


def _build(points: np.ndarray, indices: np.ndarray, leafsize: int) -> _Node:
    node = _Node()
    if len(indices) <= leafsize:
        node.indices = indices
        return node
    subset = points[indices]
    node.axis = int(np.argmax(subset.max(axis=0) - subset.min(axis=0)))
    order = np.argsort(subset[:, node.axis], kind="stable")
    half = len(indices) // 2
    node.split = float(subset[order[half], node.axis])
    node.left = _build(points, indices[order[:half]], leafsize)
    node.right = _build(points, indices[order[half:]], leafsize)
    return node


def _search(node: _Node, points: np.ndarray, query: np.ndarray, best: list, totals: dict) -> None:
    totals["query_node_visits"] += 1
    if node.indices is not None:
        totals["leaves_visited"] += 1
        totals["query_distance_evaluations"] += len(node.indices)
        squared = ((points[node.indices] - query) ** 2).sum(axis=1)
        position = int(np.argmin(squared))
        if squared[position] < best[0]:
            best[0] = float(squared[position])
            best[1] = int(node.indices[position])
        return

    gap = query[node.axis] - node.split
    near, far = (node.left, node.right) if gap < 0 else (node.right, node.left)
    _search(near, points, query, best, totals)
    if gap * gap < best[0]:
        _search(far, points, query, best, totals)
