"""Measure torch CPU thread counts on NeuroRL's network sizes, to choose the default ``--threads``.

Prints one JSON object: for each thread count, the milliseconds of one TD3-sized step of work on a
small network (critic forward+backward, batch 100, 256-256) and on the PopSAN actor (T=5,
forward+backward, batch 100), plus a single-sample actor forward (the acting path).

    python tools/bench_threads.py --json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from neurorl.agents.critics import MLPCritic
from neurorl.snn.actors import ActorSpec, MLPActor, PopSpikingActor


def time_ms(fn, repeats: int) -> float:
    for _ in range(max(2, repeats // 10)):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def workloads(obs_dim: int, act_dim: int, batch: int):
    critic = MLPCritic(obs_dim, act_dim)
    popsan = PopSpikingActor(ActorSpec(obs_dim, act_dim, T=5))
    ann = MLPActor(ActorSpec(obs_dim, act_dim))
    obs = torch.randn(batch, obs_dim)
    actions = torch.rand(batch, act_dim) * 2 - 1
    one = torch.randn(1, obs_dim)

    def critic_step():
        critic(obs, actions).sum().backward()

    def popsan_step():
        popsan(obs).sum().backward()

    def popsan_act():
        with torch.inference_mode():
            popsan(one)

    def ann_act():
        with torch.inference_mode():
            ann(one)

    return {"critic_fwd_bwd_ms": (critic_step, 200), "popsan_fwd_bwd_ms": (popsan_step, 50),
            "popsan_act_ms": (popsan_act, 200), "ann_act_ms": (ann_act, 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts to compare")
    args = parser.parse_args()

    torch.manual_seed(0)
    results = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        results[str(threads)] = {name: round(time_ms(fn, n), 4) for name, (fn, n) in workloads(11, 3, 100).items()}
    report = {"machine": platform.processor() or platform.machine(), "cpus": torch.get_num_threads() and __import__("os").cpu_count(),
              "torch": torch.__version__, "threads": results}
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
