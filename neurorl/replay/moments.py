"""Running per-dimension moments of the live states and actions of a TransitionStorage.

The standardized β of resilient replay divides each point dimension by the live buffer's
standard deviation. Recomputing it costs O(N) per check, so these sums follow every append and
drop instead (O(1) per appended row, O(k) per k dropped rows). Values are shifted by the first
row ever seen before summing, which keeps the subtraction in var = E[x²] − E[x]² from losing
precision when the data sit far from 0. An exact two-pass recomputation replaces the sums
whenever more rows have been dropped since the last one than are live, so rounding from long
add/subtract histories cannot build up, at amortised O(1) cost per dropped row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurorl.replay.storage import TransitionStorage, modular_runs


class LiveMoments:
    """Per-dimension mean and standard deviation of the live (obs ⊕ action) columns.

    Args:
        storage: Storage to follow; the moments subscribe to its appends and drops.
    """

    def __init__(self, storage: TransitionStorage) -> None:
        self._storage = storage
        self._columns = storage.layout.obs_dim + storage.layout.act_dim
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(self._columns)
        self._sum_squares = np.zeros(self._columns)
        self._dropped_since_exact = 0
        storage.add_listener(self)

    def std(self) -> np.ndarray:
        """Return the population standard deviation of each dimension, float64 [obs + act]."""
        count = len(self._storage)
        if count == 0:
            return np.zeros(self._columns)
        mean = self._sum / count
        variance = self._sum_squares / count - mean * mean
        return np.sqrt(np.maximum(variance, 0.0))

    # ------------------------------------------------------------------ storage events

    def on_append(self, first_id: int, count: int, allocated_rows: int) -> None:
        """Add the appended rows to the sums."""
        for block in self._blocks(first_id, count, allocated_rows):
            if self._shift is None:
                self._shift = block[0].astype(np.float64)
            self._accumulate(block, 1.0)

    def on_drop(self, first_id: int, count: int, allocated_rows: int) -> None:
        """Subtract the dropped rows, or recompute exactly when drops outweigh live rows."""
        self._dropped_since_exact += count
        if self._dropped_since_exact > len(self._storage):
            self.recompute()
            return
        for block in self._blocks(first_id, count, allocated_rows):
            self._accumulate(block, -1.0)

    def on_relayout(self, first_id: int, count: int, old_rows: int, new_rows: int) -> None:
        """Ignore growths: they move rows without changing them."""

    def recompute(self) -> None:
        """Recompute the sums exactly from the live rows."""
        self._sum[:] = 0.0
        self._sum_squares[:] = 0.0
        self._dropped_since_exact = 0
        storage = self._storage
        for block in self._blocks(storage.first_id, len(storage), storage.allocated_rows):
            self._accumulate(block, 1.0)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Return the sums, the shift and the drop counter."""
        return {
            "shift": None if self._shift is None else self._shift.copy(),
            "sum": self._sum.copy(),
            "sum_squares": self._sum_squares.copy(),
            "dropped_since_exact": self._dropped_since_exact,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sums saved by `state_dict`."""
        shift = state["shift"]
        self._shift = None if shift is None else np.asarray(shift, dtype=np.float64).copy()
        self._sum = np.asarray(state["sum"], dtype=np.float64).copy()
        self._sum_squares = np.asarray(state["sum_squares"], dtype=np.float64).copy()
        self._dropped_since_exact = int(state["dropped_since_exact"])

    # ------------------------------------------------------------------ helpers

    def _accumulate(self, block: np.ndarray, sign: float) -> None:
        centred = block.astype(np.float64) - self._shift
        self._sum += sign * centred.sum(axis=0)
        self._sum_squares += sign * np.einsum("ij,ij->j", centred, centred)

    def _blocks(self, first_id: int, count: int, allocated_rows: int, chunk: int = 1 << 16):
        data = self._storage.raw_rows()
        for slot, _, length in modular_runs(first_id, count, allocated_rows):
            for start in range(slot, slot + length, chunk):
                stop = min(start + chunk, slot + length)
                yield data[start:stop, :self._columns]
