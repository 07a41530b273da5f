"""Time every actor family's forward and forward+backward pass on one batch, at T = 1, 2, 5 and 10.

Prints one JSON object with the milliseconds of a forward pass and of a forward+backward pass for
each spiking family (popsan, mdcsan, ilcsan, bptsan) at each T, beside the ANN actor. The batch
contains 256 HalfCheetah-sized observations (obs_dim 17, act_dim 6), the networks have hidden widths
256-256 and PopSAN's population sizes. Each figure is the median of repeated timings after warm-up. Uses one torch thread unless
``--threads`` is given. With the defaults it ran for about 40 seconds on a 2-core x86_64 CPU.

    python tools/bench_actors.py --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Callable

import torch

from neurorl.snn.actors import ActorSpec, build_actor

SPIKING_FAMILIES = ("popsan", "mdcsan", "ilcsan", "bptsan")
TIME_STEPS = (1, 2, 5, 10)


def median_ms(fn: Callable[[], None], budget_s: float, min_repeats: int = 3) -> float:
    """Return the median wall time of ``fn`` in milliseconds, repeating it for about ``budget_s``."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < budget_s:
        tick = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tick) * 1e3)
    return statistics.median(times)


def time_actor(name: str, spec: ActorSpec, obs: torch.Tensor, budget_s: float) -> dict[str, float]:
    torch.manual_seed(0)
    actor = build_actor(name, spec)

    def forward() -> None:
        with torch.no_grad():
            actor(obs)

    def forward_backward() -> None:
        actor.zero_grad(set_to_none=True)
        actor(obs).pow(2).mean().backward()

    return {
        "forward_ms": round(median_ms(forward, budget_s), 3),
        "forward_backward_ms": round(median_ms(forward_backward, budget_s), 3),
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    obs = torch.randn(args.batch, args.obs_dim, generator=torch.Generator().manual_seed(0)) * 1.5
    base = dict(obs_dim=args.obs_dim, act_dim=args.act_dim, hidden=tuple(args.hidden))

    results: dict[str, dict] = {"ann": time_actor("ann", ActorSpec(**base), obs, args.budget)}
    for family in args.families:
        results[family] = {
            f"T={T}": time_actor(family, ActorSpec(**base, T=T), obs, args.budget) for T in args.time_steps
        }

    return {
        "batch": args.batch,
        "obs_dim": args.obs_dim,
        "act_dim": args.act_dim,
        "hidden": list(args.hidden),
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "budget_s_per_figure": args.budget,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--batch", type=int, default=256, help="observations per batch (default 256)")
    parser.add_argument("--obs-dim", type=int, default=17, help="observation dimension (default 17, HalfCheetah)")
    parser.add_argument("--act-dim", type=int, default=6, help="action dimension (default 6, HalfCheetah)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden widths (default 256 256)")
    parser.add_argument("--families", nargs="+", default=list(SPIKING_FAMILIES), choices=SPIKING_FAMILIES,
                        help="spiking families to time (default: all)")
    parser.add_argument("--time-steps", type=int, nargs="+", default=list(TIME_STEPS),
                        help="simulation time steps T to time (default 1 2 5 10)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of repeated timing per figure, after one warm-up call (default 1.0)")
    args = parser.parse_args()
    if args.threads < 1 or args.batch < 1 or args.budget <= 0:
        parser.error(f"--threads and --batch must be ≥ 1 and --budget > 0, got {args.threads}, {args.batch}, {args.budget}")

    report = run(args)
    if args.json:
        print(json.dumps(report))
        return
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
