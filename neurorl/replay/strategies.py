"""Replay buffers with one shared interface: fixed-capacity FIFO, unbounded and prioritized.

Every buffer stores transitions in a `TransitionStorage` (one row-major float32 array), samples
with a numpy Generator seeded from the run seed, validates its inputs before storing anything,
and round-trips its full state (contents, priorities and generator) through `state_dict`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, ClassVar, NamedTuple

import numpy as np

from neurorl.replay._validation import (
    as_flag,
    first_non_finite,
    is_real,
    nonnegative_int_problem,
    positive_int_problem,
    raise_problems,
)
from neurorl.replay.samplers import PrioritizedSampler, UniformSampler
from neurorl.replay.storage import TransitionStorage, storage_problems

STATE_FORMAT = "neurorl.replay"
STATE_VERSION = 1

# Rows converted per step of add_batch, which bounds its temporary memory.
BATCH_CHUNK_ROWS = 1 << 16


class ReplaySample(NamedTuple):
    """A sampled batch; every field is a numpy array with the batch as its first axis."""

    obs: np.ndarray
    """float32 [B, obs_dim]"""
    actions: np.ndarray
    """float32 [B, act_dim]"""
    rewards: np.ndarray
    """float32 [B]"""
    next_obs: np.ndarray
    """float32 [B, obs_dim]"""
    terminated: np.ndarray
    """float32 [B], 1.0 where the episode terminated (no bootstrapping)"""
    indices: np.ndarray
    """int64 [B], transition ids to pass back to `update_priorities`"""
    weights: np.ndarray
    """float32 [B], importance weights (ones for uniform sampling)"""


class ReplayBuffer:
    """Base class of the replay buffers: validation, storage, sampling and checkpoints.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        seed: Seed of the buffer's numpy Generator (sampling and checks); pass the run seed.
        capacity: Maximum number of transitions (oldest evicted first), or None for no limit.
        max_bytes: Memory cap in bytes; past it the buffer warns once and evicts the oldest
            transitions instead of growing. None means no cap.
        compact: Store each observation once (about 0.6x the memory for HalfCheetah).
        make_sampler: Builds the UniformSampler or PrioritizedSampler once the arguments are valid.
        extra_bytes_per_row: Bytes the sampler spends per row, charged against max_bytes.
        problems: Problems the subclass found in its own arguments, reported with the others.
    """

    kind: ClassVar[str] = "base"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        seed: int,
        capacity: int | None,
        max_bytes: int | None,
        compact: bool,
        make_sampler: Callable[[], UniformSampler | PrioritizedSampler],
        extra_bytes_per_row: int = 0,
        problems: list[str | None] | None = None,
    ) -> None:
        # Every argument is checked before anything is built, and all problems go in one error.
        problems = list(problems or [])
        problems.append(_seed_problem(seed))
        problems += storage_problems(obs_dim, act_dim, capacity, max_bytes, compact,
                                     extra_bytes_per_row)
        raise_problems(type(self).__name__, problems)

        sampler = make_sampler()
        self._storage = TransitionStorage(
            obs_dim,
            act_dim,
            capacity=capacity,
            max_bytes=max_bytes,
            compact=compact,
            extra_bytes_per_row=sampler.extra_bytes_per_row,
        )
        self._sampler = sampler
        self._sampler.attach(self._storage)
        self._rng = np.random.default_rng(seed)
        self._seed = int(seed)
        layout = self._storage.layout
        self._row = np.empty(layout.plain_width, dtype=np.float32)
        self._columns = (layout.obs, layout.action, layout.reward, layout.next_obs)
        self._dims = (layout.obs_dim, layout.act_dim)

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return len(self._storage)

    def __repr__(self) -> str:
        layout = self._storage.layout
        return (
            f"{type(self).__name__}(obs_dim={layout.obs_dim}, act_dim={layout.act_dim}, "
            f"len={len(self)}, size_bytes={self.size_bytes})"
        )

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return self._storage.layout.obs_dim

    @property
    def act_dim(self) -> int:
        """Action size."""
        return self._storage.layout.act_dim

    @property
    def size_bytes(self) -> int:
        """Bytes allocated by the storage and the sampler."""
        return self._storage.size_bytes + self._sampler.nbytes

    @property
    def total_added(self) -> int:
        """Number of transitions ever added, including evicted and dropped ones."""
        return self._storage.next_id

    @property
    def evicted(self) -> int:
        """Transitions evicted by capacity or max_bytes so far."""
        return self._storage.evicted

    @property
    def storage(self) -> TransitionStorage:
        """Underlying storage, for inspection."""
        return self._storage

    # ------------------------------------------------------------------ adding

    def add(
        self,
        obs: Any,
        action: Any,
        reward: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any,
    ) -> None:
        """Add one transition; raise ValueError on wrong shapes or NaN/inf before storing it."""
        obs_cols, action_cols, reward_col, next_cols = self._columns
        obs_dim, act_dim = self._dims
        row = self._row
        row[obs_cols] = _as_vector("obs", obs, obs_dim)
        row[action_cols] = _as_vector("action", action, act_dim)
        row[reward_col] = reward if type(reward) is float else _as_scalar("reward", reward)
        row[next_cols] = _as_vector("next_obs", next_obs, obs_dim)
        row[-1] = as_flag("terminated", terminated)
        is_truncated = as_flag("truncated", truncated)

        # A float32 dot product is a cheap first test: it is finite whenever every entry is
        # finite and not huge, and the exact per-entry test settles the rare remaining cases.
        if not math.isfinite(row.dot(row)) and not np.isfinite(row).all():
            self._raise_non_finite_row(row)
        self._storage.append(row, is_truncated)

    def add_batch(
        self,
        obs: Any,
        actions: Any,
        rewards: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any,
    ) -> None:
        """Add N transitions in order; every field is validated before any is stored.

        Shapes: obs and next_obs [N, obs_dim], actions [N, act_dim] ([N] when act_dim is 1),
        rewards, terminated and truncated [N].
        """
        layout = self._storage.layout
        obs = _as_matrix("obs", obs, layout.obs_dim)
        actions = _as_matrix("actions", actions, layout.act_dim)
        rewards = _as_column("rewards", rewards)
        next_obs = _as_matrix("next_obs", next_obs, layout.obs_dim)
        terminated = _as_flags("terminated", terminated)
        truncated = _as_flags("truncated", truncated)
        _check_same_length(obs=obs, actions=actions, rewards=rewards, next_obs=next_obs,
                           terminated=terminated, truncated=truncated)

        for start in range(0, len(obs), BATCH_CHUNK_ROWS):
            stop = start + BATCH_CHUNK_ROWS
            rows = np.empty((len(obs[start:stop]), layout.plain_width), dtype=np.float32)
            rows[:, layout.obs] = obs[start:stop]
            rows[:, layout.action] = actions[start:stop]
            rows[:, layout.reward] = rewards[start:stop]
            rows[:, layout.next_obs] = next_obs[start:stop]
            rows[:, -1] = terminated[start:stop]
            self._storage.extend(rows, truncated[start:stop])

    # ------------------------------------------------------------------ sampling

    def sample(self, batch_size: int) -> ReplaySample:
        """Draw batch_size transitions (with replacement) with the buffer's generator."""
        raise_problems("sample", [positive_int_problem("batch_size", batch_size)])
        if len(self) == 0:
            raise ValueError(
                "cannot sample from an empty replay buffer (len 0); add transitions first"
            )

        ids, weights = self._sampler.sample(self._storage, self._rng, int(batch_size))
        obs, actions, rewards, next_obs, terminated = self._storage.gather(ids)
        return ReplaySample(obs, actions, rewards, next_obs, terminated, ids, weights)

    def update_priorities(self, indices: Any, td_errors: Any) -> None:
        """Set priorities from TD errors (prioritized samplers; a no-op for uniform ones).

        Ids evicted or dropped since they were sampled are skipped.
        """
        try:
            ids = np.asarray(indices)
            errors = np.asarray(td_errors, dtype=np.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"indices and td_errors must convert to numpy arrays ({error}); pass "
                "ReplaySample.indices and detached CPU values, e.g. td.detach().cpu().numpy()"
            ) from error
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise ValueError(
                f"indices must be a 1-D integer array (ReplaySample.indices), got shape "
                f"{ids.shape} and dtype {ids.dtype}"
            )
        errors = errors.reshape(-1) if errors.size == ids.size else errors
        if errors.shape != ids.shape:
            raise ValueError(
                f"td_errors has shape {np.shape(td_errors)} but indices has shape {ids.shape}; "
                "pass one TD error per sampled index"
            )
        if not np.isfinite(errors).all():
            raise ValueError(first_non_finite("td_errors", errors)
                             + "; priorities need finite TD errors")
        never_added = (ids < 0) | (ids >= self._storage.next_id)
        if never_added.any():
            raise ValueError(
                f"indices contains id {int(ids[never_added][0])}, which this buffer never stored "
                f"(ids run from 0 to {self._storage.next_id - 1}); pass ReplaySample.indices"
            )
        self._sampler.update(self._storage, ids.astype(np.int64), errors)

    def after_update(self, policy: Callable[[np.ndarray], np.ndarray], step: int) -> Any:
        """Hook called after each actor update; plain buffers do nothing and return None."""
        return None

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Return the full state: configuration, contents, priorities and generator state.

        Values are numpy arrays, Python scalars, strings, None and nested dicts only.
        """
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "kind": self.kind,
            "seed": self._seed,
            "options": self.options(),
            "storage": self._storage.state_dict(),
            "sampler": self._sampler.state_dict(self._storage),
            "rng": _generator_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict`; later samples match the saved buffer's exactly."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"not a replay checkpoint of format {STATE_FORMAT!r} version {STATE_VERSION}: "
                f"got format {state.get('format')!r} version {state.get('version')!r}"
            )
        if state.get("kind") != self.kind:
            raise ValueError(
                f"replay checkpoint is of kind {state.get('kind')!r} but this buffer is "
                f"{self.kind!r}; load it into a buffer made with make_replay({state.get('kind')!r})"
            )
        self._check_options(state.get("options", {}))
        # NOTE: a damaged state that passes the checks above can still fail further down. The
        # buffer is then partly loaded, so build a new buffer before trying another state.
        self._storage.load_state_dict(state["storage"])
        self._sampler.load_state_dict(state["sampler"], self._storage)
        self._rng.bit_generator.state = _restore_generator_state(state["rng"])
        self._seed = int(state["seed"])

    def options(self) -> dict[str, Any]:
        """Return the constructor options besides obs_dim, act_dim and seed."""
        storage = self._storage
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "capacity": storage.capacity,
                "max_bytes": storage.max_bytes, "compact": storage.layout.compact}

    # ------------------------------------------------------------------ helpers

    def _check_options(self, saved: dict[str, Any]) -> None:
        mine = self.options()
        mismatches = [
            f"{key} is {saved.get(key)!r} in the checkpoint but {value!r} in this buffer"
            for key, value in mine.items()
            if _plain(saved.get(key)) != _plain(value)
        ]
        if mismatches:
            raise ValueError(
                "replay checkpoint does not match this buffer: " + "; ".join(mismatches)
                + ". Build the buffer with the checkpoint's options (state['options'])."
            )

    def _raise_non_finite_row(self, row: np.ndarray) -> None:
        layout = self._storage.layout
        fields = {
            "obs": row[layout.obs],
            "action": row[layout.action],
            "reward": row[layout.reward:layout.reward + 1],
            "next_obs": row[layout.next_obs],
        }
        for name, values in fields.items():
            if not np.isfinite(values).all():
                raise ValueError(
                    first_non_finite(name, values)
                    + " after conversion to float32; the buffer stores finite values only, so "
                    "check the environment output (or clip values beyond ±3.4e38)"
                )


class FifoReplay(ReplayBuffer):
    """Fixed-capacity buffer: once full, each new transition evicts the oldest (FIFO).

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        capacity: Maximum number of transitions (PopSAN and CleanRL use 1e6).
        seed: Seed of the sampling generator; pass the run seed.
        max_bytes: Optional memory cap in bytes (see ReplayBuffer).
        compact: Store each observation once.
    """

    kind = "fifo"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        capacity: int,
        seed: int,
        max_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        super().__init__(obs_dim, act_dim, seed=seed, capacity=capacity, max_bytes=max_bytes,
                         compact=compact, make_sampler=UniformSampler,
                         problems=[positive_int_problem("capacity", capacity)] if capacity is None
                         else [])


class UnboundedReplay(ReplayBuffer):
    """Buffer without a size limit that never trims: the growth-only ablation of resilient
    replay (Xu et al., TPAMI 2026). Only max_bytes, when given, bounds it.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        seed: Seed of the sampling generator; pass the run seed.
        max_bytes: Optional memory cap in bytes; past it the oldest transitions are evicted.
        compact: Store each observation once.
    """

    kind = "unbounded"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        seed: int,
        max_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        super().__init__(obs_dim, act_dim, seed=seed, capacity=None, max_bytes=max_bytes,
                         compact=compact, make_sampler=UniformSampler)


class PrioritizedReplay(ReplayBuffer):
    """Fixed-capacity FIFO buffer with proportional prioritized sampling on a sum tree.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        capacity: Maximum number of transitions, or None for no limit.
        seed: Seed of the sampling generator; pass the run seed.
        alpha: Priority exponent α (0 is uniform).
        beta0: Importance-sampling exponent β at the start, annealed linearly to 1.
        beta_steps: Added transitions over which β reaches 1.
        priority_eps: Constant added to |TD error| so that every priority is positive.
        max_bytes: Optional memory cap in bytes, including the priority trees.
        compact: Store each observation once.
    """

    kind = "prioritized"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        capacity: int | None,
        seed: int,
        alpha: float = 0.6,
        beta0: float = 0.4,
        beta_steps: int = 1_000_000,
        priority_eps: float = 1e-6,
        max_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        problems = prioritized_problems(alpha, beta0, beta_steps, priority_eps)
        super().__init__(
            obs_dim, act_dim, seed=seed, capacity=capacity, max_bytes=max_bytes, compact=compact,
            make_sampler=lambda: PrioritizedSampler(alpha, beta0, beta_steps, priority_eps),
            extra_bytes_per_row=PrioritizedSampler.extra_bytes_per_row, problems=problems,
        )

    def options(self) -> dict[str, Any]:
        """Return the constructor options besides obs_dim, act_dim and seed."""
        return {**super().options(), **self._sampler.options()}

    @property
    def beta(self) -> float:
        """Current importance-sampling exponent β."""
        return self._sampler.beta(self._storage.next_id)

    def priorities(self) -> np.ndarray:
        """Return p^α of the live transitions, oldest first, float64 [len]."""
        return self._sampler.priorities(self._storage)


def prioritized_problems(alpha: Any, beta0: Any, beta_steps: Any, eps: Any) -> list[str | None]:
    """Return the problems with prioritized-sampling arguments (None entries are fine)."""
    problems: list[str | None] = [positive_int_problem("beta_steps", beta_steps)]
    if not (is_real(alpha) and math.isfinite(alpha) and alpha >= 0):
        problems.append(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not (is_real(beta0) and 0.0 <= beta0 <= 1.0):
        problems.append(f"beta0 must be a number in [0, 1], got {beta0!r}")
    if not (is_real(eps) and math.isfinite(eps) and eps > 0):
        problems.append(f"priority_eps must be a finite number > 0, got {eps!r}")
    return problems


# ---------------------------------------------------------------------- input conversion


def _seed_problem(seed: Any) -> str | None:
    problem = nonnegative_int_problem("seed", seed)
    return None if problem is None else problem + "; pass the run seed"


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} could not be converted to float32 ({error}); "
                         "pass numbers or a numeric numpy array") from error


def _as_vector(name: str, value: Any, dim: int) -> np.ndarray:
    array = value if isinstance(value, np.ndarray) and value.dtype == np.float32 else _as_array(
        name, value)
    if array.shape == (dim,) or (dim == 1 and array.shape == ()):
        return array
    raise ValueError(
        f"{name} has shape {array.shape}, expected ({dim},); add one transition at a time "
        "(use add_batch for many)"
    )


def _as_scalar(name: str, value: Any) -> float:
    array = _as_array(name, value)
    if array.size != 1 or array.ndim > 1:
        raise ValueError(f"{name} must be a single number, got shape {array.shape}")
    return array.reshape(())


def _as_matrix(name: str, value: Any, dim: int) -> np.ndarray:
    array = _as_array(name, value)
    if dim == 1 and array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{name} has shape {array.shape}, expected (N, {dim})")
    if not np.isfinite(array).all():
        raise ValueError(first_non_finite(name, array)
                         + "; the buffer stores finite values only, check the data source")
    return array


def _as_column(name: str, value: Any) -> np.ndarray:
    array = _as_array(name, value)
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {array.shape}, expected (N,)")
    if not np.isfinite(array).all():
        raise ValueError(first_non_finite(name, array)
                         + "; the buffer stores finite values only, check the data source")
    return array


def _as_flags(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {array.shape}, expected (N,)")
    if array.dtype != np.bool_:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must contain booleans (or 0/1), got values "
                             f"{np.unique(array)[:5].tolist()}")
        array = array.astype(bool)
    return array


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"add_batch fields have different lengths ({listing}); "
                         "pass one row per transition in every field")


def _plain(value: Any) -> Any:
    """Convert arrays (numpy or torch) and numpy scalars to Python lists and scalars, so that
    options survive a checkpoint's conversion and compare with ==."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def _generator_state(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {key: int(value) for key, value in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _restore_generator_state(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": str(state["bit_generator"]),
        "state": {key: int(value) for key, value in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def accepted_options(cls: type) -> set[str]:
    """Return the keyword arguments of cls besides obs_dim, act_dim and seed."""
    parameters = inspect.signature(cls.__init__).parameters
    return {name for name in parameters if name not in ("self", "obs_dim", "act_dim", "seed")}


