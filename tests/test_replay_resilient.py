"""ResilientReplay: check schedule, Dis against brute force, shrink rules, validation."""

from __future__ import annotations

import numpy as np
import pytest

from neurorl.replay import CheckRecord, ResilientReplay

OBS_DIM = 3
ACT_DIM = 2


def fill(buffer, count, rng, start=0):
    """Add transitions with random states whose obs[:, 0] is the index, so a state identifies
    its transition."""
    index = np.arange(start, start + count)
    obs = rng.uniform(-1, 1, size=(count, OBS_DIM)).astype(np.float32)
    obs[:, 0] = index
    actions = rng.uniform(-1, 1, size=(count, ACT_DIM)).astype(np.float32)
    buffer.add_batch(obs, actions, np.zeros(count), obs, np.zeros(count, bool),
                     np.zeros(count, bool))
    return obs, actions


class RecordingPolicy:
    """Policy returning fixed actions and remembering the states it was given."""

    def __init__(self, value=0.0):
        self.value = value
        self.states = []

    def __call__(self, states):
        self.states.append(states.copy())
        return np.full((len(states), ACT_DIM), self.value, dtype=np.float32)


def brute_force_dis(states, stored, predicted, scale, reduction="sum"):
    points = np.concatenate([states, stored], axis=1).astype(np.float64) * scale
    queries = np.concatenate([states, predicted], axis=1).astype(np.float64) * scale
    pairwise = np.sqrt(((queries[:, None] - points[None]) ** 2).sum(axis=2))
    nearest, direct = pairwise.min(axis=1), np.diagonal(pairwise)
    if reduction == "sum":
        return nearest.sum(), direct.sum()
    return nearest.mean(), direct.mean()


def make(**options):
    arguments = {"seed": 0, "check_interval": 10, "check_batch": 32, "min_size": 100}
    arguments.update(options)
    return ResilientReplay(OBS_DIM, ACT_DIM, **arguments)


def test_check_schedule():
    buffer = make(threshold=1e9)
    rng = np.random.default_rng(0)
    policy = RecordingPolicy()
    fill(buffer, 31, rng)

    assert buffer.after_update(policy, 10) is None  # len < check_batch
    fill(buffer, 1, rng)
    assert buffer.after_update(policy, 15) is None  # not a multiple of check_interval
    record = buffer.after_update(policy, 20)

    assert isinstance(record, CheckRecord)
    assert record.step == 20
    assert record.check_batch == 32
    assert record.point_dim == OBS_DIM + ACT_DIM
    assert record.removed == 0
    assert buffer.checks_run == 1
    assert len(policy.states) == 1


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("beta_mode", ["constant", "standardize"])
def test_dis_matches_brute_force(reduction, beta_mode):
    buffer = make(threshold=1e9, reduction=reduction, beta_mode=beta_mode, beta=0.5)
    rng = np.random.default_rng(1)
    obs, actions = fill(buffer, 300, rng)
    policy = RecordingPolicy(value=0.25)

    record = buffer.after_update(policy, 0)

    states = policy.states[0]
    drawn = states[:, 0].astype(np.int64)
    assert len(np.unique(drawn)) == 32  # D' is drawn without replacement
    np.testing.assert_array_equal(states, obs[drawn])
    live = np.concatenate([obs, actions], axis=1).astype(np.float64)
    scale = 0.5 if beta_mode == "constant" else 0.5 / live.std(axis=0)
    predicted = np.full((32, ACT_DIM), 0.25)
    expected_dis, expected_direct = brute_force_dis(states, actions[drawn], predicted, scale,
                                                    reduction)
    assert record.dis == pytest.approx(expected_dis, rel=1e-9)
    assert record.direct_dis == pytest.approx(expected_direct, rel=1e-9)
    assert record.dis <= record.direct_dis


def test_shrink_drops_oldest_fraction():
    buffer = make(threshold=0.0, kappa=0.1)
    rng = np.random.default_rng(2)
    obs, _ = fill(buffer, 1000, rng)

    record = buffer.after_update(RecordingPolicy(5.0), 10)

    assert record.removed == 100
    assert record.size_before == 1000
    assert record.size_after == 900
    assert buffer.storage.first_id == 100
    remaining = np.unique(buffer.sample(5000).obs[:, 0])
    assert remaining.min() >= 100
    np.testing.assert_array_equal(buffer.storage.live_rows()[:, 0], obs[100:, 0])


def test_shrink_never_below_min_size():
    buffer = make(threshold=0.0, kappa=0.5, min_size=100)
    rng = np.random.default_rng(3)
    fill(buffer, 150, rng)
    policy = RecordingPolicy(5.0)

    first = buffer.after_update(policy, 10)
    second = buffer.after_update(policy, 20)

    assert first.removed == 50
    assert len(buffer) == 100
    assert second.removed == 0
    assert second.size_after == 100
    assert buffer.shrinks == 1
    assert buffer.total_removed == 50


def test_shrink_at_min_size_removes_nothing():
    buffer = make(threshold=0.0, min_size=100)
    fill(buffer, 100, np.random.default_rng(4))

    assert buffer.shrink() == 0
    assert len(buffer) == 100


def test_shrink_count_is_exact_floor():
    buffer = make(kappa=0.29, min_size=32)
    fill(buffer, 100, np.random.default_rng(5))
    assert buffer.shrink() == 29
    assert buffer.shrink() == 20  # floor(0.29 * 71) = 20


def test_threshold_not_exceeded_keeps_everything():
    buffer = make(threshold=0.2)
    rng = np.random.default_rng(6)
    _, actions = fill(buffer, 200, rng)
    stored = {int(index): actions[index] for index in range(200)}

    record = buffer.after_update(lambda states: np.stack([stored[int(s)] for s in states[:, 0]]), 0)

    assert record.dis == 0.0
    assert record.direct_dis == 0.0
    assert record.removed == 0


def test_measure_direct_shrinks_where_kdtree_does_not():
    # Two groups of identical states with opposite actions: the policy predicts the other
    # group's action, which the KD-tree finds at distance 0 while the direct measure does not.
    obs = np.zeros((200, OBS_DIM), np.float32)
    actions = np.zeros((200, ACT_DIM), np.float32)
    actions[100:] = 1.0
    buffers = {}
    for measure in ("kdtree", "direct"):
        buffer = make(threshold=0.5, measure=measure, check_batch=100)
        buffer.add_batch(obs, actions, np.zeros(200), obs, np.zeros(200, bool), np.zeros(200, bool))
        buffers[measure] = buffer
    policy = lambda states: np.ones((len(states), ACT_DIM))  # noqa: E731

    kd_record = buffers["kdtree"].after_update(policy, 0)
    direct_record = buffers["direct"].after_update(policy, 0)

    assert kd_record.dis == 0.0
    assert kd_record.removed == 0
    assert direct_record.direct_dis > 0.5
    assert direct_record.removed == 20
    assert direct_record.measure == "direct"


def test_record_as_row():
    buffer = make(threshold=1e9)
    fill(buffer, 50, np.random.default_rng(7))
    row = buffer.after_update(RecordingPolicy(), 0).as_row()

    assert set(row) == {"step", "dis", "direct_dis", "threshold", "removed", "size_before",
                        "size_after", "check_batch", "point_dim", "measure"}
    assert row["threshold"] == 1e9


def test_run_check_uses_smaller_batch():
    buffer = make(threshold=1e9)
    fill(buffer, 5, np.random.default_rng(8))
    assert buffer.run_check(RecordingPolicy(), 3).check_batch == 5


def test_check_on_empty_buffer_raises():
    with pytest.raises(ValueError, match="empty buffer"):
        make().run_check(RecordingPolicy(), 0)


def test_single_action_dimension_policy_output():
    buffer = ResilientReplay(2, 1, seed=0, min_size=10, check_batch=4, threshold=1e9)
    buffer.add_batch(np.random.default_rng(0).normal(size=(20, 2)), np.zeros(20), np.zeros(20),
                     np.zeros((20, 2)), np.zeros(20, bool), np.zeros(20, bool))

    record = buffer.after_update(lambda states: np.ones(len(states)), 0)

    assert record.direct_dis == pytest.approx(4.0)


@pytest.mark.parametrize(
    "policy, message",
    [
        (lambda states: np.zeros((len(states), ACT_DIM + 1)), "policy returned shape"),
        (lambda states: np.zeros((1, ACT_DIM)), "policy returned shape"),
        (lambda states: np.full((len(states), ACT_DIM), np.nan), "policy output contains a non-finite"),
    ],
)
def test_bad_policy_output_raises(policy, message):
    buffer = make()
    fill(buffer, 40, np.random.default_rng(9))
    with pytest.raises(ValueError, match=message):
        buffer.after_update(policy, 0)


def test_policy_cannot_alter_stored_states():
    buffer = make(threshold=1e9)
    fill(buffer, 40, np.random.default_rng(10))
    before = buffer.storage.live_rows()

    def normalising_policy(states):
        states -= 100.0
        return np.zeros((len(states), ACT_DIM))

    buffer.after_update(normalising_policy, 0)
    np.testing.assert_array_equal(buffer.storage.live_rows(), before)


@pytest.mark.parametrize("step", [-1, 2.0, None])
def test_bad_step_raises(step):
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        make().after_update(RecordingPolicy(), step)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kappa": 0.0}, r"kappa must be a number in \(0, 1\)"),
        ({"kappa": 1.0}, r"kappa must be a number in \(0, 1\)"),
        ({"kappa": -0.1}, r"kappa must be a number in \(0, 1\)"),
        ({"threshold": -0.01}, "threshold must be a finite number >= 0"),
        ({"threshold": float("nan")}, "threshold must be a finite number >= 0"),
        ({"check_batch": 200, "min_size": 100}, r"check_batch \(200\) must not exceed min_size"),
        ({"check_interval": 0}, "check_interval must be an int >= 1"),
        ({"reduction": "max"}, "reduction must be one of 'sum', 'mean', got 'max'"),
        ({"beta_mode": "auto"}, "beta_mode must be one of"),
        ({"measure": "euclid"}, "measure must be one of"),
        ({"sampler": "rank"}, "sampler must be one of"),
        ({"beta": 0.0}, "beta must be a finite number > 0"),
        ({"beta": np.ones(3)}, "array of obs_dim \\+ act_dim = 5"),
        ({"beta": np.ones(5), "beta_mode": "standardize"}, "beta must be a scalar"),
        ({"sampler": "prioritized", "alpha": -1.0}, "alpha must be"),
        ({"std_eps": 0.0}, "std_eps must be"),
    ],
)
def test_arguments_validated(options, message):
    with pytest.raises(ValueError, match=message):
        make(**options)


def test_all_problems_reported_together():
    with pytest.raises(ValueError) as error:
        make(kappa=2.0, threshold=-1.0, reduction="max")
    text = str(error.value)
    assert "3 problems" in text
    assert "kappa" in text
    assert "threshold" in text
    assert "reduction" in text


def test_per_dimension_beta_array():
    scale = np.array([1.0, 2.0, 3.0, 0.5, 4.0])
    buffer = make(threshold=1e9, beta=scale)
    rng = np.random.default_rng(11)
    obs, actions = fill(buffer, 100, rng)
    policy = RecordingPolicy(value=-0.5)

    record = buffer.after_update(policy, 0)

    drawn = policy.states[0][:, 0].astype(np.int64)
    expected_dis, expected_direct = brute_force_dis(obs[drawn], actions[drawn],
                                                    np.full((32, ACT_DIM), -0.5), scale)
    assert record.dis == pytest.approx(expected_dis)
    assert record.direct_dis == pytest.approx(expected_direct)


def test_prioritized_sampler_with_shrink():
    buffer = make(threshold=0.0, sampler="prioritized", alpha=1.0)
    fill(buffer, 500, np.random.default_rng(12))
    buffer.update_priorities(np.arange(500), np.arange(500, dtype=np.float64))

    record = buffer.after_update(RecordingPolicy(3.0), 0)

    assert record.removed == 50
    assert buffer.sample(5000).indices.min() >= 50
    assert buffer._sampler._tree.total == pytest.approx(np.sum(np.arange(50, 500) + 1e-6))


def test_round_trip_keeps_counters_and_checks():
    rng = np.random.default_rng(13)
    buffer = make(threshold=0.0)
    fill(buffer, 400, rng)
    buffer.after_update(RecordingPolicy(2.0), 0)

    restored = make(threshold=0.0, seed=77)
    restored.load_state_dict(buffer.state_dict())

    assert restored.shrinks == buffer.shrinks == 1
    assert restored.last_record == buffer.last_record
    first = buffer.after_update(RecordingPolicy(2.0), 10)
    second = restored.after_update(RecordingPolicy(2.0), 10)
    assert first == second


def test_live_moments_follow_adds_and_shrinks():
    # Values far from 0 make a naive E[x²] − E[x]² lose most digits in float64.
    buffer = make(beta_mode="standardize", threshold=0.0, kappa=0.3, min_size=50, check_batch=16)
    rng = np.random.default_rng(14)
    offset = np.array([1e4, -3e3, 5.0], np.float32)
    stored = []
    for round_index in range(12):
        count = int(rng.integers(20, 400))
        obs = (offset + rng.normal(scale=0.01, size=(count, OBS_DIM))).astype(np.float32)
        actions = rng.uniform(-1, 1, size=(count, ACT_DIM)).astype(np.float32)
        if round_index % 2:
            buffer.add_batch(obs, actions, np.zeros(count), obs, np.zeros(count, bool),
                             np.zeros(count, bool))
        else:
            for row in range(count):
                buffer.add(obs[row], actions[row], 0.0, obs[row], False, False)
        stored.append(np.concatenate([obs, actions], axis=1))
        buffer.shrink()

        live = np.concatenate(stored)[buffer.storage.first_id:].astype(np.float64)
        np.testing.assert_allclose(buffer._moments.std(), live.std(axis=0), rtol=1e-6)
        np.testing.assert_allclose(buffer.point_scale(), 1.0 / live.std(axis=0), rtol=1e-6)


def test_standardize_guards_constant_dimension():
    buffer = make(beta_mode="standardize", beta=2.0, std_eps=1e-3, threshold=1e9)
    obs = np.zeros((50, OBS_DIM), np.float32)
    obs[:, 0] = np.arange(50)
    buffer.add_batch(obs, np.zeros((50, ACT_DIM)), np.zeros(50), obs, np.zeros(50, bool),
                     np.zeros(50, bool))

    scale = buffer.point_scale()

    assert scale[0] == pytest.approx(2.0 / np.arange(50).std())
    np.testing.assert_allclose(scale[1:], 2.0 / 1e-3)


def test_standardize_round_trip_same_checks():
    rng = np.random.default_rng(15)
    buffer = make(beta_mode="standardize", threshold=1.0, kappa=0.2)
    fill(buffer, 600, rng)
    buffer.shrink()
    restored = make(beta_mode="standardize", threshold=1.0, kappa=0.2, seed=5)
    restored.load_state_dict(buffer.state_dict())

    fill(buffer, 50, np.random.default_rng(16), start=600)
    fill(restored, 50, np.random.default_rng(16), start=600)

    np.testing.assert_array_equal(restored.point_scale(), buffer.point_scale())
    assert restored.after_update(RecordingPolicy(0.5), 10) == buffer.after_update(
        RecordingPolicy(0.5), 10)


def test_load_rejects_other_options():
    buffer = make(threshold=0.3)
    other = make(threshold=0.4)

    with pytest.raises(ValueError, match="threshold is 0.3 in the checkpoint but 0.4"):
        other.load_state_dict(buffer.state_dict())
