"""Transition storage and replay strategies: FIFO, unbounded, prioritized and resilient.

All buffers share one interface (add, add_batch, sample, update_priorities, after_update,
state_dict, load_state_dict). This package imports nothing from agents, networks or the
training loop: the resilient check takes any callable that maps states to actions.
"""

from __future__ import annotations

from typing import Any

from neurorl.replay.discrepancy import direct_discrepancy, kd_tree_discrepancy
from neurorl.replay.resilient import CheckRecord, ResilientReplay
from neurorl.replay.storage import ReplayMemoryWarning, TransitionStorage
from neurorl.replay.strategies import (
    FifoReplay,
    PrioritizedReplay,
    ReplayBuffer,
    ReplaySample,
    UnboundedReplay,
    accepted_options,
)

REPLAY_KINDS: dict[str, type[ReplayBuffer]] = {
    "fifo": FifoReplay,
    "unbounded": UnboundedReplay,
    "prioritized": PrioritizedReplay,
    "resilient": ResilientReplay,
}


def make_replay(kind: str, obs_dim: int, act_dim: int, *, seed: int, **options: Any) -> ReplayBuffer:
    """Build a replay buffer by name.

    Args:
        kind: "fifo", "unbounded", "prioritized" or "resilient".
        obs_dim: Observation size.
        act_dim: Action size.
        seed: Seed of the buffer's generator; pass the run seed.
        **options: Keyword arguments of the chosen class (for example capacity for "fifo").

    Raises:
        ValueError: For an unknown kind, an option the kind does not accept, or invalid values.
    """
    if kind not in REPLAY_KINDS:
        known = ", ".join(repr(name) for name in REPLAY_KINDS)
        raise ValueError(f"unknown replay kind {kind!r}; use one of {known}")

    cls = REPLAY_KINDS[kind]
    accepted = accepted_options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"replay kind {kind!r} does not accept option(s) {', '.join(unknown)}; "
            f"its options are {', '.join(sorted(accepted))}"
        )
    return cls(obs_dim, act_dim, seed=seed, **options)


__all__ = [
    "CheckRecord",
    "FifoReplay",
    "PrioritizedReplay",
    "REPLAY_KINDS",
    "ReplayBuffer",
    "ReplayMemoryWarning",
    "ReplaySample",
    "ResilientReplay",
    "TransitionStorage",
    "UnboundedReplay",
    "direct_discrepancy",
    "kd_tree_discrepancy",
    "make_replay",
]
