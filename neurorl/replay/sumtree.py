"""Array-backed sum tree and min tree for proportional prioritized replay.

Leaves hold priorities p_i^α. Node k has children 2k and 2k + 1, the root is node 1 and leaf j
is node size + j, with size the smallest power of two >= capacity. Every internal node is
recomputed from its two children after a change, never updated by adding a difference. The tree
is therefore a pure function of its leaves: no rounding drift accumulates, and rebuilding from
the same leaves reproduces every node bit for bit.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sum tree and min tree over `capacity` leaves, with vectorised updates and sampling.

    Args:
        capacity: Number of leaves (>= 1). Empty leaves have sum 0 and min +inf.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._size = 1 << (self.capacity - 1).bit_length()
        self._depth = self._size.bit_length() - 1
        self._sum = np.zeros(2 * self._size, dtype=np.float64)
        self._min = np.full(2 * self._size, np.inf, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._sum[1])

    @property
    def min(self) -> float:
        """Smallest non-empty leaf, +inf when every leaf is empty."""
        return float(self._min[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the two node arrays."""
        return int(self._sum.nbytes + self._min.nbytes)

    def get(self, leaves: np.ndarray) -> np.ndarray:
        """Return the values of the given leaves."""
        return self._sum[np.asarray(leaves, dtype=np.int64) + self._size]

    def set(self, leaves: np.ndarray, values: np.ndarray) -> None:
        """Set scattered leaves to positive values and recompute their ancestors."""
        nodes = np.asarray(leaves, dtype=np.int64) + self._size
        values = np.asarray(values, dtype=np.float64)
        self._sum[nodes] = values
        self._min[nodes] = values
        for _ in range(self._depth):
            nodes >>= 1
            left = nodes << 1
            right = left + 1
            self._sum[nodes] = self._sum[left] + self._sum[right]
            self._min[nodes] = np.minimum(self._min[left], self._min[right])

    def set_range(self, start: int, values: np.ndarray) -> None:
        """Set the contiguous leaves start, start + 1, ... to positive values."""
        values = np.asarray(values, dtype=np.float64)
        stop = start + len(values)
        if len(values) == 0:
            return
        self._sum[self._size + start:self._size + stop] = values
        self._min[self._size + start:self._size + stop] = values
        self._propagate_range(start, stop)

    def fill_range(self, start: int, stop: int, value: float) -> None:
        """Set leaves [start, stop) to one positive value."""
        if stop <= start:
            return
        self._sum[self._size + start:self._size + stop] = value
        self._min[self._size + start:self._size + stop] = value
        self._propagate_range(start, stop)

    def clear_range(self, start: int, stop: int) -> None:
        """Empty leaves [start, stop): sum 0, min +inf."""
        if stop <= start:
            return
        self._sum[self._size + start:self._size + stop] = 0.0
        self._min[self._size + start:self._size + stop] = np.inf
        self._propagate_range(start, stop)

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """Return, for each prefix value in [0, total), the leaf whose cumulative range contains it.

        Requires total > 0. Rounding can push a value just past a subtree's sum and into an
        empty right subtree. Those rare descents are redone with a guard that never enters an
        empty subtree, so an empty leaf is never returned.
        """
        prefix = np.asarray(prefix, dtype=np.float64)
        leaves = self._descend(prefix.copy())
        empty = self._sum[leaves + self._size] <= 0.0
        if empty.any():
            leaves[empty] = self._descend_guarded(prefix[empty])
        return leaves

    def _descend(self, remaining: np.ndarray) -> np.ndarray:
        nodes = np.ones(remaining.shape, dtype=np.int64)
        for _ in range(self._depth):
            nodes <<= 1
            left_sum = self._sum[nodes]
            go_right = remaining >= left_sum
            remaining -= left_sum * go_right
            nodes += go_right
        return nodes - self._size

    def _descend_guarded(self, remaining: np.ndarray) -> np.ndarray:
        nodes = np.ones(remaining.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = self._sum[left]
            go_right = (remaining >= left_sum) & (self._sum[left + 1] > 0.0)
            remaining = np.where(go_right, remaining - left_sum, remaining)
            nodes = np.where(go_right, left + 1, left)
        return nodes - self._size

    def _propagate_range(self, start: int, stop: int) -> None:
        low = self._size + start
        high = self._size + stop - 1
        for _ in range(self._depth):
            low >>= 1
            high >>= 1
            children = slice(2 * low, 2 * high + 2)
            sums = self._sum[children]
            mins = self._min[children]
            self._sum[low:high + 1] = sums[0::2] + sums[1::2]
            self._min[low:high + 1] = np.minimum(mins[0::2], mins[1::2])

    def get_range(self, start: int, stop: int) -> np.ndarray:
        """Return the values of leaves [start, stop) (a copy)."""
        return self._sum[self._size + start:self._size + stop].copy()
