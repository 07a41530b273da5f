"""Training throughput: neurorl TD3 against Stable-Baselines3 TD3, and PopSAN-TD3 by T.

    python tools/bench_train.py --json            # full measurement (about 15 minutes on 2 cores)
    python tools/bench_train.py --json --quick    # shorter runs for a smoke check

The SB3 comparison needs the ``bench`` extra: ``pip install -e '.[bench]'``.

Prints one JSON object:
- ``neurorl_sps`` / ``sb3_sps`` / ``ratio``: TD3 with the ANN actor on Hopper-v5, 256-256 networks,
  batch 256, one update per step, learning from step 1000, 6000 steps, the same thread count,
  measured alternating, each run in a fresh process (``--repeats`` rounds, median reported), so
  each library runs with its own process settings. neurorl's figure is its training loop without
  the evaluation episodes (SB3 runs none), energy counting included.
- ``popsan_sps``: PopSAN-TD3 steps per second for T = 1, 2, 5, 10 (same settings).
- ``popsan_fwd_bwd_ms``: one forward and backward pass of the PopSAN actor, batch 256, T = 5.
- ``multi_seed_speedup``: PopSAN-TD3 at T = 5, 5 seeds in one process against 5 sequential runs
  of the same length (only when neurorl.experiment.multiseed is available).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SETTINGS = {"env": "Hopper-v5", "batch_size": 256, "learning_starts": 1000, "steps": 6000, "hidden": (256, 256)}


def neurorl_config(actor: str, T: int, steps: int, threads: int, seed: int = 0):
    from neurorl.config import build_config

    return build_config({}, {
        "env": SETTINGS["env"], "actor": actor, "T": T, "replay": "fifo", "steps": steps,
        "learning_starts": SETTINGS["learning_starts"], "batch_size": SETTINGS["batch_size"], "update_every": 1,
        "eval_every": steps, "eval_episodes": 1, "hidden": SETTINGS["hidden"], "threads": threads, "seed": seed,
        "checkpoint_every": 10 * steps, "tensorboard": False,
    })


def neurorl_sps(actor: str, T: int, steps: int, threads: int) -> float:
    """Steps per second of neurorl's loop, evaluation and the final checkpoint excluded."""
    from neurorl.experiment.training import train

    with tempfile.TemporaryDirectory() as directory:
        summary = train(neurorl_config(actor, T, steps, threads), Path(directory) / "run", show_progress=False)
    timing = summary["timing_s"]
    loop_seconds = summary["wall_time_s"] - timing["evaluation"] - timing["checkpoint"]
    return steps / loop_seconds


def sb3_sps(steps: int, threads: int) -> float:
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(threads)
    env = gym.make(SETTINGS["env"])
    act_dim = env.action_space.shape[0]
    model = TD3(
        "MlpPolicy", env, learning_starts=SETTINGS["learning_starts"], batch_size=SETTINGS["batch_size"],
        train_freq=1, gradient_steps=1, buffer_size=steps, policy_kwargs={"net_arch": list(SETTINGS["hidden"])},
        action_noise=NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim)), seed=0, device="cpu", verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def popsan_fwd_bwd_ms(threads: int, repeats: int = 30) -> float:
    """Time the PopSAN actor's forward+backward under the training defaults (``neurorl.runtime``)."""
    from neurorl import runtime
    from neurorl.config import TrainConfig
    from neurorl.snn.actors import ActorSpec, build_actor

    runtime.configure(threads, TrainConfig().retain_memory)
    actor = build_actor("popsan", ActorSpec(obs_dim=11, act_dim=3, T=5))
    obs = torch.randn(256, 11)
    for _ in range(5):
        actor(obs).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        actor(obs).sum().backward()
    return (time.perf_counter() - start) / repeats * 1e3


def multi_seed_speedup(steps: int, threads: int) -> float | None:
    try:
        from neurorl.experiment.multiseed import train_seeds
    except ImportError:
        return None
    from neurorl.experiment.training import train

    seeds = [0, 1, 2, 3, 4]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        start = time.perf_counter()
        for seed in seeds:
            train(neurorl_config("popsan", 5, steps, threads, seed), root / f"single{seed}", show_progress=False)
        sequential = time.perf_counter() - start

        start = time.perf_counter()
        train_seeds(neurorl_config("popsan", 5, steps, threads), seeds, [root / f"multi{s}" for s in seeds], show_progress=False)
        batched = time.perf_counter() - start
    return sequential / batched


def run_part(part: str, steps: int, threads: int) -> float:
    """Measure one library's steps per second (the body of a ``--part`` subprocess)."""
    if part == "neurorl":
        return neurorl_sps("ann", 1, steps, threads)
    return sb3_sps(steps, threads)


def in_subprocess(part: str, steps: int, threads: int) -> float:
    """Run one measurement in a fresh process, so that neither library inherits the other's process
    settings (neurorl's retained freed memory, imported modules, warmed allocators)."""
    command = [sys.executable, __file__, "--part", part, "--threads", str(threads)]
    if steps != SETTINGS["steps"]:
        command.append("--quick")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="shorter runs (2000 steps) for a smoke check")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both libraries (default: 1)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating neurorl/SB3 rounds (default: 2)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: sb3, popsan, multiseed")
    parser.add_argument("--part", choices=("neurorl", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - {"sb3", "popsan", "multiseed"}
    if unknown:
        parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}; use sb3, popsan or multiseed")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if "sb3" not in skip and importlib.util.find_spec("stable_baselines3") is None:
        parser.error("stable-baselines3 is not installed: run pip install -e '.[bench]', or pass --skip sb3")
    steps = 2000 if args.quick else SETTINGS["steps"]
    torch.set_num_threads(args.threads)

    report: dict = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "torch": torch.__version__,
                    "threads": args.threads, "steps": steps}
    if args.part:
        print(json.dumps(run_part(args.part, steps, args.threads)))
        return
    if "sb3" not in skip:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(in_subprocess("neurorl", steps, args.threads))
            theirs.append(in_subprocess("sb3", steps, args.threads))
        report.update(neurorl_sps=statistics.median(ours), sb3_sps=statistics.median(theirs),
                      ratio=statistics.median(ours) / statistics.median(theirs), rounds={"neurorl": ours, "sb3": theirs})
    if "popsan" not in skip:
        popsan_steps = min(steps, 3000)
        report["popsan_sps"] = {str(T): neurorl_sps("popsan", T, popsan_steps, args.threads) for T in (1, 2, 5, 10)}
        report["popsan_fwd_bwd_ms"] = popsan_fwd_bwd_ms(args.threads)
    if "multiseed" not in skip:
        report["multi_seed_speedup"] = multi_seed_speedup(min(steps, 2000), args.threads)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
