"""2DNav: a disc agent that drives to a goal among circular obstacles, sensed by range rays.

Pure numpy, so that thousands of steps cost milliseconds. Registered as ``neurorl/2DNav-v1``
(velocity control, static obstacles) and ``neurorl/2DNav-v2`` (acceleration control, more
rays, static and moving obstacles); docs/envs.md lists both configurations.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from neurorl.envs import geometry
from neurorl.envs._checks import is_finite_number, is_integer, is_pair, validate_action

DYNAMICS = ("velocity", "acceleration")

# Colours of the rgb_array frame, RGB uint8.
_BACKGROUND = np.array([245, 245, 245], dtype=np.uint8)
_STATIC_COLOUR = np.array([90, 90, 90], dtype=np.uint8)
_MOVING_COLOUR = np.array([230, 120, 30], dtype=np.uint8)
_GOAL_COLOUR = np.array([40, 170, 70], dtype=np.uint8)
_AGENT_COLOUR = np.array([30, 90, 220], dtype=np.uint8)


class Nav2DEnv(gym.Env[np.ndarray, np.ndarray]):
    """Point-robot navigation in a square arena with circular obstacles and range sensors.

    The agent is a disc of radius ``agent_radius`` in the arena [-half_size, half_size]^2.
    Each episode draws new obstacles, a start and a goal from ``np_random``. Obstacles keep a
    gap of at least one agent diameter from each other and from the walls at reset, so every
    goal is reachable. The action in [-1, 1]^2 sets the velocity (``dynamics="velocity"``) or
    the acceleration against linear drag (``dynamics="acceleration"``).

    Observation (float32), in this order: position / half_size (2), velocity / max_speed (2),
    (goal - position) / half_size (2) and ray distances / sensor_range (n_rays). Rays point at
    evenly spaced world-frame angles starting along +x and measure from the agent's centre.
    Last, each moving obstacle adds its (centre - position) / half_size (2) and its velocity /
    moving_obstacle_speed (2).

    Reward: progress_weight times the decrease of the distance to the goal, minus
    collision_penalty on every step that touches a wall or obstacle, plus goal_bonus when the
    agent's centre comes within goal_radius of the goal, which terminates the episode.

    :param n_obstacles: number of static obstacles (>= 0)
    :param n_moving_obstacles: number of obstacles that move at constant speed and bounce (>= 0)
    :param obstacle_radius_range: (min, max) obstacle radius in arena units
    :param moving_obstacle_speed: speed of the moving obstacles in arena units per second
    :param n_rays: number of range sensors (>= 0)
    :param sensor_range: maximum range of each sensor in arena units
    :param dynamics: "velocity" or "acceleration"
    :param half_size: half the side of the square arena
    :param agent_radius: radius of the agent disc
    :param goal_radius: distance from the goal at which the episode terminates with success
    :param max_speed: maximum speed per axis in arena units per second
    :param max_acceleration: acceleration per unit action in arena units per second squared
    :param drag: linear drag coefficient (1/s) of the acceleration dynamics
    :param dt: duration of one step in seconds
    :param min_start_goal_distance: minimum straight-line distance between start and goal
    :param progress_weight: reward per arena unit of progress toward the goal
    :param collision_penalty: reward subtracted on a step with contact (>= 0)
    :param goal_bonus: reward added when the goal is reached (>= 0)
    :param render_mode: None or "rgb_array"
    :param render_size: side in pixels of the rgb_array frame
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        n_obstacles: int = 4,
        n_moving_obstacles: int = 0,
        obstacle_radius_range: tuple[float, float] = (0.1, 0.2),
        moving_obstacle_speed: float = 0.2,
        n_rays: int = 16,
        sensor_range: float = 0.5,
        dynamics: str = "velocity",
        half_size: float = 1.0,
        agent_radius: float = 0.05,
        goal_radius: float = 0.1,
        max_speed: float = 0.5,
        max_acceleration: float = 2.0,
        drag: float = 1.0,
        dt: float = 0.1,
        min_start_goal_distance: float = 1.0,
        progress_weight: float = 10.0,
        collision_penalty: float = 1.0,
        goal_bonus: float = 10.0,
        render_mode: str | None = None,
        render_size: int = 256,
    ) -> None:
        _validate_arguments(locals())

        self.n_obstacles = int(n_obstacles)
        self.n_moving_obstacles = int(n_moving_obstacles)
        self.obstacle_radius_range = (float(obstacle_radius_range[0]), float(obstacle_radius_range[1]))
        self.moving_obstacle_speed = float(moving_obstacle_speed)
        self.n_rays = int(n_rays)
        self.sensor_range = float(sensor_range)
        self.dynamics = dynamics
        self.half_size = float(half_size)
        self.agent_radius = float(agent_radius)
        self.goal_radius = float(goal_radius)
        self.max_speed = float(max_speed)
        self.max_acceleration = float(max_acceleration)
        self.drag = float(drag)
        self.dt = float(dt)
        self.min_start_goal_distance = float(min_start_goal_distance)
        self.progress_weight = float(progress_weight)
        self.collision_penalty = float(collision_penalty)
        self.goal_bonus = float(goal_bonus)
        self.render_mode = render_mode
        self.render_size = int(render_size)

        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.dt))}
        self.ray_sensor = geometry.RaySensor(self.n_rays, self.half_size, self.sensor_range)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = self._build_observation_space()

        self._static_centres = np.zeros((0, 2))
        self._static_radii = np.zeros(0)
        self._moving_centres = np.zeros((0, 2))
        self._moving_radii = np.zeros(0)
        self._moving_velocities = np.zeros((0, 2))
        self._centres = np.zeros((0, 2))
        self._radii = np.zeros(0)
        self._position = np.zeros(2)
        self._velocity = np.zeros(2)
        self._goal = np.zeros(2)
        self._distance = 0.0
        self._pixel_grid: np.ndarray | None = None

    @property
    def observation_slices(self) -> dict[str, slice]:
        """Slices of the observation vector by component name."""
        sizes = {
            "position": 2,
            "velocity": 2,
            "goal_vector": 2,
            "rays": self.n_rays,
            "moving_obstacles": 4 * self.n_moving_obstacles,
        }
        slices, start = {}, 0
        for name, size in sizes.items():
            slices[name] = slice(start, start + size)
            start += size
        return slices

    def _build_observation_space(self) -> spaces.Box:
        # Relative positions span two arena half-sizes, velocities one unit of their speed.
        per_moving_obstacle = np.array([2.0, 2.0, 1.0, 1.0])
        bounds = {
            "position": np.ones(2),
            "velocity": np.ones(2),
            "goal_vector": np.full(2, 2.0),
            "rays": np.ones(self.n_rays),
            "moving_obstacles": np.tile(per_moving_obstacle, self.n_moving_obstacles),
        }
        high = np.concatenate([bounds[name] for name in self.observation_slices]).astype(np.float32)
        low = -high
        low[self.observation_slices["rays"]] = 0.0
        return spaces.Box(low, high, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new layout, start and goal, and return the first observation and info.

        ``options`` may fix parts of the episode: "obstacles" (array (k, 3) of static obstacle
        x, y, radius, replacing the random static obstacles), "start" and "goal" (x, y). A fixed
        start or goal must lie inside the arena at least agent_radius from the walls.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"obstacles", "start", "goal"}
        if unknown:
            raise ValueError(
                f"unknown reset options {sorted(unknown)}; valid keys are 'obstacles', 'start', 'goal'"
            )

        self._place_obstacles(options.get("obstacles"))
        self._place_start_and_goal(options.get("start"), options.get("goal"))
        self._distance = float(np.linalg.norm(self._goal - self._position))
        return self._observation(), self._info(collided=False, reached=False)

    def _place_obstacles(self, fixed: Any) -> None:
        gap = 2.0 * self.agent_radius
        empty_centres, empty_radii = np.zeros((0, 2)), np.zeros(0)

        if fixed is None:
            self._static_centres, self._static_radii = geometry.sample_discs(
                self.np_random, self.n_obstacles, self.obstacle_radius_range,
                self.half_size, gap, empty_centres, empty_radii,
            )
        else:
            self._static_centres, self._static_radii = _parse_obstacles(fixed)

        all_centres, all_radii = geometry.sample_discs(
            self.np_random, self.n_moving_obstacles, self.obstacle_radius_range,
            self.half_size, gap, self._static_centres, self._static_radii,
        )
        n_static = len(self._static_radii)
        self._moving_centres = all_centres[n_static:]
        self._moving_radii = all_radii[n_static:]
        headings = self.np_random.uniform(0.0, 2.0 * np.pi, size=self.n_moving_obstacles)
        self._moving_velocities = self.moving_obstacle_speed * np.stack(
            [np.cos(headings), np.sin(headings)], axis=1
        )
        self._update_obstacle_arrays()

    def _place_start_and_goal(self, start: Any, goal: Any) -> None:
        clearance = self.agent_radius + 0.01

        if start is None:
            self._position = geometry.sample_free_point(
                self.np_random, self.half_size, clearance, self._centres, self._radii
            )
        else:
            self._position = self._parse_point(start, "start")

        if goal is None:
            self._goal = geometry.sample_free_point(
                self.np_random, self.half_size, clearance, self._static_centres, self._static_radii,
                away_from=self._position, min_distance=self.min_start_goal_distance,
            )
        else:
            self._goal = self._parse_point(goal, "goal")

        self._velocity = np.zeros(2)

    def _parse_point(self, value: Any, name: str) -> np.ndarray:
        point = np.asarray(value, dtype=np.float64)
        limit = self.half_size - self.agent_radius
        if point.shape != (2,) or not np.all(np.isfinite(point)) or np.any(np.abs(point) > limit):
            raise ValueError(
                f"reset option {name!r}={value!r} must be two finite numbers within "
                f"[-{limit}, {limit}] (half_size minus agent_radius)"
            )
        return point

    def _update_obstacle_arrays(self) -> None:
        # Rays and collisions read one stacked copy, refreshed whenever an obstacle moves.
        self._centres = np.vstack([self._static_centres, self._moving_centres])
        self._radii = np.concatenate([self._static_radii, self._moving_radii])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply an action for dt seconds and return (observation, reward, terminated, truncated, info).

        Actions outside [-1, 1] are clipped, and a NaN or infinite action raises ValueError.
        truncated is always False here, because the registered time limit (TimeLimit wrapper)
        truncates.
        """
        action = np.clip(validate_action(action, 2), -1.0, 1.0)

        if self.n_moving_obstacles > 0:
            self._moving_centres, self._moving_velocities = geometry.bounce_discs(
                self._moving_centres, self._moving_velocities, self._moving_radii,
                self._static_centres, self._static_radii, self.half_size, self.dt,
            )
            self._update_obstacle_arrays()

        velocity = self._next_velocity(action)
        self._position, self._velocity, collided = geometry.resolve_collisions(
            self._position + velocity * self.dt, velocity, self.agent_radius,
            self._centres, self._radii, self.half_size,
        )

        distance = float(np.linalg.norm(self._goal - self._position))
        reached = distance <= self.goal_radius
        reward = self.progress_weight * (self._distance - distance)
        reward -= self.collision_penalty * float(collided)
        reward += self.goal_bonus * float(reached)
        self._distance = distance

        return self._observation(), float(reward), bool(reached), False, self._info(collided, reached)

    def _next_velocity(self, action: np.ndarray) -> np.ndarray:
        if self.dynamics == "velocity":
            return action * self.max_speed

        # Explicit Euler step of dv/dt = max_acceleration * a - drag * v, clipped per axis.
        acceleration = self.max_acceleration * action - self.drag * self._velocity
        velocity = self._velocity + acceleration * self.dt
        return np.clip(velocity, -self.max_speed, self.max_speed)

    def _observation(self) -> np.ndarray:
        rays = self.ray_sensor.read(self._position, self._centres, self._radii)
        parts = [
            self._position / self.half_size,
            self._velocity / self.max_speed,
            (self._goal - self._position) / self.half_size,
            rays / self.sensor_range,
        ]
        if self.n_moving_obstacles > 0:
            relative = (self._moving_centres - self._position[None, :]) / self.half_size
            velocity = self._moving_velocities / max(self.moving_obstacle_speed, 1e-12)
            parts.append(np.concatenate([relative, velocity], axis=1).reshape(-1))

        observation = np.concatenate(parts).astype(np.float32)
        # Rounding to float32 can step past a bound by one ulp, so clip into the space.
        return np.clip(observation, self.observation_space.low, self.observation_space.high)

    def _info(self, collided: bool, reached: bool) -> dict[str, Any]:
        return {
            "distance": self._distance,
            "collision": bool(collided),
            "is_success": bool(reached),
            "position": self._position.copy(),
            "goal": self._goal.copy(),
        }

    @property
    def obstacles(self) -> np.ndarray:
        """Array (k, 3) of the current obstacle x, y and radius, static ones first."""
        return np.concatenate([self._centres, self._radii[:, None]], axis=1)

    def render(self) -> np.ndarray | None:
        """Draw the arena as an RGB uint8 array (render_size, render_size, 3); None without a mode."""
        if self.render_mode != "rgb_array":
            return None

        if self._pixel_grid is None:
            # Pixel centres in arena units, y up so that the image matches the arena's axes.
            ticks = (np.arange(self.render_size) + 0.5) / self.render_size * 2.0 - 1.0
            x, y = np.meshgrid(ticks * self.half_size, -ticks * self.half_size)
            self._pixel_grid = np.stack([x, y], axis=-1)

        frame = np.empty((self.render_size, self.render_size, 3), dtype=np.uint8)
        frame[:] = _BACKGROUND
        self._paint_discs(frame, self._static_centres, self._static_radii, _STATIC_COLOUR)
        self._paint_discs(frame, self._moving_centres, self._moving_radii, _MOVING_COLOUR)
        self._paint_discs(frame, self._goal[None, :], np.array([self.goal_radius]), _GOAL_COLOUR)
        self._paint_discs(frame, self._position[None, :], np.array([self.agent_radius]), _AGENT_COLOUR)
        return frame

    def _paint_discs(
        self, frame: np.ndarray, centres: np.ndarray, radii: np.ndarray, colour: np.ndarray
    ) -> None:
        for centre, radius in zip(centres.reshape(-1, 2), radii):
            inside = np.sum((self._pixel_grid - centre) ** 2, axis=-1) <= radius**2
            frame[inside] = colour


def _parse_obstacles(value: Any) -> tuple[np.ndarray, np.ndarray]:
    obstacles = np.asarray(value, dtype=np.float64)
    if obstacles.size == 0:
        return np.zeros((0, 2)), np.zeros(0)

    if obstacles.ndim != 2 or obstacles.shape[1] != 3 or not np.all(np.isfinite(obstacles)):
        raise ValueError(
            f"reset option 'obstacles' must be an array (k, 3) of finite x, y, radius, got {value!r}"
        )
    if np.any(obstacles[:, 2] <= 0.0):
        raise ValueError(
            f"reset option 'obstacles' has a radius <= 0 in {obstacles[:, 2].tolist()}; "
            "give every obstacle a positive radius"
        )
    return obstacles[:, :2].copy(), obstacles[:, 2].copy()


def _validate_arguments(arguments: dict[str, Any]) -> None:
    problems = []

    def require(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    for name in ("n_obstacles", "n_moving_obstacles", "n_rays"):
        value = arguments[name]
        require(is_integer(value) and value >= 0, f"{name}={value!r} must be an integer >= 0")
    for name in ("half_size", "agent_radius", "goal_radius", "max_speed", "max_acceleration", "dt",
                 "sensor_range"):
        value = arguments[name]
        require(is_finite_number(value) and value > 0, f"{name}={value!r} must be a finite number > 0")
    for name in ("moving_obstacle_speed", "drag", "min_start_goal_distance", "progress_weight",
                 "collision_penalty", "goal_bonus"):
        value = arguments[name]
        require(is_finite_number(value) and value >= 0, f"{name}={value!r} must be a finite number >= 0")

    radius_range = arguments["obstacle_radius_range"]
    valid_range = (
        is_pair(radius_range)
        and 0 < radius_range[0] <= radius_range[1]
    )
    require(valid_range, f"obstacle_radius_range={radius_range!r} must be (min, max) with 0 < min <= max")

    require(arguments["dynamics"] in DYNAMICS, f"dynamics={arguments['dynamics']!r} must be one of {DYNAMICS}")
    require(arguments["render_mode"] in (None, "rgb_array"),
            f"render_mode={arguments['render_mode']!r} must be None or 'rgb_array'")
    render_size = arguments["render_size"]
    require(is_integer(render_size) and render_size >= 8,
            f"render_size={render_size!r} must be an integer >= 8")

    if not problems:
        problems.extend(_layout_problems(arguments))
    if problems:
        raise ValueError("invalid Nav2DEnv arguments: " + "; ".join(problems))


def _layout_problems(arguments: dict[str, Any]) -> list[str]:
    problems = []
    half_size = arguments["half_size"]
    min_radius, max_radius = arguments["obstacle_radius_range"]
    agent_radius = arguments["agent_radius"]

    # A step longer than the thinnest obstacle would let the agent tunnel through it.
    step_length = np.sqrt(2.0) * arguments["max_speed"] * arguments["dt"]
    if step_length >= 2.0 * (min_radius + agent_radius):
        problems.append(
            f"max_speed * dt * sqrt(2) = {step_length:.3g} lets the agent pass through an obstacle of "
            f"radius {min_radius} in one step; lower max_speed or dt"
        )

    # Rejection sampling needs room: keep the inflated obstacles under half the arena's area.
    n_total = arguments["n_obstacles"] + arguments["n_moving_obstacles"]
    covered = n_total * np.pi * (max_radius + 2.0 * agent_radius) ** 2
    if covered > 0.5 * (2.0 * half_size) ** 2:
        problems.append(
            f"{n_total} obstacles of radius up to {max_radius} cover more than half of the "
            f"{2 * half_size} x {2 * half_size} arena; use fewer or smaller obstacles"
        )

    if 2.0 * (max_radius + 2.0 * agent_radius) >= 2.0 * half_size:
        problems.append(f"obstacle_radius_range max {max_radius} does not fit in the arena of half_size {half_size}")

    diagonal = 2.0 * np.sqrt(2.0) * (half_size - agent_radius)
    if arguments["min_start_goal_distance"] >= 0.9 * diagonal:
        problems.append(
            f"min_start_goal_distance={arguments['min_start_goal_distance']} is too close to the arena "
            f"diagonal {diagonal:.3g}; lower it"
        )
    return problems

