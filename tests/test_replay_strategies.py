"""FIFO, unbounded and prioritized buffers: sampling, validation, priorities, round trips."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurorl.replay import (
    FifoReplay,
    PrioritizedReplay,
    ReplayMemoryWarning,
    ReplaySample,
    ResilientReplay,
    UnboundedReplay,
    make_replay,
)

OBS_DIM = 4
ACT_DIM = 2


def fill(buffer, count, start=0):
    """Add transitions whose obs[0] is the running index, so a row identifies its transition."""
    index = np.arange(start, start + count, dtype=np.float32)
    obs = np.repeat(index[:, None], OBS_DIM, axis=1)
    actions = np.repeat(-index[:, None], ACT_DIM, axis=1)
    buffer.add_batch(obs, actions, index * 0.5, obs + 1.0, index % 5 == 0, index % 7 == 0)


def check_state_types(value, path="state"):
    """Assert that a state contains only numpy arrays, plain scalars, None, dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), path
            check_state_types(item, f"{path}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            check_state_types(item, f"{path}[{position}]")
    else:
        assert value is None or type(value) in (np.ndarray, int, float, str, bool), (
            f"{path} has type {type(value)}")


@pytest.mark.parametrize("compact", [False, True])
def test_sample_fields_and_dtypes(compact):
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=100, seed=0, compact=compact)
    fill(buffer, 30)

    sample = buffer.sample(16)

    assert isinstance(sample, ReplaySample)
    expected_shapes = {"obs": (16, OBS_DIM), "actions": (16, ACT_DIM), "rewards": (16,),
                       "next_obs": (16, OBS_DIM), "terminated": (16,)}
    for name, shape in expected_shapes.items():
        field = getattr(sample, name)
        assert field.shape == shape, name
        assert field.dtype == np.float32, name
        assert field.flags.c_contiguous, name
    assert sample.indices.dtype == np.int64
    np.testing.assert_array_equal(sample.weights, np.ones(16, np.float32))

    index = sample.obs[:, 0]
    np.testing.assert_array_equal(sample.indices, index.astype(np.int64))
    np.testing.assert_array_equal(sample.actions[:, 0], -index)
    np.testing.assert_array_equal(sample.rewards, index * 0.5)
    np.testing.assert_array_equal(sample.next_obs, sample.obs + 1.0)
    np.testing.assert_array_equal(sample.terminated, (index % 5 == 0).astype(np.float32))


def test_fifo_evicts_oldest():
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0)
    for i in range(25):
        buffer.add(np.full(OBS_DIM, i), np.zeros(ACT_DIM), 0.0, np.zeros(OBS_DIM), False, False)

    assert len(buffer) == 10
    seen = np.unique(buffer.sample(2000).obs[:, 0])
    np.testing.assert_array_equal(seen, np.arange(15, 25, dtype=np.float32))


def test_single_add_accepts_plain_python_values():
    buffer = FifoReplay(2, 1, capacity=5, seed=0)
    buffer.add([1, 2], 0.5, 3, [4, 5], np.bool_(True), 0)

    sample = buffer.sample(1)

    np.testing.assert_array_equal(sample.obs, [[1.0, 2.0]])
    np.testing.assert_array_equal(sample.actions, [[0.5]])
    assert sample.terminated[0] == 1.0


def test_sampling_is_uniform():
    buffer = UnboundedReplay(OBS_DIM, ACT_DIM, seed=3)
    fill(buffer, 50)

    counts = np.bincount(buffer.sample(50_000).indices, minlength=50)

    assert stats.chisquare(counts).pvalue > 1e-4


def test_same_seed_same_samples():
    buffers = [FifoReplay(OBS_DIM, ACT_DIM, capacity=100, seed=seed) for seed in (7, 7, 8)]
    for buffer in buffers:
        fill(buffer, 100)

    first, second, other = (buffer.sample(64).indices for buffer in buffers)

    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_empty_buffer_sample_raises():
    for kind, options in [("fifo", {"capacity": 4}), ("unbounded", {}),
                          ("prioritized", {"capacity": 4}), ("resilient", {})]:
        buffer = make_replay(kind, OBS_DIM, ACT_DIM, seed=0, **options)
        with pytest.raises(ValueError, match="empty replay buffer"):
            buffer.sample(1)


@pytest.mark.parametrize("batch_size", [0, -3, 2.0, None])
def test_bad_batch_size_raises(batch_size):
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0)
    fill(buffer, 5)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        buffer.sample(batch_size)


GOOD = (np.zeros(OBS_DIM), np.zeros(ACT_DIM), 0.0, np.zeros(OBS_DIM), False, False)


@pytest.mark.parametrize(
    "position, value, message",
    [
        (0, np.zeros(OBS_DIM + 1), r"obs has shape \(5,\), expected \(4,\)"),
        (0, np.zeros((1, OBS_DIM)), r"obs has shape \(1, 4\)"),
        (1, np.zeros(3), r"action has shape \(3,\), expected \(2,\)"),
        (3, np.zeros(2), r"next_obs has shape \(2,\)"),
        (2, np.zeros(2), "reward must be a single number"),
        (0, np.array([0.0, np.nan, 0.0, 0.0]), r"obs contains a non-finite value \(nan\) at index 1"),
        (1, np.array([np.inf, 0.0]), r"action contains a non-finite value \(inf\)"),
        (2, float("nan"), r"reward contains a non-finite value"),
        (3, np.array([0.0, 0.0, 0.0, -np.inf]), "next_obs contains a non-finite value"),
        (0, np.array([1e39, 0.0, 0.0, 0.0]), "obs contains a non-finite value"),
        (4, 0.5, "terminated must be a bool"),
        (5, "no", "truncated must be a bool"),
        (0, ["a", "b", "c", "d"], "obs could not be converted to float32"),
    ],
)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_add_rejects_bad_input(position, value, message):
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0)
    arguments = list(GOOD)
    arguments[position] = value

    with pytest.raises(ValueError, match=message):
        buffer.add(*arguments)
    assert len(buffer) == 0


def batch_arguments(count=6):
    return [np.zeros((count, OBS_DIM)), np.zeros((count, ACT_DIM)), np.zeros(count),
            np.zeros((count, OBS_DIM)), np.zeros(count, bool), np.zeros(count, bool)]


@pytest.mark.parametrize(
    "position, value, message",
    [
        (0, np.zeros((6, OBS_DIM + 1)), r"obs has shape \(6, 5\), expected \(N, 4\)"),
        (1, np.zeros((6, 3)), r"actions has shape \(6, 3\)"),
        (2, np.zeros((6, 1)), r"rewards has shape \(6, 1\), expected \(N,\)"),
        (3, np.zeros((5, OBS_DIM)), "different lengths"),
        (4, np.full(6, 2), "terminated must contain booleans"),
        (5, np.zeros((6, 1), bool), "truncated has shape"),
        (2, np.array([0, 0, 0, np.nan, 0, 0]), r"rewards contains a non-finite value \(nan\) at index 3"),
    ],
)
def test_add_batch_rejects_bad_input(position, value, message):
    buffer = UnboundedReplay(OBS_DIM, ACT_DIM, seed=0)
    arguments = batch_arguments()
    arguments[position] = value

    with pytest.raises(ValueError, match=message):
        buffer.add_batch(*arguments)
    assert len(buffer) == 0


def test_add_batch_nan_in_later_row_stores_nothing():
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0)
    arguments = batch_arguments(6)
    arguments[0][5, 2] = np.nan

    with pytest.raises(ValueError, match=r"obs contains a non-finite value \(nan\) at index \(5, 2\)"):
        buffer.add_batch(*arguments)
    assert len(buffer) == 0


@pytest.mark.parametrize("seed", [None, -1, 1.5, "0"])
def test_seed_is_required_and_validated(seed):
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=seed)


def test_make_replay_kinds_and_options():
    assert isinstance(make_replay("fifo", 3, 1, seed=0, capacity=5), FifoReplay)
    assert isinstance(make_replay("unbounded", 3, 1, seed=0), UnboundedReplay)
    assert isinstance(make_replay("prioritized", 3, 1, seed=0, capacity=5, alpha=0.5),
                      PrioritizedReplay)
    assert isinstance(make_replay("resilient", 3, 1, seed=0, kappa=0.2), ResilientReplay)

    with pytest.raises(ValueError, match="unknown replay kind 'lifo'"):
        make_replay("lifo", 3, 1, seed=0)
    with pytest.raises(ValueError, match="does not accept option.*kappa"):
        make_replay("fifo", 3, 1, seed=0, capacity=5, kappa=0.1)
    with pytest.raises(ValueError, match="does not accept option.*capacity"):
        make_replay("resilient", 3, 1, seed=0, capacity=5)


# ---------------------------------------------------------------------- prioritized


def test_prioritized_frequencies_follow_priorities():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=64, seed=11, alpha=0.7)
    fill(buffer, 40)
    td_errors = np.random.default_rng(0).uniform(0.0, 3.0, size=40)
    buffer.update_priorities(np.arange(40), td_errors)

    counts = np.bincount(buffer.sample(100_000).indices, minlength=40)

    expected = (td_errors + 1e-6) ** 0.7
    expected = expected / expected.sum() * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-4


def test_prioritized_frequencies_reject_wrong_model():
    # The same test must fail when the model is uniform, or it could not detect anything.
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=64, seed=11, alpha=0.7)
    fill(buffer, 40)
    buffer.update_priorities(np.arange(40), np.linspace(0.0, 3.0, 40))

    counts = np.bincount(buffer.sample(100_000).indices, minlength=40)

    assert stats.chisquare(counts).pvalue < 1e-6


def test_prioritized_weights_match_formula():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=64, seed=2, alpha=0.6, beta0=0.4,
                               beta_steps=100)
    fill(buffer, 50)
    td_errors = np.random.default_rng(1).uniform(0.1, 2.0, size=50)
    buffer.update_priorities(np.arange(50), td_errors)

    sample = buffer.sample(32)

    beta = 0.4 + 0.6 * 50 / 100
    probabilities = (td_errors + 1e-6) ** 0.6
    probabilities /= probabilities.sum()
    all_weights = (50 * probabilities) ** (-beta)
    expected = all_weights[sample.indices] / all_weights.max()
    assert buffer.beta == pytest.approx(beta)
    np.testing.assert_allclose(sample.weights, expected, rtol=1e-5)


def test_prioritized_beta_reaches_one():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=500, seed=0, beta0=0.2, beta_steps=100)
    assert buffer.beta == pytest.approx(0.2)
    fill(buffer, 50)
    assert buffer.beta == pytest.approx(0.6)
    fill(buffer, 200)
    assert buffer.beta == 1.0


def test_prioritized_new_transitions_get_max_priority():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=64, seed=0, alpha=1.0)
    fill(buffer, 10)
    buffer.update_priorities(np.array([3, 4]), np.array([5.0, 0.5]))
    fill(buffer, 2, start=10)

    priorities = buffer.priorities()

    assert priorities[10] == pytest.approx(5.0 + 1e-6)
    assert priorities[11] == pytest.approx(5.0 + 1e-6)
    assert priorities[4] == pytest.approx(0.5 + 1e-6)
    assert priorities[0] == 1.0


def test_prioritized_consistent_after_eviction():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=20, seed=5, alpha=1.0)
    fill(buffer, 20)
    sample = buffer.sample(200)
    buffer.update_priorities(np.arange(20), np.arange(20, dtype=np.float64))
    fill(buffer, 15, start=20)  # evicts ids 0..14

    buffer.update_priorities(sample.indices, np.full(200, 100.0))  # evicted ids are skipped
    counts = np.bincount(buffer.sample(50_000).indices, minlength=35)

    assert counts[:15].sum() == 0
    priorities = buffer.priorities()
    assert len(priorities) == 20
    assert buffer._sampler._tree.total == pytest.approx(priorities.sum())


def test_prioritized_duplicate_ids_last_wins():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0, alpha=1.0, priority_eps=0.5)
    fill(buffer, 5)
    buffer.update_priorities(np.array([2, 2, 2]), np.array([1.0, 2.0, 3.0]))
    assert buffer.priorities()[2] == pytest.approx(3.5)


def test_prioritized_growth_keeps_priorities():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=None, seed=0, alpha=1.0)
    fill(buffer, 1000)
    buffer.update_priorities(np.arange(1000), np.arange(1000, dtype=np.float64))
    buffer.storage.drop_oldest(300)
    fill(buffer, 3000, start=1000)  # grows past the initial 1024 rows

    priorities = buffer.priorities()

    np.testing.assert_allclose(priorities[:700], np.arange(300, 1000) + 1e-6)
    np.testing.assert_allclose(priorities[700:], 999 + 1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": -0.1}, "alpha must be a finite number >= 0"),
        ({"beta0": 1.5}, r"beta0 must be a number in \[0, 1\]"),
        ({"beta_steps": 0}, "beta_steps must be an int >= 1"),
        ({"priority_eps": 0.0}, "priority_eps must be a finite number > 0"),
        ({"capacity": 0}, "capacity must be an int >= 1"),
    ],
)
def test_prioritized_arguments_validated(options, message):
    arguments = {"capacity": 10, "seed": 0, **options}
    with pytest.raises(ValueError, match=message):
        PrioritizedReplay(OBS_DIM, ACT_DIM, **arguments)


def test_update_priorities_rejects_bad_input():
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0)
    fill(buffer, 5)

    with pytest.raises(ValueError, match="one TD error per sampled index"):
        buffer.update_priorities(np.array([0, 1]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"td_errors contains a non-finite value \(nan\)"):
        buffer.update_priorities(np.array([0, 1]), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="never stored"):
        buffer.update_priorities(np.array([0, 7]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="1-D integer array"):
        buffer.update_priorities(np.array([0.5]), np.array([1.0]))


def test_uniform_update_priorities_is_noop():
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=4)
    twin = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=4)
    fill(buffer, 10)
    fill(twin, 10)

    buffer.update_priorities(np.arange(10), np.arange(10.0))

    np.testing.assert_array_equal(buffer.sample(50).indices, twin.sample(50).indices)


# ---------------------------------------------------------------------- round trips


ROUND_TRIP_CASES = [
    ("fifo", {"capacity": 300}),
    ("fifo", {"capacity": 300, "compact": True}),
    ("unbounded", {}),
    ("prioritized", {"capacity": 300}),
    ("prioritized", {"capacity": None, "compact": True}),
    ("resilient", {"sampler": "prioritized", "min_size": 100, "check_batch": 50}),
]


@pytest.mark.parametrize("kind, options", ROUND_TRIP_CASES)
def test_state_dict_round_trip(kind, options):
    buffer = make_replay(kind, OBS_DIM, ACT_DIM, seed=21, **options)
    fill(buffer, 700)
    buffer.storage.drop_oldest(5)
    first = buffer.sample(32)
    buffer.update_priorities(first.indices, np.linspace(0, 2, 32))

    state = buffer.state_dict()
    check_state_types(state)
    restored = make_replay(kind, OBS_DIM, ACT_DIM, seed=999, **options)
    restored.load_state_dict(state)

    assert len(restored) == len(buffer)
    np.testing.assert_array_equal(restored.storage.live_rows(), buffer.storage.live_rows())
    for _ in range(3):
        expected, actual = buffer.sample(64), restored.sample(64)
        for name, left, right in zip(ReplaySample._fields, expected, actual):
            np.testing.assert_array_equal(left, right, err_msg=name)
        buffer.update_priorities(expected.indices, np.abs(expected.obs[:, 0]) % 3)
        restored.update_priorities(actual.indices, np.abs(actual.obs[:, 0]) % 3)
        fill(buffer, 40, start=2000)
        fill(restored, 40, start=2000)


def test_load_rejects_other_kind():
    fifo = FifoReplay(OBS_DIM, ACT_DIM, capacity=10, seed=0)
    unbounded = UnboundedReplay(OBS_DIM, ACT_DIM, seed=0)

    with pytest.raises(ValueError, match="kind 'fifo' but this buffer is 'unbounded'"):
        unbounded.load_state_dict(fifo.state_dict())
    with pytest.raises(ValueError, match="not a replay checkpoint"):
        unbounded.load_state_dict({"format": "other"})


def to_torch(value):
    """Convert numpy arrays in a state to torch tensors, as a weights-only checkpoint stores them."""
    import torch

    if isinstance(value, dict):
        return {key: to_torch(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_torch(item) for item in value]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    return value


@pytest.mark.parametrize("kind, options", ROUND_TRIP_CASES[2:])
def test_state_dict_round_trip_through_torch(kind, options, tmp_path):
    import torch

    buffer = make_replay(kind, OBS_DIM, ACT_DIM, seed=3, **options)
    fill(buffer, 500)
    path = tmp_path / "replay.pt"
    torch.save(to_torch(buffer.state_dict()), path)

    restored = make_replay(kind, OBS_DIM, ACT_DIM, seed=4, **options)
    restored.load_state_dict(torch.load(path, weights_only=True))

    for left, right in zip(buffer.sample(64), restored.sample(64)):
        np.testing.assert_array_equal(left, right)


def test_capacity_one_and_batch_one():
    buffer = FifoReplay(1, 1, capacity=1, seed=0, compact=True)
    buffer.add(0.0, 0.0, 0.0, 1.0, False, False)
    buffer.add(1.0, 0.5, 2.0, 2.0, False, True)

    sample = buffer.sample(1)

    assert len(buffer) == 1
    assert buffer.evicted == 1
    np.testing.assert_array_equal(sample.obs, [[1.0]])
    np.testing.assert_array_equal(sample.next_obs, [[2.0]])
    np.testing.assert_array_equal(sample.rewards, [2.0])


def test_evicted_counts_capacity_evictions():
    buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=30, seed=0)
    fill(buffer, 100)
    assert buffer.evicted == 70
    assert buffer.total_added == 100


@pytest.mark.parametrize("compact", [False, True])
def test_prioritized_random_operations_stay_consistent(compact):
    rng = np.random.default_rng(31)
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=None, seed=1, alpha=1.0,
                               compact=compact, max_bytes=60_000)
    added = 0
    with pytest.warns(ReplayMemoryWarning):
        for _ in range(150):
            operation = rng.integers(0, 4)
            if operation == 0:
                count = int(rng.integers(1, 120))
                fill(buffer, count, start=added)
                added += count
            elif operation == 1:
                fill(buffer, 1, start=added)
                added += 1
            elif operation == 2 and len(buffer):
                buffer.storage.drop_oldest(int(rng.integers(0, len(buffer) // 3 + 1)))
            elif len(buffer):
                sample = buffer.sample(32)
                assert np.all(buffer.storage.is_live(sample.indices))
                np.testing.assert_array_equal(sample.obs[:, 0], sample.indices)
                np.testing.assert_array_equal(sample.next_obs, sample.obs + 1.0)
                buffer.update_priorities(sample.indices, rng.uniform(0, 5, size=32))

            tree = buffer._sampler._tree
            assert tree.total == pytest.approx(buffer.priorities().sum())
            expected_min = buffer.priorities().min() if len(buffer) else np.inf
            assert tree.min == expected_min
    assert buffer.evicted > 0


def test_constructor_lists_every_problem():
    with pytest.raises(ValueError) as error:
        PrioritizedReplay(0, ACT_DIM, capacity=0, seed=-1, alpha=-2.0, max_bytes=-5)
    text = str(error.value)
    assert "5 problems" in text
    for fragment in ("obs_dim", "capacity", "seed", "alpha", "max_bytes"):
        assert fragment in text, fragment


def test_fifo_requires_capacity():
    with pytest.raises(ValueError, match="capacity must be an int >= 1, got None"):
        FifoReplay(OBS_DIM, ACT_DIM, capacity=None, seed=0)


# ---------------------------------------------------------------------- sum tree


def test_sum_tree_find_matches_cumsum():
    from neurorl.replay.sumtree import SumTree

    rng = np.random.default_rng(41)
    values = rng.uniform(0.0, 2.0, size=1000)
    values[rng.choice(1000, 200, replace=False)] = 0.0
    tree = SumTree(1000)
    nonzero = np.flatnonzero(values)
    tree.set(nonzero, values[nonzero])
    prefix = rng.random(5000) * tree.total

    leaves = tree.find(prefix)

    expected = np.searchsorted(np.cumsum(values), prefix, side="right")
    agree = leaves == expected
    # Ties at exact cumulative boundaries may resolve to either side after rounding.
    assert agree.mean() > 0.999
    assert np.all(values[leaves] > 0)
    assert tree.total == pytest.approx(values.sum())
    assert tree.min == values[nonzero].min()


def test_sum_tree_never_returns_empty_leaf():
    from neurorl.replay.sumtree import SumTree

    tree = SumTree(4)
    tree.set(np.array([0, 1]), np.array([1.0, 1.0]))

    # A prefix equal to the total sends the unguarded descent into the empty right half.
    leaves = tree.find(np.array([2.0, 1.0, 0.5]))

    np.testing.assert_array_equal(leaves, [1, 1, 0])


def test_sum_tree_clear_and_fill_ranges():
    from neurorl.replay.sumtree import SumTree

    tree = SumTree(10)
    tree.fill_range(0, 10, 2.0)
    tree.clear_range(3, 7)

    np.testing.assert_array_equal(tree.get_range(0, 10), [2, 2, 2, 0, 0, 0, 0, 2, 2, 2])
    assert tree.total == 12.0
    assert tree.min == 2.0
    tree.clear_range(0, 10)
    assert tree.total == 0.0
    assert tree.min == np.inf
