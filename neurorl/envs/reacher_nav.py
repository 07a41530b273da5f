"""ReacherNav: Gymnasium's two-link Reacher-v5 arm reaching a sequence of random targets.

The model, simulation and reward terms come from gymnasium.envs.mujoco.reacher_v5.ReacherEnv.
This subclass only changes how targets are drawn, when an episode ends and what the
observation contains. Registered as ``neurorl/ReacherNav-v0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.spaces import Box

from neurorl.envs._checks import is_finite_number, is_integer, is_pair, validate_action

# Reacher-v5's target slide joints allow +-0.27 per axis; targets stay inside that square.
_TARGET_JOINT_LIMIT = 0.27
_MAX_TARGET_DRAWS = 1000


class ReacherNavEnv(ReacherEnv):
    """Reach n_targets random targets in turn with the Reacher-v5 arm.

    When the fingertip comes within target_tolerance of the current target, the step earns
    target_bonus and a new target is drawn at least min_target_distance from the fingertip.
    Reaching the last target terminates the episode. Each step also earns Reacher-v5's
    reward_dist (minus the fingertip-target distance) and reward_ctrl (minus the squared
    action), with their weights passed through.

    Observation (float32, 11): Reacher-v5's 10 values (cos and sin of the two joint angles,
    target x and y, the two joint velocities, fingertip minus target x and y) followed by the
    fraction of targets still to reach, in (0, 1].

    :param n_targets: number of targets per episode (>= 1)
    :param target_tolerance: fingertip-target distance that counts as reached (> 0)
    :param target_bonus: reward for each target reached (>= 0)
    :param target_radius_range: (min, max) distance of targets from the arm's base; the
        fingertip reaches from about 0.018 to 0.21
    :param min_target_distance: minimum distance of a new target from the fingertip (>= 0)
    :param kwargs: passed to ReacherEnv (render_mode, reward_dist_weight, ...)
    """

    def __init__(
        self,
        n_targets: int = 5,
        target_tolerance: float = 0.02,
        target_bonus: float = 5.0,
        target_radius_range: tuple[float, float] = (0.05, 0.2),
        min_target_distance: float = 0.05,
        **kwargs: Any,
    ) -> None:
        _validate_arguments(n_targets, target_tolerance, target_bonus, target_radius_range, min_target_distance)

        self.n_targets = int(n_targets)
        self.target_tolerance = float(target_tolerance)
        self.target_bonus = float(target_bonus)
        self.target_radius_range = (float(target_radius_range[0]), float(target_radius_range[1]))
        self.min_target_distance = float(min_target_distance)
        self.targets_reached = 0

        super().__init__(**kwargs)
        utils.EzPickle.__init__(
            self, n_targets, target_tolerance, target_bonus, target_radius_range, min_target_distance, **kwargs
        )
        self.observation_space = Box(low=-np.inf, high=np.inf, shape=(11,), dtype=np.float32)

    def reset_model(self) -> np.ndarray:
        """Reset the arm as Reacher-v5 does, then draw the first target from target_radius_range."""
        self.targets_reached = 0
        super().reset_model()
        self._move_target(self._draw_target())
        return self._get_obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Simulate one step and return (observation, reward, terminated, truncated, info).

        The reward of a step that reaches a target is computed against that target, and the
        returned observation already shows the next one. truncated is always False here,
        because the registered time limit (TimeLimit wrapper) truncates. A NaN or infinite
        action raises ValueError.
        """
        action = validate_action(action, self.model.nu)
        self.do_simulation(action, self.frame_skip)
        reward, info = self._get_rew(action)

        distance = self._fingertip_distance()
        reached = distance <= self.target_tolerance
        if reached:
            self.targets_reached += 1
            reward += self.target_bonus
        terminated = self.targets_reached >= self.n_targets
        if reached and not terminated:
            self._move_target(self._draw_target())

        info.update(
            reward_target=self.target_bonus * float(reached),
            distance=distance,
            targets_reached=self.targets_reached,
            is_success=terminated,
        )
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), float(reward), bool(terminated), False, info

    def _fingertip_distance(self) -> float:
        offset = self.get_body_com("fingertip")[:2] - self.get_body_com("target")[:2]
        return float(np.linalg.norm(offset))

    def _draw_target(self) -> np.ndarray:
        fingertip = self.get_body_com("fingertip")[:2].copy()
        low, high = self.target_radius_range
        for _ in range(_MAX_TARGET_DRAWS):
            # Uniform over the annulus area: the radius goes as the square root of a uniform draw.
            radius = np.sqrt(self.np_random.uniform(low**2, high**2))
            angle = self.np_random.uniform(0.0, 2.0 * np.pi)
            target = radius * np.array([np.cos(angle), np.sin(angle)])
            if np.linalg.norm(target - fingertip) >= self.min_target_distance:
                return target
        raise RuntimeError(
            f"could not draw a target {self.min_target_distance} away from the fingertip in "
            f"{_MAX_TARGET_DRAWS} draws; lower min_target_distance"
        )

    def _move_target(self, target: np.ndarray) -> None:
        qpos = self.data.qpos.copy()
        qvel = self.data.qvel.copy()
        qpos[2:4] = target
        qvel[2:4] = 0.0
        self.set_state(qpos, qvel)

    def _get_obs(self) -> np.ndarray:
        remaining = (self.n_targets - self.targets_reached) / self.n_targets
        return np.append(super()._get_obs(), remaining).astype(np.float32)

    def _get_reset_info(self) -> dict[str, Any]:
        return {"distance": self._fingertip_distance(), "targets_reached": 0}


def _validate_arguments(
    n_targets: int,
    target_tolerance: float,
    target_bonus: float,
    target_radius_range: tuple[float, float],
    min_target_distance: float,
) -> None:
    problems = []
    if not is_integer(n_targets) or n_targets < 1:
        problems.append(f"n_targets={n_targets!r} must be an integer >= 1")
    if not is_finite_number(target_tolerance) or target_tolerance <= 0:
        problems.append(f"target_tolerance={target_tolerance!r} must be a finite number > 0")
    if not is_finite_number(target_bonus) or target_bonus < 0:
        problems.append(f"target_bonus={target_bonus!r} must be a finite number >= 0")
    if not is_finite_number(min_target_distance) or min_target_distance < 0:
        problems.append(f"min_target_distance={min_target_distance!r} must be a finite number >= 0")

    valid_range = (
        is_pair(target_radius_range)
        and 0 <= target_radius_range[0] <= target_radius_range[1] <= _TARGET_JOINT_LIMIT
    )
    if not valid_range:
        problems.append(
            f"target_radius_range={target_radius_range!r} must be (min, max) with "
            f"0 <= min <= max <= {_TARGET_JOINT_LIMIT}"
        )
    if problems:
        raise ValueError("invalid ReacherNavEnv arguments: " + "; ".join(problems))

