"""AntNav: Gymnasium's Ant-v5 quadruped walking to random goals in the plane.

The model, simulation, proprioceptive observation and the control, contact and healthy terms
come from gymnasium.envs.mujoco.ant_v5.AntEnv. This subclass replaces the forward-velocity
reward with progress toward a goal. Registered as ``neurorl/AntNav-v0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.spaces import Box

from neurorl.envs._checks import is_finite_number, is_pair, validate_action


class AntNavEnv(AntEnv):
    """Walk the Ant-v5 torso to within goal_radius of a random goal.

    Each episode draws a goal at a uniform angle and a distance in goal_distance_range from the
    torso's start. The progress term of the reward is progress_weight times the decrease of
    the torso-goal distance divided by dt, which is the speed toward the goal on the scale of
    Ant-v5's forward reward. Ant-v5's healthy reward is added and its control and contact
    costs subtracted, and the step that reaches the goal earns goal_bonus. Reaching the goal or becoming
    unhealthy (Ant-v5's torso height test) terminates the episode.

    The healthy reward defaults to 0.1 instead of Ant-v5's 1.0. A reached goal ends the
    episode, so with 1.0 per step an agent would earn more by standing until the time
    limit (up to 1000) than by walking to the goal (about 20 per metre of progress plus
    goal_bonus).

    Observation (float32): Ant-v5's observation, then the goal minus the torso position (x and
    y in the world frame, 2 values). With Ant-v5's default arguments its observation has 105
    values: 13 qpos without the torso x and y, 14 qvel and 78 clipped external contact forces.

    :param goal_distance_range: (min, max) distance of the goal from the start, in metres
    :param goal_radius: torso-goal distance that counts as reached, in metres (> 0)
    :param progress_weight: weight of the speed toward the goal (>= 0)
    :param goal_bonus: reward for reaching the goal (>= 0)
    :param healthy_reward: reward per healthy step, passed to AntEnv
    :param kwargs: passed to AntEnv (render_mode, ctrl_cost_weight, ...)
    """

    def __init__(
        self,
        goal_distance_range: tuple[float, float] = (2.0, 4.0),
        goal_radius: float = 0.5,
        progress_weight: float = 1.0,
        goal_bonus: float = 100.0,
        healthy_reward: float = 0.1,
        **kwargs: Any,
    ) -> None:
        _validate_arguments(goal_distance_range, goal_radius, progress_weight, goal_bonus)

        self.goal_distance_range = (float(goal_distance_range[0]), float(goal_distance_range[1]))
        self.goal_radius = float(goal_radius)
        self.progress_weight = float(progress_weight)
        self.goal_bonus = float(goal_bonus)
        self.goal = np.zeros(2)
        self._requested_goal: np.ndarray | None = None

        super().__init__(healthy_reward=healthy_reward, **kwargs)
        utils.EzPickle.__init__(
            self, goal_distance_range, goal_radius, progress_weight, goal_bonus, healthy_reward, **kwargs
        )
        size = self.observation_space.shape[0] + 2
        self.observation_space = Box(low=-np.inf, high=np.inf, shape=(size,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the ant as Ant-v5 does and draw a goal.

        ``options={"goal": (x, y)}`` fixes the goal, in world coordinates, instead of drawing it.
        """
        options = dict(options or {})
        unknown = set(options) - {"goal"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only valid key is 'goal'")
        self._requested_goal = _parse_goal(options["goal"]) if "goal" in options else None
        return super().reset(seed=seed, options=options)

    def reset_model(self) -> np.ndarray:
        """Reset the joints as Ant-v5 does, then place the goal."""
        super().reset_model()
        if self._requested_goal is not None:
            self.goal = self._requested_goal.copy()
        else:
            low, high = self.goal_distance_range
            angle = self.np_random.uniform(0.0, 2.0 * np.pi)
            distance = self.np_random.uniform(low, high)
            self.goal = self._torso_xy() + distance * np.array([np.cos(angle), np.sin(angle)])
        return self._get_obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Simulate one step and return (observation, reward, terminated, truncated, info).

        truncated is always False here, because the registered time limit (TimeLimit wrapper)
        truncates. A NaN or infinite action raises ValueError.
        """
        action = validate_action(action, self.model.nu)
        distance_before = self._goal_distance()
        self.do_simulation(action, self.frame_skip)
        distance_after = self._goal_distance()

        reached = distance_after <= self.goal_radius
        healthy = bool(self.is_healthy)
        reward_progress = self.progress_weight * (distance_before - distance_after) / self.dt
        reward_survive = self.healthy_reward
        reward_ctrl = -self.control_cost(action)
        reward_contact = -self.contact_cost
        reward_goal = self.goal_bonus * float(reached)
        reward = reward_progress + reward_survive + reward_ctrl + reward_contact + reward_goal

        terminated = reached or (not healthy and self._terminate_when_unhealthy)
        info = {
            "reward_progress": reward_progress,
            "reward_survive": reward_survive,
            "reward_ctrl": reward_ctrl,
            "reward_contact": reward_contact,
            "reward_goal": reward_goal,
            "distance": distance_after,
            "is_success": reached,
            **self._get_reset_info(),
        }
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), float(reward), bool(terminated), False, info

    def _torso_xy(self) -> np.ndarray:
        return self.data.body(self._main_body).xpos[:2].copy()

    def _goal_distance(self) -> float:
        return float(np.linalg.norm(self.goal - self._torso_xy()))

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([super()._get_obs(), self.goal - self._torso_xy()]).astype(np.float32)

    def _get_reset_info(self) -> dict[str, Any]:
        info = super()._get_reset_info()
        info["goal"] = self.goal.copy()
        return info


def _parse_goal(value: Any) -> np.ndarray:
    goal = np.asarray(value, dtype=np.float64)
    if goal.shape != (2,) or not np.all(np.isfinite(goal)):
        raise ValueError(f"reset option 'goal'={value!r} must be two finite numbers (x, y) in metres")
    return goal


def _validate_arguments(
    goal_distance_range: tuple[float, float], goal_radius: float, progress_weight: float, goal_bonus: float
) -> None:
    problems = []
    valid_range = (
        is_pair(goal_distance_range)
        and 0 <= goal_distance_range[0] <= goal_distance_range[1]
    )
    if not valid_range:
        problems.append(f"goal_distance_range={goal_distance_range!r} must be (min, max) with 0 <= min <= max")
    if not is_finite_number(goal_radius) or goal_radius <= 0:
        problems.append(f"goal_radius={goal_radius!r} must be a finite number > 0")
    if not is_finite_number(progress_weight) or progress_weight < 0:
        problems.append(f"progress_weight={progress_weight!r} must be a finite number >= 0")
    if not is_finite_number(goal_bonus) or goal_bonus < 0:
        problems.append(f"goal_bonus={goal_bonus!r} must be a finite number >= 0")
    if problems:
        raise ValueError("invalid AntNavEnv arguments: " + "; ".join(problems))

