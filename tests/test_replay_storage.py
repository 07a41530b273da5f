"""TransitionStorage: layout, FIFO eviction, growth, compact mode, memory cap, round trips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from neurorl.replay import FifoReplay, ReplayMemoryWarning, ResilientReplay, UnboundedReplay
from neurorl.replay.storage import TransitionStorage, bytes_per_row

OBS_DIM = 3
ACT_DIM = 2


def make_episodes(rng, count, obs_dim=OBS_DIM, act_dim=ACT_DIM, max_len=7):
    """Return transitions of consecutive episodes as a list of (obs, act, rew, next, term, trunc).

    Episodes end by termination or truncation, and a few transitions break the chain (the next
    transition does not start from the previous next observation) to mimic interleaved sources.
    """
    transitions = []
    obs = rng.normal(size=obs_dim).astype(np.float32)
    step = 0
    while len(transitions) < count:
        next_obs = rng.normal(size=obs_dim).astype(np.float32)
        step += 1
        ended = step >= max_len or rng.random() < 0.15
        terminated = bool(ended and rng.random() < 0.5)
        truncated = bool(ended and not terminated)
        action = rng.uniform(-1, 1, size=act_dim).astype(np.float32)
        reward = np.float32(rng.normal())
        transitions.append((obs, action, reward, next_obs, terminated, truncated))
        if ended:
            step = 0
            obs = rng.normal(size=obs_dim).astype(np.float32)
        elif rng.random() < 0.05:
            obs = rng.normal(size=obs_dim).astype(np.float32)
        else:
            obs = next_obs
    return transitions


def plain_row(transition):
    obs, action, reward, next_obs, terminated, _ = transition
    return np.concatenate([obs, action, [reward], next_obs, [float(terminated)]]).astype(np.float32)


def append_all(storage, transitions, batch=None):
    if batch is None:
        for transition in transitions:
            storage.append(plain_row(transition), transition[5])
        return
    for start in range(0, len(transitions), batch):
        chunk = transitions[start:start + batch]
        rows = np.stack([plain_row(t) for t in chunk])
        storage.extend(rows, np.array([t[5] for t in chunk]))


def assert_matches_reference(storage, reference):
    """Check every live id against the reference transitions (indexed by id)."""
    ids = np.arange(storage.first_id, storage.next_id)
    obs, actions, rewards, next_obs, terminated = storage.gather(ids)
    expected = [reference[i] for i in ids]
    np.testing.assert_array_equal(obs, np.stack([t[0] for t in expected]))
    np.testing.assert_array_equal(actions, np.stack([t[1] for t in expected]))
    np.testing.assert_array_equal(rewards, np.array([t[2] for t in expected], np.float32))
    assert np.array_equal(next_obs.view(np.uint32),
                          np.stack([t[3] for t in expected]).view(np.uint32))
    np.testing.assert_array_equal(terminated, np.array([t[4] for t in expected], np.float32))


def test_plain_row_is_raw_float32():
    assert bytes_per_row(17, 6, compact=False) == 4 * (17 + 6 + 1 + 17 + 1)
    assert bytes_per_row(17, 6, compact=True) == 4 * (17 + 6 + 2)


def test_fifo_keeps_newest_in_order():
    storage = TransitionStorage(OBS_DIM, ACT_DIM, capacity=10, initial_rows=4)
    reference = make_episodes(np.random.default_rng(0), 37)

    append_all(storage, reference)

    assert len(storage) == 10
    assert storage.first_id == 27
    assert storage.next_id == 37
    assert storage.allocated_rows == 10
    assert_matches_reference(storage, reference)


def test_drop_oldest_moves_head():
    storage = TransitionStorage(OBS_DIM, ACT_DIM)
    reference = make_episodes(np.random.default_rng(1), 50)
    append_all(storage, reference)
    allocated = storage.allocated_rows

    removed = storage.drop_oldest(12)

    assert removed == 12
    assert storage.first_id == 12
    assert len(storage) == 38
    assert storage.allocated_rows == allocated
    assert_matches_reference(storage, reference)
    assert storage.drop_oldest(0) == 0
    assert storage.drop_oldest(1000) == 38
    assert len(storage) == 0


def test_growth_after_wraparound_keeps_order():
    storage = TransitionStorage(OBS_DIM, ACT_DIM, initial_rows=8)
    reference = make_episodes(np.random.default_rng(2), 200)

    append_all(storage, reference[:8])
    storage.drop_oldest(5)
    append_all(storage, reference[8:13])  # wraps around the 8-row array
    append_all(storage, reference[13:200], batch=9)  # grows several times

    assert storage.allocated_rows >= 195
    assert len(storage) == 195
    assert_matches_reference(storage, reference)


@pytest.mark.parametrize("batch", [None, 1, 5, 64])
def test_compact_matches_plain_across_episode_ends(batch):
    reference = make_episodes(np.random.default_rng(3), 300)
    plain = TransitionStorage(OBS_DIM, ACT_DIM, capacity=97, initial_rows=4)
    compact = TransitionStorage(OBS_DIM, ACT_DIM, capacity=97, initial_rows=4, compact=True)

    for start in range(0, 300, 50):
        append_all(plain, reference[start:start + 50], batch)
        append_all(compact, reference[start:start + 50], batch)
        plain.drop_oldest(7)
        compact.drop_oldest(7)
        assert_matches_reference(plain, reference)
        assert_matches_reference(compact, reference)


def test_compact_bytes_with_long_episodes():
    reference = make_episodes(np.random.default_rng(10), 2000, obs_dim=17, act_dim=6, max_len=1000)
    plain = TransitionStorage(17, 6, capacity=2000)
    compact = TransitionStorage(17, 6, capacity=2000, compact=True)

    append_all(plain, reference, batch=500)
    append_all(compact, reference, batch=500)

    # Side-table rows: episode ends, plus chain breaks where the next transition starts elsewhere.
    external = sum(
        t[4] or t[5] or (i + 1 < len(reference) and not np.array_equal(reference[i + 1][0], t[3]))
        for i, t in enumerate(reference)
    )
    expected = 2000 * 4 * 25 + external * (8 + 4 * 17)
    assert plain.size_bytes == 2000 * 4 * 42 + 4 * 17
    assert compact.live_bytes == expected
    assert_matches_reference(compact, reference)


def test_compact_keeps_sign_of_zero():
    storage = TransitionStorage(1, 1, compact=True)
    storage.append(np.array([1.0, 0.0, 0.0, -0.0, 0.0], np.float32), False)
    storage.append(np.array([0.0, 0.0, 0.0, 2.0, 0.0], np.float32), False)

    _, _, _, next_obs, _ = storage.gather(np.array([0, 1]))

    assert np.signbit(next_obs[0, 0])
    assert next_obs[1, 0] == 2.0


def test_compact_drops_pending_with_its_row():
    storage = TransitionStorage(1, 1, capacity=1, compact=True)
    storage.append(np.array([1.0, 0.0, 0.0, 5.0, 0.0], np.float32), False)
    storage.append(np.array([7.0, 0.0, 0.0, 8.0, 0.0], np.float32), False)

    _, _, _, next_obs, _ = storage.gather(np.array([1]))

    assert next_obs[0, 0] == 8.0


def test_compact_and_plain_buffers_sample_identically():
    reference = make_episodes(np.random.default_rng(4), 600, max_len=11)
    buffers = [
        ResilientReplay(OBS_DIM, ACT_DIM, seed=9, min_size=50, check_batch=20, check_interval=25,
                        threshold=0.0, compact=compact)
        for compact in (False, True)
    ]
    policy = lambda states: np.ones((len(states), ACT_DIM))  # noqa: E731

    for step, transition in enumerate(reference, start=1):
        for buffer in buffers:
            buffer.add(*transition)
            buffer.after_update(policy, step)
        if step % 37 == 0:
            samples = [buffer.sample(32) for buffer in buffers]
            for field_plain, field_compact in zip(*samples):
                assert np.array_equal(np.asarray(field_plain), np.asarray(field_compact))

    assert buffers[0].shrinks > 0
    assert buffers[0].total_removed == buffers[1].total_removed


def test_fifo_add_batch_larger_than_capacity():
    reference = make_episodes(np.random.default_rng(5), 45)
    for compact in (False, True):
        storage = TransitionStorage(OBS_DIM, ACT_DIM, capacity=8, compact=compact)
        append_all(storage, reference, batch=45)
        assert len(storage) == 8
        assert storage.first_id == 37
        assert_matches_reference(storage, reference)


@pytest.mark.parametrize("compact", [False, True])
def test_max_bytes_warns_once_and_evicts(compact):
    storage = TransitionStorage(OBS_DIM, ACT_DIM, compact=compact, max_bytes=4096, initial_rows=4)
    reference = make_episodes(np.random.default_rng(6), 500)

    with pytest.warns(ReplayMemoryWarning, match="max_bytes=4096"):
        append_all(storage, reference[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplayMemoryWarning)
        append_all(storage, reference[200:], batch=33)

    assert storage.live_bytes <= 4096
    assert storage.allocated_rows * storage.row_bytes <= 4096
    assert storage.next_id == 500
    assert storage.first_id == 500 - len(storage)
    assert storage.live_bytes > 4096 - 3 * (storage.row_bytes + 8 + 4 * OBS_DIM)
    assert_matches_reference(storage, reference)


def test_max_bytes_too_small_raises():
    with pytest.raises(ValueError, match="max_bytes=10 is smaller than one transition"):
        TransitionStorage(OBS_DIM, ACT_DIM, max_bytes=10)


def test_unbounded_replay_respects_max_bytes():
    buffer = UnboundedReplay(OBS_DIM, ACT_DIM, seed=0, max_bytes=10_000)
    rng = np.random.default_rng(7)
    with pytest.warns(ReplayMemoryWarning):
        buffer.add_batch(rng.normal(size=(1000, OBS_DIM)), rng.normal(size=(1000, ACT_DIM)),
                         np.zeros(1000), rng.normal(size=(1000, OBS_DIM)),
                         np.zeros(1000, bool), np.zeros(1000, bool))

    assert buffer.size_bytes <= 10_000 + 4 * OBS_DIM
    assert len(buffer) == 10_000 // (4 * (2 * OBS_DIM + ACT_DIM + 2))


@pytest.mark.parametrize("compact", [False, True])
def test_storage_state_round_trip(compact):
    reference = make_episodes(np.random.default_rng(8), 120)
    storage = TransitionStorage(OBS_DIM, ACT_DIM, capacity=50, compact=compact, initial_rows=4)
    append_all(storage, reference[:90])
    storage.drop_oldest(3)

    restored = TransitionStorage(OBS_DIM, ACT_DIM, capacity=50, compact=compact)
    restored.load_state_dict(storage.state_dict())

    assert restored.first_id == storage.first_id
    assert restored.allocated_rows == storage.allocated_rows
    np.testing.assert_array_equal(restored.live_rows(), storage.live_rows())
    append_all(storage, reference[90:])
    append_all(restored, reference[90:])
    assert_matches_reference(restored, reference)
    np.testing.assert_array_equal(restored.live_rows(), storage.live_rows())


def test_storage_state_rejects_other_configuration():
    storage = TransitionStorage(OBS_DIM, ACT_DIM, capacity=50)
    other = TransitionStorage(OBS_DIM, ACT_DIM, capacity=60)

    with pytest.raises(ValueError, match="capacity is 50 in the checkpoint but 60"):
        other.load_state_dict(storage.state_dict())


def test_state_action_std_matches_numpy():
    storage = TransitionStorage(OBS_DIM, ACT_DIM, initial_rows=8)
    reference = make_episodes(np.random.default_rng(9), 77)
    append_all(storage, reference)
    storage.drop_oldest(20)

    live = np.stack([np.concatenate([t[0], t[1]]) for t in reference[20:]]).astype(np.float64)

    np.testing.assert_allclose(storage.state_action_std(chunk_rows=5), live.std(axis=0),
                               rtol=1e-10)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"capacity": 0}, "capacity must be an int >= 1, got 0"),
        ({"capacity": -5}, "capacity must be an int >= 1, got -5"),
        ({"capacity": 2.5}, "capacity must be an int >= 1, got 2.5"),
        ({"max_bytes": -1}, "max_bytes must be an int >= 0"),
        ({"compact": "yes"}, "compact must be a bool"),
    ],
)
def test_storage_arguments_validated(options, message):
    with pytest.raises(ValueError, match=message):
        TransitionStorage(OBS_DIM, ACT_DIM, **options)


def test_fifo_replay_rejects_bad_dims():
    with pytest.raises(ValueError) as error:
        FifoReplay(0, -1, capacity=10, seed=0)
    assert "obs_dim must be an int >= 1, got 0" in str(error.value)
    assert "act_dim must be an int >= 1, got -1" in str(error.value)
