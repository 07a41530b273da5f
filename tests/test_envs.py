"""Tests of the navigation tasks: registry, Gymnasium API, geometry, rewards and solvability."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import neurorl.envs
from neurorl.envs import ENV_IDS, Nav2DEnv, register_envs
from neurorl.envs import geometry
from neurorl.envs.registration import NAV2D_V2_KWARGS
from neurorl.envs.scripted import AntGaitController, Nav2DGapFollower, ReacherJacobianController

# Gymnasium reads 2DNav-v1 and 2DNav-v2 as two versions of one task and warns on every make
# of v1; the ids are fixed by Xu et al. (TPAMI 2026), so the warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:.*2DNav-v1 is out of date")

NAV2D_IDS = ("neurorl/2DNav-v1", "neurorl/2DNav-v2")
MUJOCO_IDS = ("neurorl/ReacherNav-v0", "neurorl/AntNav-v0")
EXPECTED_SHAPES = {
    "neurorl/2DNav-v1": ((22,), (2,)),
    "neurorl/2DNav-v2": ((54,), (2,)),
    "neurorl/ReacherNav-v0": ((11,), (2,)),
    "neurorl/AntNav-v0": ((107,), (8,)),
}
EXPECTED_TIME_LIMITS = {
    "neurorl/2DNav-v1": 200,
    "neurorl/2DNav-v2": 400,
    "neurorl/ReacherNav-v0": 300,
    "neurorl/AntNav-v0": 1000,
}
# Gymnasium's own MuJoCo tasks have unbounded observation spaces and draw the same warnings.
ALLOWED_CHECKER_WARNINGS = ("observation space minimum value is -infinity", "observation space maximum value is infinity")


def run_episode(env: gym.Env, policy, seed: int) -> tuple[float, dict, bool, bool, int]:
    """Run one episode and return (return, last info, terminated, truncated, steps)."""
    observation, info = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        observation, reward, terminated, truncated, info = env.step(policy(observation))
        total += reward
        steps += 1
        if terminated or truncated:
            return total, info, terminated, truncated, steps


def uniform_policy(action_space: gym.spaces.Box, seed: int):
    """Return a policy that samples actions uniformly with its own seeded generator."""
    rng = np.random.default_rng(seed)

    def act(_observation: np.ndarray) -> np.ndarray:
        return rng.uniform(action_space.low, action_space.high).astype(np.float32)

    return act


def rollout(env: gym.Env, seed: int, actions: np.ndarray) -> list[tuple]:
    """Reset with seed, apply the actions and return every (obs, reward, terminated) step."""
    observation, _ = env.reset(seed=seed)
    steps = [(observation.copy(), 0.0, False)]
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        steps.append((observation.copy(), reward, terminated))
        if terminated or truncated:
            break
    return steps


# ---------------------------------------------------------------- registry and API


def test_register_envs_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = register_envs()
        second = register_envs()

    assert first == second == ENV_IDS
    assert set(ENV_IDS) == set(EXPECTED_SHAPES)
    for env_id in ENV_IDS:
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_from_registry(env_id):
    env = gym.make(env_id)
    observation, info = env.reset(seed=0)
    observation_shape, action_shape = EXPECTED_SHAPES[env_id]

    assert env.spec.max_episode_steps == EXPECTED_TIME_LIMITS[env_id]
    assert env.observation_space.shape == observation_shape
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == action_shape
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1.0)
    assert np.all(env.action_space.high == 1.0)
    assert observation.dtype == np.float32
    assert observation in env.observation_space
    assert isinstance(info, dict)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_checker_passes(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # MuJoCo rendering needs an OpenGL context; it is tested apart in a subprocess.
        check_env(env.unwrapped, skip_render_check=env_id in MUJOCO_IDS)

    unexpected = [
        str(w.message)
        for w in caught
        if not any(allowed in str(w.message) for allowed in ALLOWED_CHECKER_WARNINGS)
        and "is out of date" not in str(w.message)
    ]
    assert unexpected == []
    env.close()


def test_import_skips_mujoco():
    code = "import sys, neurorl.envs; print('mujoco' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_reset_is_deterministic(env_id):
    env = gym.make(env_id)
    actions = np.random.default_rng(7).uniform(-1.0, 1.0, size=(15, env.action_space.shape[0])).astype(np.float32)

    first = rollout(env, 11, actions)
    second = rollout(env, 11, actions)
    other = rollout(env, 12, actions)

    assert len(first) == len(second)
    for (obs_a, reward_a, done_a), (obs_b, reward_b, done_b) in zip(first, second):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b
        assert done_a == done_b
    assert not np.array_equal(first[0][0], other[0][0])
    env.close()


# ---------------------------------------------------------------- 2DNav geometry


def march_ray(origin, direction, centres, radii, half_size, max_range, step=1e-4):
    """Sample a ray every step and return the first distance outside the arena or in a disc."""
    distances = np.arange(0.0, max_range + step, step)
    points = origin[None, :] + distances[:, None] * direction[None, :]
    blocked = np.any(np.abs(points) > half_size, axis=1)
    if len(radii):
        gaps = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
        blocked |= np.any(gaps < radii[None, :], axis=1)
    hits = np.flatnonzero(blocked)
    return distances[hits[0]] if len(hits) else max_range


def test_ray_sensor_matches_marching():
    rng = np.random.default_rng(3)
    sensor = geometry.RaySensor(n_rays=16, half_size=1.0, max_range=0.8)
    centres = np.array([[0.3, 0.1], [-0.4, -0.5], [0.0, 0.6]])
    radii = np.array([0.15, 0.2, 0.1])

    for origin in [np.array([0.0, 0.0]), np.array([0.9, -0.9]), rng.uniform(-0.9, 0.9, 2)]:
        if np.any(np.linalg.norm(origin - centres, axis=1) < radii):
            continue
        readings = sensor.read(origin, centres, radii)
        for direction, reading in zip(sensor.directions, readings):
            expected = min(march_ray(origin, direction, centres, radii, 1.0, 0.8), 0.8)
            assert abs(reading - expected) < 2e-4, (origin, direction, reading, expected)


def test_ray_sensor_axis_rays_hit_walls():
    sensor = geometry.RaySensor(n_rays=4, half_size=1.0, max_range=5.0)
    readings = sensor.read(np.array([0.25, -0.5]), np.zeros((0, 2)), np.zeros(0))

    # Rays along +x, +y, -x, -y reach the walls at x = 1, y = 1, x = -1, y = -1.
    np.testing.assert_allclose(readings, [0.75, 1.5, 1.25, 0.5], atol=1e-12)


def test_ray_sensor_inside_disc_reads_zero():
    sensor = geometry.RaySensor(n_rays=8, half_size=1.0, max_range=0.5)
    readings = sensor.read(np.array([0.1, 0.0]), np.array([[0.0, 0.0]]), np.array([0.3]))
    np.testing.assert_array_equal(readings, np.zeros(8))


def test_resolve_collisions_pushes_out():
    centres = np.array([[0.0, 0.0]])
    radii = np.array([0.2])
    position, velocity, collided = geometry.resolve_collisions(
        np.array([0.1, 0.0]), np.array([-1.0, 0.5]), 0.05, centres, radii, half_size=1.0
    )

    assert collided
    np.testing.assert_allclose(position, [0.25, 0.0], atol=1e-12)
    # The inward (normal) velocity is removed, the tangential part stays.
    np.testing.assert_allclose(velocity, [0.0, 0.5], atol=1e-12)


def test_resolve_collisions_clips_at_walls():
    position, velocity, collided = geometry.resolve_collisions(
        np.array([1.2, -0.3]), np.array([0.4, -0.2]), 0.05, np.zeros((0, 2)), np.zeros(0), half_size=1.0
    )

    assert collided
    np.testing.assert_allclose(position, [0.95, -0.3])
    np.testing.assert_allclose(velocity, [0.0, -0.2])


def test_resolve_collisions_free_space_unchanged():
    position, velocity, collided = geometry.resolve_collisions(
        np.array([0.5, 0.5]), np.array([0.1, 0.1]), 0.05, np.array([[0.0, 0.0]]), np.array([0.2]), 1.0
    )
    assert not collided
    np.testing.assert_array_equal(position, [0.5, 0.5])
    np.testing.assert_array_equal(velocity, [0.1, 0.1])


def test_sampled_layout_keeps_gaps():
    env = Nav2DEnv(**NAV2D_V2_KWARGS)
    for seed in range(20):
        env.reset(seed=seed)
        centres, radii = env._centres, env._radii
        gap = 2.0 * env.agent_radius

        distance = np.linalg.norm(centres[:, None] - centres[None, :], axis=2)
        required = radii[:, None] + radii[None, :] + gap
        off_diagonal = ~np.eye(len(radii), dtype=bool)
        assert np.all(distance[off_diagonal] >= required[off_diagonal] - 1e-9)
        assert np.all(np.abs(centres) + radii[:, None] <= env.half_size - gap + 1e-9)

        start, goal = env._position, env._goal
        assert np.linalg.norm(goal - start) >= env.min_start_goal_distance
        assert np.all(np.linalg.norm(start - centres, axis=1) >= radii + env.agent_radius)


def test_sample_discs_crowded_raises():
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="could not place an obstacle"):
        geometry.sample_discs(rng, 30, (0.4, 0.4), 1.0, 0.1, np.zeros((0, 2)), np.zeros(0))


# ---------------------------------------------------------------- 2DNav dynamics and rewards


def test_nav2d_observation_layout():
    env = Nav2DEnv(**NAV2D_V2_KWARGS)
    observation, info = env.reset(seed=5)
    observation, _, _, _, info = env.step(np.array([0.5, -0.5], dtype=np.float32))
    parts = env.observation_slices

    np.testing.assert_allclose(observation[parts["position"]], info["position"] / env.half_size, rtol=1e-6)
    np.testing.assert_allclose(
        observation[parts["goal_vector"]], (info["goal"] - info["position"]) / env.half_size, rtol=1e-5, atol=1e-6
    )
    readings = env.ray_sensor.read(info["position"], env._centres, env._radii)
    np.testing.assert_allclose(observation[parts["rays"]], readings / env.sensor_range, rtol=1e-6)

    moving = observation[parts["moving_obstacles"]].reshape(env.n_moving_obstacles, 4)
    np.testing.assert_allclose(moving[:, :2], (env._moving_centres - info["position"]) / env.half_size, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(moving[:, 2:], axis=1), 1.0, rtol=1e-6)


def test_nav2d_reward_is_progress():
    env = Nav2DEnv(n_obstacles=0)
    env.reset(seed=0, options={"start": (-0.5, 0.0), "goal": (0.5, 0.0)})
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))

    moved = env.max_speed * env.dt
    assert not terminated
    assert not info["collision"]
    assert reward == pytest.approx(env.progress_weight * moved)
    assert info["distance"] == pytest.approx(1.0 - moved)


def test_nav2d_goal_terminates_with_bonus():
    env = Nav2DEnv(n_obstacles=0)
    env.reset(seed=0, options={"start": (0.0, 0.0), "goal": (0.08, 0.0)})
    _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))

    progress = 0.08 - abs(0.08 - env.max_speed * env.dt)
    assert terminated
    assert not truncated
    assert info["is_success"]
    assert reward == pytest.approx(env.progress_weight * progress + env.goal_bonus)


def test_nav2d_collision_penalty():
    env = Nav2DEnv(n_obstacles=0)
    limit = env.half_size - env.agent_radius
    env.reset(seed=0, options={"start": (limit, 0.0), "goal": (0.0, 0.0)})
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))

    assert info["collision"]
    assert not terminated
    assert info["position"][0] == pytest.approx(limit)
    assert reward == pytest.approx(-env.collision_penalty)


def test_nav2d_obstacle_blocks_agent():
    env = Nav2DEnv(n_obstacles=0)
    obstacles = np.array([[0.0, 0.0, 0.2]])
    env.reset(seed=0, options={"obstacles": obstacles, "start": (-0.26, 0.0), "goal": (0.8, 0.0)})
    for _ in range(10):
        _, _, _, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))

    assert info["collision"]
    assert np.linalg.norm(info["position"]) == pytest.approx(0.2 + env.agent_radius)


def test_nav2d_acceleration_dynamics():
    env = Nav2DEnv(n_obstacles=0, dynamics="acceleration")
    env.reset(seed=0, options={"start": (0.0, 0.0), "goal": (0.9, 0.9)})
    velocity = np.zeros(2)
    # Ten steps move the agent less than 0.5 per axis, so it never reaches a wall.
    for _ in range(10):
        observation, _, _, _, info = env.step(np.array([1.0, -0.25], dtype=np.float32))
        assert not info["collision"]
        velocity = np.clip(velocity + (env.max_acceleration * np.array([1.0, -0.25]) - env.drag * velocity) * env.dt,
                           -env.max_speed, env.max_speed)

    np.testing.assert_allclose(observation[2:4], velocity / env.max_speed, rtol=1e-5)


def test_moving_obstacles_keep_speed_and_bounds():
    env = Nav2DEnv(**NAV2D_V2_KWARGS)
    env.reset(seed=1)
    start_centres = env._moving_centres.copy()
    for _ in range(300):
        env.step(np.zeros(2, dtype=np.float32))
        speeds = np.linalg.norm(env._moving_velocities, axis=1)
        np.testing.assert_allclose(speeds, env.moving_obstacle_speed, rtol=1e-9)
        assert np.all(np.abs(env._moving_centres) + env._moving_radii[:, None] <= env.half_size + 1e-9)

    assert not np.allclose(env._moving_centres, start_centres)


@pytest.mark.parametrize("env_id", NAV2D_IDS)
def test_nav2d_time_limit_truncates(env_id):
    env = gym.make(env_id)
    total, info, terminated, truncated, steps = run_episode(env, lambda obs: np.zeros(2, dtype=np.float32), seed=3)

    assert truncated
    assert not terminated
    assert steps == EXPECTED_TIME_LIMITS[env_id]
    assert not info["is_success"]


def test_nav2d_rgb_array_frame():
    env = gym.make("neurorl/2DNav-v2", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()

    assert frame.shape == (256, 256, 3)
    assert frame.dtype == np.uint8
    # Agent (blue), goal (green), static (grey) and moving (orange) obstacles are all drawn.
    colours = {tuple(pixel) for pixel in frame.reshape(-1, 3)}
    assert {(30, 90, 220), (40, 170, 70), (90, 90, 90), (230, 120, 30)} <= colours


# ---------------------------------------------------------------- 2DNav arguments


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"n_obstacles": -1}, "n_obstacles=-1"),
        ({"n_moving_obstacles": -2}, "n_moving_obstacles=-2"),
        ({"n_rays": 2.5}, "n_rays=2.5"),
        ({"obstacle_radius_range": (0.3, 0.1)}, "obstacle_radius_range=(0.3, 0.1)"),
        ({"dynamics": "jerk"}, "dynamics='jerk'"),
        ({"agent_radius": 0.0}, "agent_radius=0.0"),
        ({"dt": float("nan")}, "dt=nan"),
        ({"collision_penalty": -1.0}, "collision_penalty=-1.0"),
        ({"render_mode": "human"}, "render_mode='human'"),
        ({"n_obstacles": 40}, "40 obstacles"),
        ({"max_speed": 5.0}, "pass through an obstacle"),
    ],
)
def test_nav2d_rejects_bad_arguments(arguments, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Nav2DEnv(**arguments)


def test_nav2d_lists_every_problem():
    with pytest.raises(ValueError) as error:
        Nav2DEnv(n_obstacles=-1, n_rays=-3)
    assert "n_obstacles=-1" in str(error.value)
    assert "n_rays=-3" in str(error.value)


def test_nav2d_rejects_bad_reset_options():
    env = Nav2DEnv()
    with pytest.raises(ValueError, match="'start'"):
        env.reset(seed=0, options={"start": (2.0, 0.0)})
    with pytest.raises(ValueError, match="'obstacles'"):
        env.reset(seed=0, options={"obstacles": [[0.0, 0.0]]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"seed": 3})


def test_nav2d_without_obstacles_or_rays():
    env = Nav2DEnv(n_obstacles=0, n_rays=0)
    observation, _ = env.reset(seed=0)
    observation, *_ = env.step(env.action_space.sample())

    assert observation.shape == (6,)
    assert observation in env.observation_space


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_nan_action_rejected(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    action[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        env.step(action)
    with pytest.raises(ValueError, match="expected"):
        env.step(np.zeros(env.action_space.shape[0] + 1, dtype=np.float32))


# ---------------------------------------------------------------- 2DNav solvability


@pytest.mark.parametrize("env_id", NAV2D_IDS)
def test_nav2d_scripted_beats_random(env_id):
    env = gym.make(env_id)
    scripted = Nav2DGapFollower(env)
    seeds = range(5)

    scripted_runs = [run_episode(env, scripted, seed) for seed in seeds]
    random_runs = [run_episode(env, uniform_policy(env.action_space, seed), seed) for seed in seeds]
    scripted_mean = np.mean([run[0] for run in scripted_runs])
    random_mean = np.mean([run[0] for run in random_runs])

    assert sum(run[1]["is_success"] for run in scripted_runs) >= 4
    assert scripted_mean > random_mean + 20.0
    # The return of a success is bounded by the progress available plus the bonus.
    unwrapped = env.unwrapped
    bound = unwrapped.progress_weight * 2.0 * np.sqrt(2.0) * unwrapped.half_size + unwrapped.goal_bonus
    assert scripted_mean <= bound


def test_gap_follower_rejects_unsuitable_env():
    with pytest.raises(ValueError, match="n_rays=2"):
        Nav2DGapFollower(Nav2DEnv(n_rays=2))
    with pytest.raises(TypeError, match="ReacherNavEnv"):
        Nav2DGapFollower(gym.make("neurorl/ReacherNav-v0"))


# ---------------------------------------------------------------- ReacherNav


def test_reacher_nav_target_sequence():
    env = gym.make("neurorl/ReacherNav-v0")
    env.reset(seed=0)
    reacher = env.unwrapped
    first_target = reacher.get_body_com("target")[:2].copy()

    # Put the target on the fingertip so that the next step reaches it.
    reacher._move_target(reacher.get_body_com("fingertip")[:2].copy())
    observation, reward, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
    new_target = reacher.get_body_com("target")[:2].copy()
    fingertip = reacher.get_body_com("fingertip")[:2].copy()

    assert info["targets_reached"] == 1
    assert not terminated
    assert reward == pytest.approx(info["reward_dist"] + info["reward_ctrl"] + reacher.target_bonus)
    assert info["reward_dist"] > -reacher.target_tolerance
    assert np.linalg.norm(new_target - fingertip) >= reacher.min_target_distance
    assert not np.allclose(new_target, first_target)
    np.testing.assert_allclose(observation[4:6], new_target, atol=1e-6)
    np.testing.assert_allclose(observation[8:10], fingertip - new_target, atol=1e-6)
    assert observation[10] == pytest.approx((reacher.n_targets - 1) / reacher.n_targets)


def test_reacher_nav_last_target_terminates():
    env = gym.make("neurorl/ReacherNav-v0", n_targets=2)
    env.reset(seed=1)
    reacher = env.unwrapped
    results = []
    for _ in range(2):
        reacher._move_target(reacher.get_body_com("fingertip")[:2].copy())
        results.append(env.step(np.zeros(2, dtype=np.float32)))

    assert results[0][2] is False
    assert results[1][2] is True
    assert results[1][3] is False
    assert results[1][4]["is_success"]
    assert results[1][0][10] == 0.0
    # The final observation still shows the reached target: no new one is drawn at the end.
    assert np.linalg.norm(results[1][0][8:10]) <= reacher.target_tolerance


def test_reacher_nav_far_target_is_not_reached():
    env = gym.make("neurorl/ReacherNav-v0")
    env.reset(seed=2)
    _, reward, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))

    assert info["targets_reached"] == 0
    assert info["reward_target"] == 0.0
    assert reward == pytest.approx(info["reward_dist"] + info["reward_ctrl"])
    assert not terminated


def test_reacher_nav_time_limit_truncates():
    env = gym.make("neurorl/ReacherNav-v0")
    _, _, terminated, truncated, steps = run_episode(env, lambda obs: np.zeros(2, dtype=np.float32), seed=4)
    assert truncated
    assert not terminated
    assert steps == 300


def test_reacher_nav_scripted_beats_random():
    env = gym.make("neurorl/ReacherNav-v0")
    controller = ReacherJacobianController()
    seeds = range(3)

    scripted_runs = [run_episode(env, controller, seed) for seed in seeds]
    random_runs = [run_episode(env, uniform_policy(env.action_space, seed), seed) for seed in seeds]

    assert all(run[2] for run in scripted_runs), "the controller should reach every target"
    assert np.mean([run[0] for run in scripted_runs]) > np.mean([run[0] for run in random_runs]) + 100.0


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"n_targets": 0}, "n_targets=0"),
        ({"target_tolerance": -0.1}, "target_tolerance=-0.1"),
        ({"target_bonus": -1}, "target_bonus=-1"),
        ({"target_radius_range": (0.1, 0.5)}, "target_radius_range"),
        ({"min_target_distance": float("inf")}, "min_target_distance=inf"),
    ],
)
def test_reacher_nav_rejects_bad_arguments(arguments, named):
    from neurorl.envs.reacher_nav import ReacherNavEnv

    with pytest.raises(ValueError, match=named):
        ReacherNavEnv(**arguments)


# ---------------------------------------------------------------- AntNav


def torso_xy(env: gym.Env) -> np.ndarray:
    return env.unwrapped.data.body("torso").xpos[:2].copy()


def test_ant_nav_goal_reached_terminates_with_bonus():
    env = gym.make("neurorl/AntNav-v0")
    env.reset(seed=0)
    start = torso_xy(env)
    observation, _ = env.reset(seed=0, options={"goal": tuple(start)})
    _, reward, terminated, truncated, info = env.step(np.zeros(8, dtype=np.float32))

    assert terminated
    assert not truncated
    assert info["is_success"]
    assert info["reward_goal"] == env.unwrapped.goal_bonus
    parts = ("reward_progress", "reward_survive", "reward_ctrl", "reward_contact", "reward_goal")
    assert reward == pytest.approx(sum(info[name] for name in parts))


def test_ant_nav_progress_reward_follows_motion():
    env = gym.make("neurorl/AntNav-v0")
    ant = env.unwrapped
    rewards = {}
    for name, push in (("toward", 3.0), ("away", -3.0)):
        env.reset(seed=0)
        start = torso_xy(env)
        env.reset(seed=0, options={"goal": (start[0] + 3.0, start[1])})
        qvel = ant.data.qvel.copy()
        qvel[0] = push
        ant.set_state(ant.data.qpos.copy(), qvel)

        before = np.linalg.norm(ant.goal - torso_xy(env))
        _, _, terminated, _, info = env.step(np.zeros(8, dtype=np.float32))
        after = np.linalg.norm(ant.goal - torso_xy(env))

        assert not terminated
        assert info["reward_progress"] == pytest.approx((before - after) / ant.dt)
        rewards[name] = info["reward_progress"]

    assert rewards["toward"] > 1.0
    assert rewards["away"] < -1.0


def test_ant_nav_observation_has_goal_vector():
    env = gym.make("neurorl/AntNav-v0")
    observation, info = env.reset(seed=3)
    distance = np.linalg.norm(info["goal"] - torso_xy(env))

    np.testing.assert_allclose(observation[-2:], info["goal"] - torso_xy(env), rtol=1e-5)
    assert env.unwrapped.goal_distance_range[0] - 1e-6 <= distance <= env.unwrapped.goal_distance_range[1] + 1e-6


def test_ant_nav_unhealthy_terminates_without_bonus():
    env = gym.make("neurorl/AntNav-v0", healthy_z_range=(2.0, 3.0))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(8, dtype=np.float32))

    assert terminated
    assert not info["is_success"]
    assert info["reward_goal"] == 0.0
    assert info["reward_survive"] == 0.0


def test_ant_nav_short_time_limit_truncates():
    env = gym.make("neurorl/AntNav-v0", max_episode_steps=10)
    _, _, terminated, truncated, steps = run_episode(env, lambda obs: np.zeros(8, dtype=np.float32), seed=0)
    assert truncated
    assert not terminated
    assert steps == 10


def test_ant_nav_rejects_bad_arguments():
    from neurorl.envs.ant_nav import AntNavEnv

    with pytest.raises(ValueError, match="goal_radius=-0.5"):
        AntNavEnv(goal_radius=-0.5)
    with pytest.raises(ValueError, match=r"goal_distance_range=\(4.0, 2.0\)"):
        AntNavEnv(goal_distance_range=(4.0, 2.0))
    env = AntNavEnv()
    with pytest.raises(ValueError, match="'goal'"):
        env.reset(seed=0, options={"goal": (1.0, float("nan"))})


def test_ant_gait_heading_matches_walk():
    env = gym.make("neurorl/AntNav-v0", reset_noise_scale=0.0)
    observation, _ = env.reset(seed=0, options={"goal": (100.0, 0.0)})
    controller = AntGaitController()
    controller.shift = 0
    controller.switch_angle = np.inf
    start = torso_xy(env)
    for _ in range(60):
        observation, _, terminated, _, _ = env.step(controller(observation))
        assert not terminated

    walked = torso_xy(env) - start
    angle = np.arctan2(walked[1], walked[0])
    assert np.linalg.norm(walked) > 1.0
    assert abs((angle - AntGaitController.HEADING + np.pi) % (2 * np.pi) - np.pi) < np.radians(15.0)


@pytest.mark.slow
def test_ant_nav_scripted_beats_random():
    env = gym.make("neurorl/AntNav-v0")
    seeds = range(5)

    scripted_runs = [run_episode(env, AntGaitController(dt=env.unwrapped.dt), seed) for seed in seeds]
    random_runs = [run_episode(env, uniform_policy(env.action_space, seed), seed) for seed in seeds]

    # The gait is open loop and the ant's contacts are chaotic, so one miss in five is tolerated.
    assert sum(run[1]["is_success"] for run in scripted_runs) >= 3
    assert np.mean([run[0] for run in scripted_runs]) > np.mean([run[0] for run in random_runs]) + 100.0


# ---------------------------------------------------------------- MuJoCo rendering


@pytest.mark.slow
@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_mujoco_rgb_array_frame(env_id):
    code = (
        "import gymnasium as gym, neurorl.envs\n"
        f"env = gym.make({env_id!r}, render_mode='rgb_array', width=64, height=48)\n"
        "env.reset(seed=0)\n"
        "frame = env.render()\n"
        "print(frame.shape, frame.dtype, int(frame.std() > 0))\n"
    )
    environment = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment)
    if result.returncode != 0 and ("OpenGL" in result.stderr or "EGL" in result.stderr or "GLFW" in result.stderr):
        pytest.skip(f"no OpenGL context for MuJoCo rendering: {result.stderr.strip().splitlines()[-1]}")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(48, 64, 3) uint8 1"


def test_package_exports():
    assert neurorl.envs.Nav2DEnv is Nav2DEnv
    assert neurorl.envs.ENV_IDS == ("neurorl/2DNav-v1", "neurorl/2DNav-v2", "neurorl/ReacherNav-v0", "neurorl/AntNav-v0")
