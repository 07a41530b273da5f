"""Growable row-major float32 transition storage with a FIFO head.

Every transition is one row of a single 2-D float32 array, its fields side by side:

- plain layout: obs | action | reward | next_obs | terminated
- compact layout: obs | action | reward | flag, where flag = terminated + 2·external

Transition ids count every transition ever appended. The live transitions are the ids
[first_id, next_id), and transition i sits in row i % allocated_rows. Dropping the oldest k
therefore only advances first_id (O(1)), and a full fixed-capacity buffer overwrites the row of
the transition it evicts. A batch is gathered with one `np.take` on row indices.
The array doubles when full, capped by capacity and max_bytes. A growth copies the live rows
once into the larger array, which keeps appends amortised O(1).

Compact mode stores each observation once. The next observation of transition i is the
observation of transition i + 1 when transition i did not end its episode and transition i + 1
starts from exactly (bit for bit) that observation. Otherwise transition i is flagged external
and its next observation is kept in a small side table keyed by id (one row per episode end, or
per discontinuity such as interleaved environments). The newest transition's next observation is
held aside until the next append shows which case applies. Sampled next observations are
therefore bit-identical to plain mode.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import numpy as np

from neurorl.replay._validation import (
    nonnegative_int_problem,
    positive_int_problem,
    raise_problems,
)

FLOAT_BYTES = 4
INITIAL_ROWS = 1024


class ReplayMemoryWarning(RuntimeWarning):
    """Warning issued once per buffer when max_bytes stops its growth and eviction begins."""


class StorageListener(Protocol):
    """Observer of every change of the live id range, such as a prioritized sampler's tree."""

    def on_append(self, first_id: int, count: int, allocated_rows: int) -> None:
        """Receive ids [first_id, first_id + count) just written to rows id % allocated_rows."""

    def on_drop(self, first_id: int, count: int, allocated_rows: int) -> None:
        """Receive ids [first_id, first_id + count) just dropped."""

    def on_relayout(self, first_id: int, count: int, old_rows: int, new_rows: int) -> None:
        """Receive a growth of the row array; the live ids keep their order."""


@dataclass(frozen=True)
class RowLayout:
    """Column positions of one transition's fields in a storage row."""

    obs_dim: int
    act_dim: int
    compact: bool

    @property
    def obs(self) -> slice:
        """Columns of the observation."""
        return slice(0, self.obs_dim)

    @property
    def action(self) -> slice:
        """Columns of the action."""
        return slice(self.obs_dim, self.obs_dim + self.act_dim)

    @property
    def reward(self) -> int:
        """Column of the reward."""
        return self.obs_dim + self.act_dim

    @property
    def next_obs(self) -> slice:
        """Columns of the next observation in the plain layout."""
        start = self.obs_dim + self.act_dim + 1
        return slice(start, start + self.obs_dim)

    @property
    def terminated(self) -> int:
        """Column of the terminated flag (plain) or of the combined flag (compact)."""
        if self.compact:
            return self.obs_dim + self.act_dim + 1
        return 2 * self.obs_dim + self.act_dim + 1

    @property
    def width(self) -> int:
        """Floats per row."""
        if self.compact:
            return self.obs_dim + self.act_dim + 2
        return 2 * self.obs_dim + self.act_dim + 2

    @property
    def plain_width(self) -> int:
        """Floats per row of the plain layout, the format of appended rows."""
        return 2 * self.obs_dim + self.act_dim + 2


def modular_runs(first_id: int, count: int, rows: int) -> Iterator[tuple[int, int, int]]:
    """Yield (row, offset, length) runs covering ids [first_id, first_id + count) at row id % rows.

    offset is the position of the run's first id within the range. Requires count <= rows.
    """
    if count <= 0:
        return
    start = first_id % rows
    head = min(count, rows - start)
    yield start, 0, head
    if count > head:
        yield 0, head, count - head


class FinalObservationTable:
    """Next observations of the compact layout's external transitions, sorted by id.

    Appends go to the tail of a linear array pair and dropping the oldest advances a head index.
    The live part moves to the front (or into a larger array) only when the tail reaches the
    end, so both operations are amortised O(1).
    """

    def __init__(self, obs_dim: int, initial_rows: int = 64) -> None:
        self._obs_dim = obs_dim
        self._ids = np.empty(initial_rows, dtype=np.int64)
        self._obs = np.empty((initial_rows, obs_dim), dtype=np.float32)
        self._head = 0
        self._tail = 0

    def __len__(self) -> int:
        return self._tail - self._head

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the table."""
        return int(self._ids.nbytes + self._obs.nbytes)

    @property
    def live_bytes(self) -> int:
        """Bytes of the live entries."""
        return len(self) * (8 + FLOAT_BYTES * self._obs_dim)

    @property
    def ids(self) -> np.ndarray:
        """Live ids in increasing order (a view)."""
        return self._ids[self._head:self._tail]

    @property
    def observations(self) -> np.ndarray:
        """Live next observations in id order (a view)."""
        return self._obs[self._head:self._tail]

    def append(self, ids: np.ndarray, observations: np.ndarray) -> None:
        """Append entries whose ids are larger than every live id."""
        count = len(ids)
        if count == 0:
            return
        self._reserve(count)
        self._ids[self._tail:self._tail + count] = ids
        self._obs[self._tail:self._tail + count] = observations
        self._tail += count

    def drop_below(self, first_id: int) -> None:
        """Drop the entries whose id is below first_id."""
        self._head += int(np.searchsorted(self.ids, first_id, side="left"))

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Return the next observations of the given ids, which must all be present."""
        positions = np.searchsorted(self.ids, ids) + self._head
        return self._obs[positions]

    def clear(self) -> None:
        """Remove every entry."""
        self._head = 0
        self._tail = 0

    def _reserve(self, count: int) -> None:
        live = len(self)
        if self._tail + count <= len(self._ids):
            return

        # Moving to the front costs O(live). Doing it only while the table is at most half full
        # leaves at least `live` free slots afterwards, which keeps appends amortised O(1).
        if 2 * (live + count) <= len(self._ids):
            self._ids[:live] = self._ids[self._head:self._tail]
            self._obs[:live] = self._obs[self._head:self._tail]
        else:
            rows = max(2 * (live + count), 64)
            ids = np.empty(rows, dtype=np.int64)
            obs = np.empty((rows, self._obs_dim), dtype=np.float32)
            ids[:live] = self._ids[self._head:self._tail]
            obs[:live] = self._obs[self._head:self._tail]
            self._ids = ids
            self._obs = obs
        self._head = 0
        self._tail = live


class TransitionStorage:
    """Row-major float32 storage of transitions with O(1) drop-oldest and batched gathers.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        capacity: Maximum number of live transitions; appending past it evicts the oldest.
            None grows without limit (up to max_bytes).
        max_bytes: Cap on the bytes of live transitions, including `extra_bytes_per_row` and the
            compact side table. Past it the storage warns once (ReplayMemoryWarning) and evicts
            the oldest transitions instead of growing. None means no cap.
        compact: Store each observation once (see the module docstring).
        extra_bytes_per_row: Bytes that another structure (a priority tree) spends per row,
            charged against max_bytes.
        initial_rows: Rows allocated before the first growth.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        capacity: int | None = None,
        max_bytes: int | None = None,
        compact: bool = False,
        extra_bytes_per_row: int = 0,
        initial_rows: int = INITIAL_ROWS,
    ) -> None:
        raise_problems("replay storage", storage_problems(
            obs_dim, act_dim, capacity, max_bytes, compact, extra_bytes_per_row, initial_rows))
        self.layout = RowLayout(int(obs_dim), int(act_dim), bool(compact))
        self.capacity = None if capacity is None else int(capacity)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.extra_bytes_per_row = int(extra_bytes_per_row)
        self._max_rows = self._compute_max_rows()

        self._data = np.empty((min(int(initial_rows), self.max_rows), self.layout.width), np.float32)
        self._first = 0
        self._next = 0
        self._listeners: list[StorageListener] = []
        self._cap_warned = False
        self._evicted = 0

        self._finals = FinalObservationTable(self.layout.obs_dim) if self.layout.compact else None
        self._pending = np.zeros(self.layout.obs_dim, dtype=np.float32)
        self._has_pending = False

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        return self._next - self._first

    @property
    def first_id(self) -> int:
        """Id of the oldest live transition."""
        return self._first

    @property
    def next_id(self) -> int:
        """Id the next appended transition will get (the number of transitions ever appended)."""
        return self._next

    @property
    def evicted(self) -> int:
        """Transitions evicted by capacity or max_bytes (not counting `drop_oldest` calls)."""
        return self._evicted

    @property
    def allocated_rows(self) -> int:
        """Rows of the current array."""
        return int(self._data.shape[0])

    @property
    def row_bytes(self) -> int:
        """Bytes of one stored row."""
        return self.layout.width * FLOAT_BYTES

    @property
    def max_rows(self) -> int:
        """Rows the array may ever have, from capacity and max_bytes."""
        return self._max_rows

    def _compute_max_rows(self) -> int:
        limits = [] if self.capacity is None else [self.capacity]
        if self.max_bytes is not None:
            limits.append(self.max_bytes // (self.row_bytes + self.extra_bytes_per_row))
        return min(limits) if limits else int(np.iinfo(np.int64).max)

    @property
    def size_bytes(self) -> int:
        """Bytes allocated by the row array, the side table and the held-aside observation."""
        total = self._data.nbytes + self._pending.nbytes
        if self._finals is not None:
            total += self._finals.nbytes
        return int(total)

    @property
    def live_bytes(self) -> int:
        """Bytes the live transitions account for under max_bytes."""
        total = len(self) * (self.row_bytes + self.extra_bytes_per_row)
        if self._finals is not None:
            total += self._finals.live_bytes
        return total

    def add_listener(self, listener: StorageListener) -> None:
        """Register an observer of appends, drops and growths."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ writing

    def append(self, row: np.ndarray, truncated: bool) -> int:
        """Append one validated plain-layout row (float32 [plain_width]) and return its id."""
        self._make_room(1)
        new_id = self._next
        rows = self._data.shape[0]
        slot = new_id % rows

        if self._finals is None:
            self._data[slot] = row
        else:
            self._write_compact_one(slot, row, truncated)
        self._next += 1

        for listener in self._listeners:
            listener.on_append(new_id, 1, rows)
        if self._finals is not None:
            self._enforce_live_bytes()
        return new_id

    def extend(self, rows: np.ndarray, truncated: np.ndarray) -> None:
        """Append validated plain-layout rows (float32 [N, plain_width]) in order."""
        chunk = self.max_rows
        for start in range(0, len(rows), chunk):
            self._extend_chunk(rows[start:start + chunk], truncated[start:start + chunk])

    def drop_oldest(self, count: int) -> int:
        """Drop the oldest min(count, len) transitions in O(1) and return how many were dropped."""
        count = min(int(count), len(self))
        if count <= 0:
            return 0

        old_first = self._first
        self._first += count
        if self._finals is not None:
            self._finals.drop_below(self._first)
            if self._has_pending and self._next - 1 < self._first:
                self._has_pending = False

        for listener in self._listeners:
            listener.on_drop(old_first, count, self.allocated_rows)
        return count

    def _extend_chunk(self, rows: np.ndarray, truncated: np.ndarray) -> None:
        count = len(rows)
        if count == 0:
            return
        self._make_room(count)
        start = self._next
        allocated = self.allocated_rows

        stored = self._compact_rows(start, rows, truncated) if self.layout.compact else rows
        for slot, offset, length in modular_runs(start, count, allocated):
            self._data[slot:slot + length] = stored[offset:offset + length]
        self._next += count

        for listener in self._listeners:
            listener.on_append(start, count, allocated)
        self._enforce_live_bytes()

    def _write_compact_one(self, slot: int, row: np.ndarray, truncated: bool) -> None:
        layout = self.layout
        observation = row[layout.obs]
        self._resolve_pending(observation)

        self._data[slot, :layout.reward + 1] = row[:layout.reward + 1]
        terminated = float(row[layout.plain_width - 1])
        next_obs = row[layout.next_obs]
        if terminated or truncated:
            self._data[slot, layout.terminated] = terminated + 2.0
            self._finals.append(np.array([self._next]), next_obs[None, :])
        else:
            self._data[slot, layout.terminated] = terminated
            self._pending[:] = next_obs
            self._has_pending = True

    def _compact_rows(self, start: int, rows: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        layout = self.layout
        observations = rows[:, layout.obs]
        next_obs = rows[:, layout.next_obs]
        terminated = rows[:, layout.plain_width - 1]
        ended = (terminated != 0.0) | truncated
        self._resolve_pending(observations[0])

        # Transition i continues into i + 1 only on a bit-identical observation, so a sampled
        # next observation is always exactly the one that was appended (0.0 and -0.0 differ).
        continues = np.zeros(len(rows), dtype=bool)
        continues[:-1] = ~ended[:-1] & np.all(
            observations[1:].view(np.uint32) == next_obs[:-1].view(np.uint32), axis=1
        )
        external = ~continues
        external[-1] = ended[-1]

        stored = np.empty((len(rows), layout.width), dtype=np.float32)
        stored[:, :layout.reward + 1] = rows[:, :layout.reward + 1]
        stored[:, layout.terminated] = terminated + 2.0 * external
        self._finals.append(start + np.flatnonzero(external), next_obs[external])

        if not ended[-1]:
            self._pending[:] = next_obs[-1]
            self._has_pending = True
        return stored

    def _resolve_pending(self, observation: np.ndarray) -> None:
        """Settle where the newest stored transition's next observation lives, given the
        observation that starts the transition being appended."""
        if not self._has_pending:
            return
        self._has_pending = False
        if np.array_equal(self._pending.view(np.uint32), observation.view(np.uint32)):
            return
        newest = self._next - 1
        self._data[newest % self.allocated_rows, self.layout.terminated] += 2.0
        self._finals.append(np.array([newest]), self._pending[None, :])

    # ------------------------------------------------------------------ capacity and growth

    def _make_room(self, count: int) -> None:
        """Evict the oldest transitions and grow the array so that count more rows fit."""
        limit = self._max_rows if self._finals is None else self._live_row_limit()
        excess = self._next - self._first + count - limit
        if excess > 0:
            if self.capacity is None or limit < self.capacity:
                self._warn_cap_reached()
            self._evicted += self.drop_oldest(excess)

        needed = self._next - self._first + count
        if needed > self._data.shape[0]:
            self._grow(needed)

    def _live_row_limit(self) -> int:
        limit = self.max_rows
        if self.max_bytes is not None and self._finals is not None:
            per_row = self.row_bytes + self.extra_bytes_per_row
            limit = min(limit, max(1, (self.max_bytes - self._finals.live_bytes) // per_row))
        return limit

    def _enforce_live_bytes(self) -> None:
        """Evict after an append whose side-table entries pushed the live bytes past max_bytes."""
        if self.max_bytes is None or self._finals is None:
            return
        excess = self.live_bytes - self.max_bytes
        if excess > 0:
            self._warn_cap_reached()
            per_row = self.row_bytes + self.extra_bytes_per_row
            self._evicted += self.drop_oldest(math.ceil(excess / per_row))

    def _warn_cap_reached(self) -> None:
        if self._cap_warned:
            return
        self._cap_warned = True
        warnings.warn(
            f"replay storage reached max_bytes={self.max_bytes} "
            f"({self.max_rows} transitions of {self.row_bytes + self.extra_bytes_per_row} bytes); "
            "it now evicts the oldest transitions instead of growing. Raise max_bytes to keep more.",
            ReplayMemoryWarning,
            stacklevel=4,
        )

    def _grow(self, needed: int) -> None:
        old_rows = self.allocated_rows
        new_rows = min(max(2 * old_rows, needed), self.max_rows)
        try:
            data = np.empty((new_rows, self.layout.width), dtype=np.float32)
        except MemoryError as error:
            raise MemoryError(
                f"replay storage could not grow to {new_rows} rows "
                f"({new_rows * self.row_bytes} bytes); set max_bytes to cap the buffer"
            ) from error

        self._copy_live_rows(data)
        self._data = data
        for listener in self._listeners:
            listener.on_relayout(self._first, len(self), old_rows, new_rows)

    def _copy_live_rows(self, target: np.ndarray) -> None:
        """Copy the live rows into target, each at row id % len(target)."""
        old_rows = self.allocated_rows
        new_rows = len(target)
        position = 0
        while position < len(self):
            transition = self._first + position
            old_slot = transition % old_rows
            new_slot = transition % new_rows
            length = min(len(self) - position, old_rows - old_slot, new_rows - new_slot)
            target[new_slot:new_slot + length] = self._data[old_slot:old_slot + length]
            position += length

    # ------------------------------------------------------------------ reading

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """Convert positions in [0, len) (0 = oldest) to transition ids."""
        return positions.astype(np.int64, copy=False) + self._first

    def is_live(self, ids: np.ndarray) -> np.ndarray:
        """Return a boolean mask of the ids that are still stored."""
        return (ids >= self._first) & (ids < self._next)

    def gather(
        self, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return obs, actions, rewards, next_obs and terminated (float32) of live ids."""
        layout = self.layout
        rows = self._data.take(ids % self.allocated_rows, axis=0)
        obs = np.ascontiguousarray(rows[:, layout.obs])
        actions = np.ascontiguousarray(rows[:, layout.action])
        rewards = np.ascontiguousarray(rows[:, layout.reward])

        if not layout.compact:
            next_obs = np.ascontiguousarray(rows[:, layout.next_obs])
            terminated = np.ascontiguousarray(rows[:, layout.terminated])
            return obs, actions, rewards, next_obs, terminated

        flags = rows[:, layout.terminated]
        terminated = np.fmod(flags, 2.0)
        next_obs = self._gather_compact_next_obs(ids, flags >= 2.0)
        return obs, actions, rewards, next_obs, terminated

    def _gather_compact_next_obs(self, ids: np.ndarray, external: np.ndarray) -> np.ndarray:
        next_obs = self._data.take((ids + 1) % self.allocated_rows, axis=0)[:, self.layout.obs]
        next_obs = np.ascontiguousarray(next_obs)
        if self._has_pending:
            newest = ids == self._next - 1
            if newest.any():
                next_obs[newest] = self._pending
        if external.any():
            next_obs[external] = self._finals.lookup(ids[external])
        return next_obs

    def states_actions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the observations and actions (float32) of live ids."""
        rows = self._data.take(ids % self.allocated_rows, axis=0)
        obs = np.ascontiguousarray(rows[:, self.layout.obs])
        actions = np.ascontiguousarray(rows[:, self.layout.action])
        return obs, actions

    def raw_rows(self) -> np.ndarray:
        """Return the row array itself, for listeners.

        Transition i is row i % allocated_rows. Rows outside the live ids contain stale or
        uninitialised data.
        """
        return self._data

    def live_rows(self) -> np.ndarray:
        """Return a copy of the live rows in id order, float32 [len, width]."""
        out = np.empty((len(self), self.layout.width), dtype=np.float32)
        for slot, offset, length in modular_runs(self._first, len(self), self.allocated_rows):
            out[offset:offset + length] = self._data[slot:slot + length]
        return out

    def state_action_std(self, chunk_rows: int = 1 << 16) -> np.ndarray:
        """Return the per-dimension standard deviation of the live observations and actions.

        Computed exactly in two float64 passes over the live rows, chunk by chunk so that the
        temporary memory stays small: float64 [obs_dim + act_dim].
        """
        columns = self.layout.obs_dim + self.layout.act_dim
        count = len(self)
        if count == 0:
            return np.zeros(columns)

        total = np.zeros(columns)
        for block in self._live_blocks(chunk_rows):
            total += block.sum(axis=0, dtype=np.float64)
        mean = total / count

        squares = np.zeros(columns)
        for block in self._live_blocks(chunk_rows):
            squares += np.square(block.astype(np.float64) - mean).sum(axis=0)
        return np.sqrt(squares / count)

    def _live_blocks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        columns = self.layout.obs_dim + self.layout.act_dim
        for slot, _, length in modular_runs(self._first, len(self), self.allocated_rows):
            for start in range(slot, slot + length, chunk_rows):
                stop = min(start + chunk_rows, slot + length)
                yield self._data[start:stop, :columns]

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Return the configuration and live contents as numpy arrays and Python scalars."""
        finals = self._finals
        obs_dim = self.layout.obs_dim
        return {
            "obs_dim": self.layout.obs_dim,
            "act_dim": self.layout.act_dim,
            "compact": self.layout.compact,
            "capacity": self.capacity,
            "max_bytes": self.max_bytes,
            "extra_bytes_per_row": self.extra_bytes_per_row,
            "first_id": self._first,
            "next_id": self._next,
            "allocated_rows": self.allocated_rows,
            "rows": self.live_rows(),
            "final_ids": finals.ids.copy() if finals else np.zeros(0, dtype=np.int64),
            "final_obs": finals.observations.copy() if finals else np.zeros((0, obs_dim), np.float32),
            "has_pending": self._has_pending,
            "pending": self._pending.copy(),
            "cap_warned": self._cap_warned,
            "evicted": self._evicted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore contents saved by `state_dict` from a storage of the same configuration."""
        expected = {
            "obs_dim": self.layout.obs_dim,
            "act_dim": self.layout.act_dim,
            "compact": self.layout.compact,
            "capacity": self.capacity,
            "max_bytes": self.max_bytes,
            "extra_bytes_per_row": self.extra_bytes_per_row,
        }
        mismatches = [
            f"{key} is {state.get(key)!r} in the checkpoint but {value!r} in this buffer"
            for key, value in expected.items()
            if state.get(key) != value
        ]
        if mismatches:
            raise ValueError(
                "replay checkpoint does not match this buffer: " + "; ".join(mismatches)
                + ". Build the buffer with the checkpoint's configuration."
            )

        rows = np.asarray(state["rows"], dtype=np.float32)
        first, following = int(state["first_id"]), int(state["next_id"])
        allocated = int(state["allocated_rows"])
        if rows.shape != (following - first, self.layout.width) or allocated < len(rows):
            raise ValueError(
                f"replay checkpoint rows have shape {rows.shape}, which does not fit ids "
                f"[{first}, {following}) in {allocated} rows of width {self.layout.width}"
            )

        data = np.empty((allocated, self.layout.width), dtype=np.float32)
        for slot, offset, length in modular_runs(first, len(rows), allocated):
            data[slot:slot + length] = rows[offset:offset + length]
        self._data = data
        self._first = first
        self._next = following

        if self._finals is not None:
            self._finals.clear()
            self._finals.append(np.asarray(state["final_ids"], dtype=np.int64),
                                np.asarray(state["final_obs"], dtype=np.float32))
        self._has_pending = bool(state["has_pending"])
        self._pending[:] = np.asarray(state["pending"], dtype=np.float32)
        self._cap_warned = bool(state["cap_warned"])
        self._evicted = int(state["evicted"])


def storage_problems(
    obs_dim: Any,
    act_dim: Any,
    capacity: Any,
    max_bytes: Any,
    compact: Any,
    extra_bytes_per_row: int = 0,
    initial_rows: Any = INITIAL_ROWS,
) -> list[str | None]:
    """Return the problems with storage arguments (None entries mean no problem)."""
    problems = [
        positive_int_problem("obs_dim", obs_dim),
        positive_int_problem("act_dim", act_dim),
        positive_int_problem("initial_rows", initial_rows),
    ]
    if capacity is not None:
        problems.append(positive_int_problem("capacity", capacity))
    if not isinstance(compact, (bool, np.bool_)):
        problems.append(f"compact must be a bool, got {compact!r}")
    if max_bytes is not None:
        problems.append(nonnegative_int_problem("max_bytes", max_bytes))
    if not all(problem is None for problem in problems):
        return problems

    per_row = bytes_per_row(obs_dim, act_dim, bool(compact)) + extra_bytes_per_row
    if max_bytes is not None and max_bytes < per_row:
        problems.append(f"max_bytes={max_bytes} is smaller than one transition ({per_row} bytes); "
                        f"pass max_bytes >= {per_row}, or None for no cap")
    return problems


def bytes_per_row(obs_dim: int, act_dim: int, compact: bool) -> int:
    """Return the bytes of one stored row for the given layout."""
    return RowLayout(obs_dim, act_dim, compact).width * FLOAT_BYTES
