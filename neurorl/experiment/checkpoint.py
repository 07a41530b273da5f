"""Training checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint holds everything a run needs to continue as if never stopped: networks, optimisers,
normalisation statistics, the replay buffer, the energy ledger, the metrics so far, and every
random generator (Python, numpy, torch, the agent's, the buffer's, the environment's and its action
space's). Weights-only loading accepts tensors, plain containers and Python scalars, so numpy
arrays are stored as tensors with a marker and numpy scalars as Python scalars.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from neurorl.experiment.rundir import save_torch_atomic

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1
_ARRAY_MARKER = "__ndarray__"


def to_safe(value: Any) -> Any:
    """Convert numpy arrays and scalars inside ``value`` to types weights-only loading accepts."""
    if isinstance(value, np.ndarray):
        return {_ARRAY_MARKER: torch.from_numpy(np.ascontiguousarray(value)).clone()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: to_safe(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(to_safe(item) for item in value)
    if isinstance(value, list):
        return [to_safe(item) for item in value]
    return value


def from_safe(value: Any) -> Any:
    """Undo :func:`to_safe`: marked tensors become numpy arrays again."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY_MARKER}:
            return value[_ARRAY_MARKER].numpy()
        return {key: from_safe(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(from_safe(item) for item in value)
    if isinstance(value, list):
        return [from_safe(item) for item in value]
    return value


def global_rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def restore_global_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])


def env_rng_state(env: gym.Env) -> dict[str, Any]:
    """Return the generators an environment draws its resets and random actions from."""
    return {
        "env": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
    }


def restore_env_rng_state(env: gym.Env, state: dict[str, Any]) -> None:
    env.unwrapped.np_random.bit_generator.state = state["env"]
    env.action_space.np_random.bit_generator.state = state["action_space"]


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically and return the path."""
    path = run_dir / CHECKPOINT_NAME
    save_torch_atomic(path, to_safe({"format_version": FORMAT_VERSION, **state}))
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt`` with weights-only loading; raise FileNotFoundError if missing."""
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from; the run stopped before its first checkpoint")
    state = from_safe(torch.load(path, weights_only=True, map_location="cpu"))
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.get('format_version')!r} is not {FORMAT_VERSION}")
    return state
