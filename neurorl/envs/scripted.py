"""Scripted controllers that solve the navigation tasks without learning.

They serve as baselines and as the evidence, in tests, that each task can be solved. Each
controller reads only the observation, plus constants of the task (sizes, gains) that a
designer would know.
"""

from __future__ import annotations

import numpy as np

from neurorl.envs.nav2d import Nav2DEnv


class Nav2DGapFollower:
    """Steer a 2DNav agent toward the goal through the free direction closest to it.

    Each step scores every ray direction by its alignment with the goal and its free range,
    and picks the best. The free range is the smallest reading among that ray and its two
    neighbours, so that the agent's width fits. A push away from any reading closer than
    ``repulsion_range`` is added. A goal closer than the free range of its direction is
    approached straight.

    :param env: the 2DNav environment (wrapped or not) whose constants the controller reads
    :param clearance_weight: weight of the free range against goal alignment in the score
    :param repulsion_range: readings below this distance, in arena units, push the agent away
    """

    def __init__(self, env, clearance_weight: float = 0.6, repulsion_range: float = 0.15) -> None:
        nav = env.unwrapped
        if not isinstance(nav, Nav2DEnv):
            raise TypeError(f"Nav2DGapFollower needs a Nav2DEnv, got {type(nav).__name__}")
        if nav.n_rays < 3:
            raise ValueError(f"Nav2DGapFollower needs n_rays >= 3 to find gaps, got n_rays={nav.n_rays}")

        self.nav = nav
        self.clearance_weight = float(clearance_weight)
        self.repulsion_range = float(repulsion_range)
        self.slices = nav.observation_slices
        self.directions = nav.ray_sensor.directions

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """Return the action in [-1, 1]^2 (float32) for one observation."""
        nav = self.nav
        goal = observation[self.slices["goal_vector"]].astype(np.float64) * nav.half_size
        velocity = observation[self.slices["velocity"]].astype(np.float64) * nav.max_speed
        readings = observation[self.slices["rays"]].astype(np.float64) * nav.sensor_range

        direction = self._heading(goal, readings)
        distance = float(np.linalg.norm(goal))
        speed = nav.max_speed * min(1.0, distance / 0.3 + 0.2)
        return self._action_for_velocity(direction * speed, velocity)

    def _heading(self, goal: np.ndarray, readings: np.ndarray) -> np.ndarray:
        distance = float(np.linalg.norm(goal))
        goal_direction = goal / max(distance, 1e-9)

        free = np.minimum(readings, np.minimum(np.roll(readings, 1), np.roll(readings, -1)))
        alignment = self.directions @ goal_direction

        # Rays point at fixed angles, so the goal lies between two of them: if both of those
        # are free to the goal, go straight.
        nearest = np.argsort(-alignment)[:2]
        if np.all(free[nearest] >= min(distance, self.nav.sensor_range) - 1e-9):
            heading = goal_direction
        else:
            score = alignment + self.clearance_weight * free / self.nav.sensor_range
            heading = self.directions[int(np.argmax(score))]

        close = readings < self.repulsion_range
        if close.any():
            push = -(self.directions[close] * (self.repulsion_range - readings[close])[:, None]).sum(axis=0)
            heading = heading + push / self.repulsion_range

        return heading / max(float(np.linalg.norm(heading)), 1e-9)

    def _action_for_velocity(self, target: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        nav = self.nav
        if nav.dynamics == "velocity":
            action = target / nav.max_speed
        else:
            # Invert one Euler step of dv/dt = max_acceleration * a - drag * v.
            action = ((target - velocity) / nav.dt + nav.drag * velocity) / nav.max_acceleration
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class ReacherJacobianController:
    """Drive the Reacher-v5 fingertip to the observed target with a damped Jacobian controller.

    The desired fingertip velocity points at the target, proportional to the error. Damped
    least squares maps it to joint velocities, and a velocity loop turns those into torques.
    Works on Reacher-v5 observations and on ReacherNav's (the extra last value is ignored).

    :param position_gain: desired fingertip velocity per metre of error (1/s)
    :param velocity_gain: action per rad/s of joint velocity error
    :param damping: damping of the least-squares inverse, in m^2
    :param max_speed: cap on the desired fingertip speed (m/s), which keeps the arm from
        whipping through the stretched-out singular pose
    """

    # Lengths of Reacher-v5's links in metres: base to elbow, elbow to fingertip body.
    UPPER_LINK = 0.1
    LOWER_LINK = 0.11

    def __init__(
        self,
        position_gain: float = 5.0,
        velocity_gain: float = 0.05,
        damping: float = 1e-4,
        max_speed: float = 0.5,
    ) -> None:
        self.position_gain = float(position_gain)
        self.max_speed = float(max_speed)
        self.velocity_gain = float(velocity_gain)
        self.damping = float(damping)

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """Return the torque action in [-1, 1]^2 (float32) for one observation."""
        observation = np.asarray(observation, dtype=np.float64)
        cos, sin = observation[0:2], observation[2:4]
        joint_velocity = observation[6:8]
        error = observation[8:10]

        jacobian = self._jacobian(cos, sin)
        fingertip_velocity = -self.position_gain * error
        speed = float(np.linalg.norm(fingertip_velocity))
        if speed > self.max_speed:
            fingertip_velocity *= self.max_speed / speed
        gram = jacobian @ jacobian.T + self.damping * np.eye(2)
        target_joint_velocity = jacobian.T @ np.linalg.solve(gram, fingertip_velocity)

        action = self.velocity_gain * (target_joint_velocity - joint_velocity)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _jacobian(self, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        # Angle of the lower link is the sum of both joint angles.
        cos_sum = cos[0] * cos[1] - sin[0] * sin[1]
        sin_sum = sin[0] * cos[1] + cos[0] * sin[1]
        return np.array(
            [
                [-self.UPPER_LINK * sin[0] - self.LOWER_LINK * sin_sum, -self.LOWER_LINK * sin_sum],
                [self.UPPER_LINK * cos[0] + self.LOWER_LINK * cos_sum, self.LOWER_LINK * cos_sum],
            ]
        )


class AntGaitController:
    """Walk the AntNav ant toward its goal with an open-loop gait steered by leg relabelling.

    Each leg follows a sinusoidal hip swing and ankle bend, tracked by a PD loop on the joint
    angles. The ant is symmetric under a 90 degree turn about the vertical axis, so relabelling
    the legs by one place turns the walking direction by 90 degrees in the body frame. Of the
    four labellings, the controller picks the one whose direction is nearest the goal. It
    switches only when the current one is more than ``switch_angle`` off, so that the gait is
    not broken every step. The controller counts its calls for the gait phase: make
    one per episode, or call ``reset()``.

    The gait constants were found by a random search over 300 candidates of this gait family
    (seed 0), which maximized the distance walked in 5 s from Ant-v5's reset. ``HEADING`` is
    the body-frame direction of that walk, measured from a reset without noise.

    :param dt: duration of one environment step in seconds (AntNav: 0.05)
    :param switch_angle: heading error in radians above which the labelling is re-chosen
    """

    HIP_AMPLITUDE = 0.41
    ANKLE_CENTRE = 0.6726
    ANKLE_AMPLITUDE = 0.241
    ANGULAR_FREQUENCY = 13.28
    LEG_PHASES = (0.0, 1.8585, 0.7576, 0.9987)
    ANKLE_PHASE_LAG = 0.8956
    POSITION_GAIN = 2.649
    VELOCITY_GAIN = 0.1031
    HEADING = -0.8236

    # Ant-v5 ankles bend within 30 to 70 degrees; legs 2 and 3 have mirrored joint axes.
    ANKLE_LIMITS = (np.radians(30.0), np.radians(70.0))
    ANKLE_SIGNS = (1.0, -1.0, -1.0, 1.0)
    # Ant-v5 actuators run hip_4, ankle_4, hip_1, ankle_1, ...: actuator pair j drives this leg.
    ACTUATED_LEGS = (3, 0, 1, 2)

    def __init__(self, dt: float = 0.05, switch_angle: float = np.radians(60.0)) -> None:
        self.dt = float(dt)
        self.switch_angle = float(switch_angle)
        self.reset()

    def reset(self) -> None:
        """Restart the gait phase and forget the chosen leg labelling."""
        self.steps = 0
        self.shift: int | None = None

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """Return the torque action in [-1, 1]^8 (float32) for one AntNav observation."""
        observation = np.asarray(observation, dtype=np.float64)
        self._choose_shift(observation)
        time = self.steps * self.dt
        self.steps += 1

        # Ant-v5 observation: z, quaternion (4), 8 joint angles, 6 torso velocities, 8 joint velocities.
        angles, velocities = observation[5:13], observation[19:27]
        action = np.zeros(8)
        for pair, leg in enumerate(self.ACTUATED_LEGS):
            hip_target, ankle_target = self._leg_targets(leg, time)
            action[2 * pair] = self._pd(hip_target, angles[2 * leg], velocities[2 * leg])
            action[2 * pair + 1] = self._pd(ankle_target, angles[2 * leg + 1], velocities[2 * leg + 1])
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _choose_shift(self, observation: np.ndarray) -> None:
        w, x, y, z = observation[1:5]
        yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        goal = observation[-2:]
        goal_angle = np.arctan2(goal[1], goal[0]) - yaw

        def error(shift: int) -> float:
            difference = goal_angle - (self.HEADING + shift * np.pi / 2.0)
            return abs((difference + np.pi) % (2.0 * np.pi) - np.pi)

        if self.shift is None or error(self.shift) > self.switch_angle:
            self.shift = min(range(4), key=error)

    def _leg_targets(self, leg: int, time: float) -> tuple[float, float]:
        # The leg plays the part of leg (leg - shift) of the unturned gait.
        phase = self.ANGULAR_FREQUENCY * time + self.LEG_PHASES[(leg - self.shift) % 4]
        hip = self.HIP_AMPLITUDE * np.sin(phase)
        bend = self.ANKLE_CENTRE + self.ANKLE_AMPLITUDE * np.sin(phase + self.ANKLE_PHASE_LAG)
        bend = np.clip(bend, *self.ANKLE_LIMITS)
        return hip, self.ANKLE_SIGNS[leg] * bend

    def _pd(self, target: float, angle: float, velocity: float) -> float:
        return self.POSITION_GAIN * (target - angle) - self.VELOCITY_GAIN * velocity
