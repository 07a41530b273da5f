"""Benchmark the replay buffers on HalfCheetah-sized transitions (obs 17, action 6).

Measures, for FIFO buffers holding 1e4, 1e6 and 1e7 transitions (``--quick``: 1e3, 1e4, 1e5):
the cost of one `add` at steady state and of one `sample(256)`; the time to drop the oldest 10%
of 1e6 transitions; bytes per stored transition (plain, compact, and raw float32 for reference);
the time of one resilient check with |D'| = 256 and a small numpy MLP policy; and the ratio of
stable-baselines3's ReplayBuffer add+sample time to ours at 1e6 transitions, measured in the
same run. Prints one JSON object with ``--json``, else a readable table.

Usage:
    python tools/bench_replay.py --json
    python tools/bench_replay.py --quick --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

from neurorl.replay import FifoReplay, PrioritizedReplay, ResilientReplay, UnboundedReplay

OBS_DIM = 17
ACT_DIM = 6
BATCH_SIZE = 256
FULL_SIZES = (10_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000)
EPISODE_LENGTH = 1000


def log(message: str) -> None:
    """Print a progress line to stderr, so stdout stays one JSON object."""
    print(f"[bench_replay] {message}", file=sys.stderr, flush=True)


def mean_time(function: Callable[[], Any], calls: int) -> float:
    """Return the mean seconds per call of function over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def median_time(function: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    """Return the median over repeats of the mean seconds per call."""
    return statistics.median(mean_time(function, calls) for _ in range(repeats))


class EpisodeBlock:
    """A block of HalfCheetah-shaped transitions forming episodes of EPISODE_LENGTH steps, in
    which each next observation is the following transition's observation."""

    def __init__(self, rows: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        states = rng.standard_normal((rows + 1, OBS_DIM), dtype=np.float32)
        self.obs = states[:-1]
        self.next_obs = states[1:]
        self.actions = rng.uniform(-1, 1, size=(rows, ACT_DIM)).astype(np.float32)
        self.rewards = rng.standard_normal(rows, dtype=np.float32)
        self.terminated = np.zeros(rows, dtype=bool)
        self.truncated = (np.arange(rows) % EPISODE_LENGTH) == EPISODE_LENGTH - 1

    def add_to(self, buffer: Any, count: int) -> None:
        """Add count transitions to buffer, repeating the block as needed."""
        rows = len(self.obs)
        for start in range(0, count, rows):
            stop = min(rows, count - start)
            buffer.add_batch(self.obs[:stop], self.actions[:stop], self.rewards[:stop],
                             self.next_obs[:stop], self.terminated[:stop], self.truncated[:stop])


def bench_fifo(sizes: tuple[int, ...], block: EpisodeBlock, add_calls: int,
               sample_calls: int, repeats: int = 7) -> dict:
    """Return add_us and sample_us of full FIFO buffers of each size.

    All buffers stay alive and the sizes take turns in every repeat, so that load from other
    processes on a shared machine affects every size alike. Each figure is the median over
    repeats of the mean cost per call.
    """
    buffers = {}
    for size in sizes:
        log(f"filling a FIFO buffer with {size:.0e} transitions")
        buffers[size] = FifoReplay(OBS_DIM, ACT_DIM, capacity=size, seed=0)
        block.add_to(buffers[size], size)

    obs, action, next_obs = block.obs[0], block.actions[0], block.next_obs[0]
    add_runs = {size: [] for size in sizes}
    sample_runs = {size: [] for size in sizes}
    log("timing add and sample")
    for _ in range(repeats):
        for size, buffer in buffers.items():
            add_runs[size].append(
                mean_time(lambda: buffer.add(obs, action, 0.5, next_obs, False, False), add_calls))
            sample_runs[size].append(mean_time(lambda: buffer.sample(BATCH_SIZE), sample_calls))

    result = {
        "add_us": {str(size): statistics.median(add_runs[size]) * 1e6 for size in sizes},
        "sample_us": {str(size): statistics.median(sample_runs[size]) * 1e6 for size in sizes},
    }
    del buffers
    gc.collect()
    return result


def bench_shrink(size: int, block: EpisodeBlock) -> dict:
    """Return the milliseconds to drop the oldest 10% of size transitions, per buffer kind."""
    results = {}
    for name, compact, sampler in (("plain", False, "uniform"), ("compact", True, "uniform"),
                                   ("prioritized", False, "prioritized")):
        timings = []
        for _ in range(3):
            buffer = ResilientReplay(OBS_DIM, ACT_DIM, seed=0, min_size=1000, compact=compact,
                                     sampler=sampler)
            block.add_to(buffer, size)
            start = time.perf_counter()
            removed = buffer.shrink()
            timings.append(time.perf_counter() - start)
            assert removed == size // 10, removed
            del buffer
            gc.collect()
        results[name] = statistics.median(timings) * 1e3
    return results


def bench_bytes(size: int, block: EpisodeBlock) -> dict:
    """Return bytes per stored transition for full plain and compact FIFO buffers."""
    raw = 4 * (OBS_DIM + ACT_DIM + 1 + OBS_DIM + 1)
    result = {"raw_float32": float(raw)}
    for name, compact in (("plain", False), ("compact", True)):
        buffer = FifoReplay(OBS_DIM, ACT_DIM, capacity=size, seed=0, compact=compact)
        block.add_to(buffer, size)
        result[name] = buffer.size_bytes / len(buffer)

    unbounded = UnboundedReplay(OBS_DIM, ACT_DIM, seed=0)
    block.add_to(unbounded, size)
    result["unbounded_plain"] = unbounded.size_bytes / len(unbounded)
    result["plain_over_raw"] = result["plain"] / raw
    result["compact_over_raw"] = result["compact"] / raw
    return result


def numpy_mlp_policy(seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Return a 17-64-64-6 tanh MLP in numpy, a stand-in for an actor's forward pass."""
    rng = np.random.default_rng(seed)
    shapes = [(OBS_DIM, 64), (64, 64), (64, ACT_DIM)]
    weights = [rng.normal(0, 1 / np.sqrt(rows), size=(rows, cols)).astype(np.float32)
               for rows, cols in shapes]

    def policy(states: np.ndarray) -> np.ndarray:
        hidden = np.tanh(states @ weights[0])
        hidden = np.tanh(hidden @ weights[1])
        return np.tanh(hidden @ weights[2])

    return policy


def bench_check(size: int, block: EpisodeBlock) -> dict:
    """Return the milliseconds of one resilient check (no shrink) per beta_mode."""
    policy = numpy_mlp_policy(0)
    results = {}
    for beta_mode in ("constant", "standardize"):
        buffer = ResilientReplay(OBS_DIM, ACT_DIM, seed=0, threshold=1e12, beta_mode=beta_mode)
        block.add_to(buffer, size)
        results[beta_mode] = median_time(lambda: buffer.run_check(policy, 0), 20) * 1e3
    policy_ms = median_time(lambda: policy(block.obs[:256]), 50) * 1e3
    results["policy_only"] = policy_ms
    return results


def bench_prioritized(size: int, block: EpisodeBlock, sample_calls: int) -> dict:
    """Return sample_us and update_us (256 TD errors) of a full prioritized buffer."""
    buffer = PrioritizedReplay(OBS_DIM, ACT_DIM, capacity=size, seed=0)
    block.add_to(buffer, size)
    td_errors = np.random.default_rng(1).uniform(0, 2, size=BATCH_SIZE)
    sample = buffer.sample(BATCH_SIZE)
    sample_s = median_time(lambda: buffer.sample(BATCH_SIZE), sample_calls)
    update_s = median_time(lambda: buffer.update_priorities(sample.indices, td_errors),
                           sample_calls)
    return {"sample_us": sample_s * 1e6, "update_us": update_s * 1e6}


def make_sb3_buffer(size: int, block: EpisodeBlock) -> Any:
    """Return a stable-baselines3 ReplayBuffer holding size transitions from block."""
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    buffer = ReplayBuffer(
        size,
        spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        spaces.Box(-1, 1, (ACT_DIM,), np.float32),
        device="cpu",
        n_envs=1,
    )
    # SB3 has no batch add. Filling its arrays directly puts it in the same full state as ours.
    for start in range(0, size, len(block.obs)):
        stop = min(len(block.obs), size - start)
        buffer.observations[start:start + stop, 0] = block.obs[:stop]
        buffer.next_observations[start:start + stop, 0] = block.next_obs[:stop]
        buffer.actions[start:start + stop, 0] = block.actions[:stop]
        buffer.rewards[start:start + stop, 0] = block.rewards[:stop]
    buffer.full = True
    return buffer


def bench_against_sb3(size: int, block: EpisodeBlock, add_calls: int, sample_calls: int,
                      repeats: int = 7) -> dict:
    """Return add_us and sample_us of SB3's ReplayBuffer and of our FIFO buffer at one size.

    SB3's sample returns torch tensors, so our sample is also timed with every field converted
    by torch.from_numpy. The five timings take turns in every repeat, as in bench_fifo.
    """
    import torch

    torch.set_num_threads(1)
    sb3 = make_sb3_buffer(size, block)
    ours = FifoReplay(OBS_DIM, ACT_DIM, capacity=size, seed=0)
    block.add_to(ours, size)

    def sample_as_tensors() -> None:
        for field in ours.sample(BATCH_SIZE):
            torch.from_numpy(field)

    obs, action, next_obs = block.obs[0], block.actions[0], block.next_obs[0]
    sb3_args = (block.obs[:1], block.next_obs[:1], block.actions[:1], np.array([0.5]),
                np.array([False]), [{}])
    timed = {
        "sb3_add_us": (lambda: sb3.add(*sb3_args), add_calls),
        "sb3_sample_us": (lambda: sb3.sample(BATCH_SIZE), sample_calls),
        "ours_add_us": (lambda: ours.add(obs, action, 0.5, next_obs, False, False), add_calls),
        "ours_sample_us": (lambda: ours.sample(BATCH_SIZE), sample_calls),
        "ours_sample_torch_us": (sample_as_tensors, sample_calls),
    }
    runs: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(repeats):
        for name, (function, calls) in timed.items():
            runs[name].append(mean_time(function, calls))
    result = {name: statistics.median(values) * 1e6 for name, values in runs.items()}
    result["size"] = size
    return result


def machine() -> dict:
    """Describe the machine the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__}


def run(quick: bool) -> dict:
    """Run every measurement and return the JSON-ready result."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    reference = sizes[1]
    add_calls, sample_calls = (2000, 300) if quick else (5000, 1000)
    block = EpisodeBlock(min(1_000_000, sizes[-1]), seed=0)

    result: dict[str, Any] = {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "batch_size": BATCH_SIZE,
                              "quick": quick, "sizes": list(sizes), "machine": machine()}
    figures = bench_fifo(sizes, block, add_calls, sample_calls)
    add_us, sample_us = figures["add_us"], figures["sample_us"]
    result["add_us"] = add_us
    result["sample_us"] = sample_us
    result["add_ratio_largest_over_reference"] = add_us[str(sizes[-1])] / add_us[str(reference)]
    result["sample_ratio_largest_over_reference"] = (
        sample_us[str(sizes[-1])] / sample_us[str(reference)])

    log(f"shrink of 10% of {reference:.0e}")
    result["shrink_ms"] = bench_shrink(reference, block)
    log(f"bytes per transition at {reference:.0e}")
    result["bytes_per_transition"] = bench_bytes(reference, block)
    log("resilient check")
    result["check_ms"] = bench_check(reference, block)
    log("prioritized sampling")
    result["prioritized"] = bench_prioritized(reference, block, sample_calls)

    log("stable-baselines3 ReplayBuffer")
    sb3 = bench_against_sb3(reference, block, add_calls, sample_calls)
    result["sb3"] = sb3
    sb3_total = sb3["sb3_add_us"] + sb3["sb3_sample_us"]
    result["sb3_ratio"] = sb3_total / (sb3["ours_add_us"] + sb3["ours_sample_us"])
    result["sb3_ratio_torch"] = sb3_total / (sb3["ours_add_us"] + sb3["ours_sample_torch_us"])

    result["goals"] = {
        "add_within_1.2x": result["add_ratio_largest_over_reference"] <= 1.2,
        "sample_within_1.2x": result["sample_ratio_largest_over_reference"] <= 1.2,
        "shrink_under_1ms": result["shrink_ms"]["plain"] < 1.0,
        "plain_bytes_within_1.05x": result["bytes_per_transition"]["plain_over_raw"] <= 1.05,
        "compact_at_most_0.6x": result["bytes_per_transition"]["compact_over_raw"] <= 0.6,
        "sb3_ratio_at_least_1.5": result["sb3_ratio"] >= 1.5,
    }
    return result


def print_table(result: dict) -> None:
    """Print the main figures as aligned text."""
    for size in result["sizes"]:
        print(f"{size:>10,d} transitions: add {result['add_us'][str(size)]:7.2f} us, "
              f"sample({BATCH_SIZE}) {result['sample_us'][str(size)]:8.2f} us")
    print(f"shrink 10%: {result['shrink_ms']}")
    print(f"bytes per transition: {result['bytes_per_transition']}")
    print(f"check ms: {result['check_ms']}")
    print(f"sb3 ratio: {result['sb3_ratio']:.2f} (with torch conversion "
          f"{result['sb3_ratio_torch']:.2f})")
    print(f"goals: {result['goals']}")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--quick", action="store_true",
                        help="use 1e3, 1e4 and 1e5 transitions instead of 1e4, 1e6 and 1e7")
    arguments = parser.parse_args(argv)

    result = run(arguments.quick)
    if arguments.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
