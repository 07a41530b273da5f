"""Retained freed memory (``--retain-memory``): page faults and time of a PopSAN forward+backward.

Each measurement runs in a fresh process, because retaining freed memory changes the process's
allocator for good. The rounds alternate on and off. Prints one JSON object: per setting the
median milliseconds and minor page faults per forward+backward pass (batch 256, T = 5, Hopper-v5
sizes 11-256-256-3, one torch thread), and the ratio of the medians.

Run: ``python tools/bench_memory.py --json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

import torch

PASSES = 40


def measure(retain: bool) -> dict[str, float]:
    """Time ``PASSES`` forward+backward passes after a warm-up (the body of a ``--child`` process)."""
    import resource
    import time

    from neurorl import runtime
    from neurorl.snn.actors import ActorSpec, build_actor

    retained = runtime.configure(1, retain)
    actor = build_actor("popsan", ActorSpec(obs_dim=11, act_dim=3, T=5))
    obs = torch.randn(256, 11)
    for _ in range(5):
        actor(obs).sum().backward()

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(PASSES):
        actor(obs).sum().backward()
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"retained": retained, "ms": seconds / PASSES * 1e3, "faults": faults / PASSES}


def in_subprocess(retain: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "on" if retain else "off"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (the only output format)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating on/off rounds (default 3)")
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "on")))
        return

    rounds: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for setting in ("off", "on"):
            rounds[setting].append(in_subprocess(setting == "on"))
    report = {
        "tool": "tools/bench_memory.py", "torch": torch.__version__, "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "passes_per_round": PASSES,
    }
    for setting, results in rounds.items():
        report[setting] = {
            "retained": results[0]["retained"],
            "ms_median": statistics.median(r["ms"] for r in results),
            "faults_per_pass_median": statistics.median(r["faults"] for r in results),
            "ms_per_round": [r["ms"] for r in results],
        }
    report["speedup"] = report["off"]["ms_median"] / report["on"]["ms_median"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
