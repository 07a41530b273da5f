"""Uniform and proportional prioritized samplers over a TransitionStorage.

A sampler returns transition ids and importance weights; the buffer gathers the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurorl.replay.storage import TransitionStorage, modular_runs
from neurorl.replay.sumtree import SumTree

# A sum tree and a min tree of float64 nodes: two nodes per leaf each, and up to twice as many
# leaves as rows after rounding up to a power of two.
PRIORITY_BYTES_PER_ROW = 2 * 2 * 2 * 8


class UniformSampler:
    """Sampler that draws live transitions uniformly with replacement; weights are ones."""

    name = "uniform"
    extra_bytes_per_row = 0

    def attach(self, storage: TransitionStorage) -> None:
        """Bind to a storage (nothing to track for uniform sampling)."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the sampler."""
        return 0

    def sample(
        self, storage: TransitionStorage, rng: np.random.Generator, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw batch_size ids uniformly and return them with unit weights."""
        positions = rng.integers(0, len(storage), size=batch_size, dtype=np.int64)
        return storage.ids_at(positions), np.ones(batch_size, dtype=np.float32)

    def update(self, storage: TransitionStorage, ids: np.ndarray, td_errors: np.ndarray) -> None:
        """Ignore priority updates."""

    def state_dict(self, storage: TransitionStorage) -> dict[str, Any]:
        """Return the sampler state (empty for uniform sampling)."""
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any], storage: TransitionStorage) -> None:
        """Restore the sampler state (nothing for uniform sampling)."""
        _check_sampler_name(state, self.name)


class PrioritizedSampler:
    """Proportional prioritized sampler (Schaul et al., ICLR 2016) on a sum tree.

    P(i) = p_i^α / Σ_j p_j^α with p_i = |δ_i| + eps. A new transition gets the largest priority
    seen so far, so it is sampled at least once with high probability. Importance weights are
    w_i = (N·P(i))^(−β) / max_j w_j = (min_j p_j^α / p_i^α)^β over the live transitions, with β
    annealed linearly from beta0 to 1 over beta_steps appended transitions.

    The tree has one leaf per storage row (leaf = id % allocated_rows). Dropped transitions get an
    empty leaf at once, so they are never sampled and their later priority updates are ignored.

    Args:
        alpha: Priority exponent α >= 0 (0 gives uniform sampling).
        beta0: Importance exponent β at the start, in [0, 1].
        beta_steps: Appended transitions over which β reaches 1.
        eps: Constant added to |δ| so that no priority is 0.
    """

    name = "prioritized"
    extra_bytes_per_row = PRIORITY_BYTES_PER_ROW

    def __init__(self, alpha: float, beta0: float, beta_steps: int, eps: float) -> None:
        self.alpha = float(alpha)
        self.beta0 = float(beta0)
        self.beta_steps = int(beta_steps)
        self.eps = float(eps)
        self.max_priority = 1.0
        self._tree = SumTree(1)

    def options(self) -> dict[str, Any]:
        """Return the sampler's constructor options."""
        return {"alpha": self.alpha, "beta0": self.beta0, "beta_steps": self.beta_steps,
                "priority_eps": self.eps}

    @property
    def nbytes(self) -> int:
        """Bytes held by the priority trees."""
        return self._tree.nbytes

    def beta(self, appended: int) -> float:
        """Return the importance exponent after `appended` transitions."""
        progress = min(1.0, appended / self.beta_steps)
        return self.beta0 + (1.0 - self.beta0) * progress

    def attach(self, storage: TransitionStorage) -> None:
        """Size the tree to the storage and subscribe to its changes."""
        self._tree = SumTree(storage.allocated_rows)
        storage.add_listener(self)

    # ------------------------------------------------------------------ storage events

    def on_append(self, first_id: int, count: int, allocated_rows: int) -> None:
        """Give new transitions the largest priority seen so far."""
        value = self.max_priority**self.alpha
        for slot, _, length in modular_runs(first_id, count, allocated_rows):
            self._tree.fill_range(slot, slot + length, value)

    def on_drop(self, first_id: int, count: int, allocated_rows: int) -> None:
        """Empty the leaves of dropped transitions."""
        for slot, _, length in modular_runs(first_id, count, allocated_rows):
            self._tree.clear_range(slot, slot + length)

    def on_relayout(self, first_id: int, count: int, old_rows: int, new_rows: int) -> None:
        """Move every live leaf to its row in the grown array."""
        values = self._leaves_in_order(first_id, count, old_rows)
        self._tree = SumTree(new_rows)
        self._set_in_order(first_id, values, new_rows)

    # ------------------------------------------------------------------ sampling

    def sample(
        self, storage: TransitionStorage, rng: np.random.Generator, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw batch_size ids with probability proportional to p^α, with importance weights."""
        prefix = rng.random(batch_size) * self._tree.total
        slots = self._tree.find(prefix)

        rows = storage.allocated_rows
        ids = storage.first_id + (slots - storage.first_id % rows) % rows
        values = self._tree.get(slots)
        weights = (self._tree.min / values) ** self.beta(storage.next_id)
        return ids.astype(np.int64), weights.astype(np.float32)

    def update(self, storage: TransitionStorage, ids: np.ndarray, td_errors: np.ndarray) -> None:
        """Set p = |δ| + eps for the live ids; ids dropped since sampling are skipped.

        When an id appears more than once, its last TD error wins.
        """
        live = storage.is_live(ids)
        ids = ids[live]
        priorities = np.abs(td_errors[live].astype(np.float64)) + self.eps
        if len(ids) == 0:
            return

        _, last_from_end = np.unique(ids[::-1], return_index=True)
        keep = len(ids) - 1 - last_from_end
        ids = ids[keep]
        priorities = priorities[keep]

        self.max_priority = max(self.max_priority, float(priorities.max()))
        self._tree.set(ids % storage.allocated_rows, priorities**self.alpha)

    def priorities(self, storage: TransitionStorage) -> np.ndarray:
        """Return p^α of the live transitions in id order, float64 [len]."""
        return self._leaves_in_order(storage.first_id, len(storage), storage.allocated_rows)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self, storage: TransitionStorage) -> dict[str, Any]:
        """Return the priorities of the live transitions in id order and the running maximum."""
        return {
            "name": self.name,
            "leaves": self.priorities(storage),
            "max_priority": self.max_priority,
        }

    def load_state_dict(self, state: dict[str, Any], storage: TransitionStorage) -> None:
        """Restore priorities saved by `state_dict`; the storage must be loaded first."""
        _check_sampler_name(state, self.name)
        leaves = np.asarray(state["leaves"], dtype=np.float64)
        if leaves.shape != (len(storage),):
            raise ValueError(
                f"replay checkpoint has {leaves.shape} priorities for {len(storage)} transitions; "
                "the checkpoint is damaged or belongs to another buffer"
            )
        self.max_priority = float(state["max_priority"])
        self._tree = SumTree(storage.allocated_rows)
        self._set_in_order(storage.first_id, leaves, storage.allocated_rows)

    def _leaves_in_order(self, first_id: int, count: int, rows: int) -> np.ndarray:
        values = np.empty(count, dtype=np.float64)
        for slot, offset, length in modular_runs(first_id, count, rows):
            values[offset:offset + length] = self._tree.get_range(slot, slot + length)
        return values

    def _set_in_order(self, first_id: int, values: np.ndarray, rows: int) -> None:
        for slot, offset, length in modular_runs(first_id, len(values), rows):
            self._tree.set_range(slot, values[offset:offset + length])


def _check_sampler_name(state: dict[str, Any], name: str) -> None:
    if state.get("name") != name:
        raise ValueError(
            f"replay checkpoint was saved with the {state.get('name')!r} sampler, "
            f"but this buffer uses {name!r}; build the buffer with the checkpoint's sampler"
        )
