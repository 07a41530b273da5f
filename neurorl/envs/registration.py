"""Registration of the NeuroRL navigation tasks with Gymnasium under the ``neurorl/`` namespace."""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class TaskSpec:
    """Registry entry of one task: id, entry point, time limit and constructor arguments."""

    env_id: str
    entry_point: str
    max_episode_steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)


NAV2D_V2_KWARGS: dict[str, Any] = {
    "half_size": 1.5,
    "n_obstacles": 8,
    "n_moving_obstacles": 4,
    "n_rays": 32,
    "sensor_range": 0.75,
    "dynamics": "acceleration",
    "min_start_goal_distance": 1.5,
}

# Gymnasium parses 2DNav-v1 and 2DNav-v2 as two versions of one task and warns that v1 is out of
# date, which is wrong here: they are different tasks, named as in Xu et al. (TPAMI 2026). The
# filter below drops only that warning.
warnings.filterwarnings("ignore", message=r".*neurorl/2DNav-v1 is out of date.*")
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("neurorl/2DNav-v1", "neurorl.envs.nav2d:Nav2DEnv", 200),
    TaskSpec("neurorl/2DNav-v2", "neurorl.envs.nav2d:Nav2DEnv", 400, NAV2D_V2_KWARGS),
    TaskSpec("neurorl/ReacherNav-v0", "neurorl.envs.reacher_nav:ReacherNavEnv", 300),
    TaskSpec("neurorl/AntNav-v0", "neurorl.envs.ant_nav:AntNavEnv", 1000),
)

ENV_IDS: tuple[str, ...] = tuple(task.env_id for task in TASKS)


def register_envs() -> tuple[str, ...]:
    """Register every NeuroRL task with Gymnasium, skipping ids already registered.

    Calling it again is harmless, which matters because ``import neurorl.envs`` calls it and
    Gymnasium warns when an id is registered twice. Returns the ids of all NeuroRL tasks.
    """
    for task in TASKS:
        if task.env_id in gym.registry:
            continue
        gym.register(
            id=task.env_id,
            entry_point=task.entry_point,
            max_episode_steps=task.max_episode_steps,
            kwargs=dict(task.kwargs),
        )
    return ENV_IDS
