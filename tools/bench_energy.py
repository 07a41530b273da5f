"""Benchmark the energy counter: cost per counted forward pass and overhead in a TD3-like update loop.

Builds its own PopSAN-like spiking actor (obs 17 × 10 encoder neurons, 256-256 hidden snnTorch
neurons, 6 × 10 output neurons, grouped Conv1d decoder, T = 5) and two 256-256 critics, then times

* one actor forward at batch 1 and 256: without a counter, with the counter's hooks outside a
  phase, counting inside a phase, and NeuroBench 2.3's ``SynapticOperations`` (hooks plus the
  metric call, which binarises copies of every layer);
* a TD3-like update loop (target actor and critics, critic forward/backward and Adam step, actor
  update and soft target updates every second step) with and without counting in the
  ``learning`` phase.

Every counted variant first runs past the counter's spike checks (the first 16 calls of each
spike layer), so the figures are the steady state of a long run. Rounds are interleaved, and the
JSON reports minimum and median wall and CPU time per call, plus the share of CPU time spent
inside the counter's hooks (measured by wrapping them). On a shared machine the hook share and the
CPU minimum are the figures least disturbed by other processes.

Prints one JSON object. Run: ``python tools/bench_energy.py --json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

import snntorch as snn
import torch
from torch import nn

from neurorl.energy import OperationCounter
from neurorl.energy.counting import SPIKE_CHECK_CALLS

OBS_DIM, ACT_DIM, POP, HIDDEN, STEPS = 17, 6, 10, 256, 5


class BenchEncoder(nn.Module):
    """Gaussian receptive fields with a deterministic snnTorch spike generator."""

    input_kind = "encoder"

    def __init__(self) -> None:
        super().__init__()
        self.obs_dim, self.pop_size = OBS_DIM, POP
        self.mean = nn.Parameter(torch.linspace(-3, 3, POP).repeat(OBS_DIM, 1))
        self.std = nn.Parameter(torch.full((OBS_DIM, POP), 0.15**0.5))
        self.neuron = snn.Leaky(beta=1.0, threshold=0.999, reset_mechanism="subtract")

    def forward(self, obs: torch.Tensor, steps: int) -> torch.Tensor:
        currents = torch.exp(-0.5 * ((obs.unsqueeze(-1) - self.mean) / self.std) ** 2).flatten(1)
        return step_neuron(self.neuron, currents.expand(steps, *currents.shape))


def step_neuron(neuron: snn.Leaky, currents: torch.Tensor) -> torch.Tensor:
    mem = torch.zeros_like(currents[0])
    spikes = []
    for current in currents:
        spike, mem = neuron(current, mem)
        spikes.append(spike)
    return torch.stack(spikes)


class BenchActor(nn.Module):
    """PopSAN-like actor whose Linear layers receive the spikes of all T steps at once ([T·B, in])."""

    def __init__(self) -> None:
        super().__init__()
        self.T = STEPS
        self.encoder = BenchEncoder()
        sizes = [OBS_DIM * POP, HIDDEN, HIDDEN, ACT_DIM * POP]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.neurons = nn.ModuleList(snn.Leaky(beta=0.75, threshold=0.5, reset_mechanism="zero") for _ in sizes[1:])
        for layer in self.layers:
            layer.input_kind = "spike"
        self.decoder = nn.Conv1d(ACT_DIM, ACT_DIM, kernel_size=POP, groups=ACT_DIM)
        self.decoder.input_kind = "dense"

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder(obs, self.T)
        batch = obs.shape[0]
        for layer, neuron in zip(self.layers, self.neurons):
            currents = layer(spikes.reshape(self.T * batch, -1)).view(self.T, batch, -1)
            spikes = step_neuron(neuron, currents)
        rates = spikes.mean(0).view(batch, ACT_DIM, POP)
        return torch.tanh(self.decoder(rates).view(batch, ACT_DIM))


class NeuroBenchActor(nn.Module):
    """BenchActor with NeuroBench's calling convention (it passes one batch tensor)."""

    def __init__(self, actor: BenchActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)


def critic() -> nn.Sequential:
    layers = [nn.Linear(OBS_DIM + ACT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1)]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            layer.input_kind = "dense"
    return nn.Sequential(*layers)


def soft_update(target: nn.Module, online: nn.Module, tau: float = 0.005) -> None:
    """Polyak-average ``online`` into ``target`` in place, as TD3 does after each actor update."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


class Clock:
    """Wall and CPU seconds of one timed block (CPU time is immune to other processes' load)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_variants(variants: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """Time each variant for ``calls`` calls per round, rounds interleaved; seconds per call.

    Returns per variant the minimum and median over rounds of wall and CPU time. The minimum is
    the figure least disturbed by other processes on a shared machine.
    """
    for fn in variants.values():
        fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            clock = Clock()
            for _ in range(calls):
                fn()
            wall, cpu = clock.stop()
            samples[name].append((wall / calls, cpu / calls))
    return {
        name: {
            "wall_min_s": min(w for w, _ in values),
            "wall_median_s": statistics.median(w for w, _ in values),
            "cpu_min_s": min(c for _, c in values),
            "cpu_median_s": statistics.median(c for _, c in values),
        }
        for name, values in samples.items()
    }


class HookTimer:
    """CPU seconds spent inside one counter's hooks and ``take``, for the overhead share.

    Wraps the hook functions the counter registered (private torch and counter attributes, so
    this is a benchmark tool only). The timer's own calls are included, so the share is an upper
    bound.
    """

    def __init__(self, counter: OperationCounter) -> None:
        self.seconds = 0.0
        for hooked in counter._roots + counter._hooked:
            module = hooked.module
            for handle in hooked.handles:
                for hooks in (module._forward_hooks, module._forward_pre_hooks):
                    if handle.id in hooks:
                        hooks[handle.id] = self._timed(hooks[handle.id])
        counter.take = self._timed(counter.take)

    def _timed(self, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        return timed


def overhead_pct(timings: dict[str, dict[str, float]], variant: str, baseline: str, key: str) -> float:
    return 100.0 * (timings[variant][key] / timings[baseline][key] - 1.0)


def bench_forward(batch: int, calls: int, rounds: int) -> dict[str, object]:
    torch.manual_seed(0)
    plain_actor, counted_actor, idle_actor = BenchActor(), BenchActor(), BenchActor()
    counted_actor.load_state_dict(plain_actor.state_dict())
    idle_actor.load_state_dict(plain_actor.state_dict())
    counter = OperationCounter(counted_actor)
    idle_counter = OperationCounter(idle_actor)
    obs = torch.randn(batch, OBS_DIM)

    def counted() -> None:
        with torch.no_grad(), counter.phase("acting"):
            counted_actor(obs)
        counter.take("acting")

    variants = {
        "no_counter": lambda: _forward(plain_actor, obs),
        "counted": counted,
        "hooks_outside_phase": lambda: _forward(idle_actor, obs),
    }
    for _ in range(SPIKE_CHECK_CALLS):
        counted()
    timings = time_variants(variants, calls, rounds)
    timer = HookTimer(counter)
    clock = Clock()
    for _ in range(calls * rounds):
        counted()
    hook_share = timer.seconds / clock.stop()[1]
    counter.remove()
    idle_counter.remove()
    timings["neurobench"] = time_neurobench(plain_actor, obs, max(1, calls // 5), rounds)

    added = timings["counted"]["cpu_min_s"] - timings["no_counter"]["cpu_min_s"]
    neurobench_added = timings["neurobench"]["cpu_min_s"] - timings["no_counter"]["cpu_min_s"]
    return {
        "batch": batch,
        "seconds_per_forward": timings,
        "counted_overhead_pct_cpu_min": overhead_pct(timings, "counted", "no_counter", "cpu_min_s"),
        "counted_overhead_pct_wall_min": overhead_pct(timings, "counted", "no_counter", "wall_min_s"),
        "outside_phase_overhead_pct_cpu_min": overhead_pct(timings, "hooks_outside_phase", "no_counter", "cpu_min_s"),
        "hook_cpu_share_pct": 100.0 * hook_share,
        "counting_s_per_forward": hook_share * timings["counted"]["cpu_min_s"],
        "neurobench_over_counted_total": timings["neurobench"]["cpu_min_s"] / timings["counted"]["cpu_min_s"],
        "neurobench_added_over_counted_added": neurobench_added / added if added > 0 else None,
        "neurobench_added_over_counting_s": neurobench_added / (hook_share * timings["counted"]["cpu_min_s"]),
    }


def _forward(actor: nn.Module, obs: torch.Tensor) -> None:
    with torch.no_grad():
        actor(obs)


def time_neurobench(actor: BenchActor, obs: torch.Tensor, calls: int, rounds: int) -> dict[str, float]:
    """Time one forward plus NeuroBench 2.3's SynapticOperations on it (hooks, metric, reset)."""
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    model = TorchModel(NeuroBenchActor(actor))
    model.register_hooks()
    metric = SynapticOperations()

    def measured() -> None:
        with torch.no_grad():
            preds = model(obs)
        metric(model, preds, (obs, None))
        model.reset_hooks()

    timings = time_variants({"neurobench": measured}, calls, rounds)["neurobench"]
    result = metric.compute()
    model.cleanup_hooks()
    if result["Effective_ACs"] <= 0:
        raise RuntimeError(f"NeuroBench SynapticOperations returned no ACs ({result}); its timing would be meaningless")
    return timings


def bench_update_loop(updates: int, rounds: int, batch: int = 256) -> dict[str, object]:
    torch.manual_seed(0)
    actor, actor_target = BenchActor(), BenchActor()
    critics = [critic(), critic()]
    critic_targets = [critic(), critic()]
    actor_opt = torch.optim.Adam(actor.parameters(), lr=1e-4)
    critic_opt = torch.optim.Adam([p for c in critics for p in c.parameters()], lr=1e-3)
    obs = torch.randn(batch, OBS_DIM)
    actions = torch.rand(batch, ACT_DIM) * 2 - 1
    rewards = torch.randn(batch, 1)

    def update(step: int) -> None:
        with torch.no_grad():
            next_actions = (actor_target(obs) + 0.2 * torch.randn(batch, ACT_DIM)).clamp(-1, 1)
            next_input = torch.cat([obs, next_actions], 1)
            target = rewards + 0.99 * torch.min(*(c(next_input) for c in critic_targets))
        current_input = torch.cat([obs, actions], 1)
        critic_loss = sum(((c(current_input) - target) ** 2).mean() for c in critics)
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
        if step % 2 == 0:
            actor_loss = -critics[0](torch.cat([obs, actor(obs)], 1)).mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            soft_update(actor_target, actor)
            for target_critic, online_critic in zip(critic_targets, critics):
                soft_update(target_critic, online_critic)

    counter = OperationCounter(actor, actor_target, *critics, *critic_targets)
    steps = {"plain": 0, "counted": 0}

    def plain_update() -> None:
        update(steps["plain"])
        steps["plain"] += 1

    def counted_update() -> None:
        with counter.phase("learning"):
            update(steps["counted"])
        steps["counted"] += 1
        if steps["counted"] % updates == 0:
            counter.take("learning")

    for _ in range(SPIKE_CHECK_CALLS):
        counted_update()
    timings = time_variants({"plain": plain_update, "counted": counted_update}, updates, rounds)
    hook_share = measure_hook_share(counter, counted_update, updates * rounds)
    counter.remove()
    return {
        "updates_per_round": updates,
        "rounds": rounds,
        "batch": batch,
        "seconds_per_update": timings,
        "overhead_pct_cpu_min": overhead_pct(timings, "counted", "plain", "cpu_min_s"),
        "overhead_pct_cpu_median": overhead_pct(timings, "counted", "plain", "cpu_median_s"),
        "overhead_pct_wall_min": overhead_pct(timings, "counted", "plain", "wall_min_s"),
        "overhead_pct_wall_median": overhead_pct(timings, "counted", "plain", "wall_median_s"),
        "hook_cpu_share_pct": 100.0 * hook_share,
        "overhead_pct_from_hook_share": 100.0 * hook_share / (1.0 - hook_share),
    }


def measure_hook_share(counter: OperationCounter, counted_update: Callable[[], None], updates: int) -> float:
    """Return the fraction of the counted updates' CPU time spent inside the counter.

    Unlike a with/without comparison, this share does not depend on what other processes do
    to the machine between rounds.
    """
    timer = HookTimer(counter)
    clock = Clock()
    for _ in range(updates):
        counted_update()
    _, cpu = clock.stop()
    return timer.seconds / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (the only output format)")
    parser.add_argument("--calls", type=int, default=20, help="actor forwards per timing round at batch 1 (default 20)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (default 9)")
    parser.add_argument("--updates", type=int, default=10, help="TD3-like updates per timing round (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    result = {
        "tool": "tools/bench_energy.py",
        "torch": torch.__version__,
        "snntorch": snn.__version__,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "machine": f"{platform.machine()} {platform.system()}",
        "forward_batch_1": bench_forward(1, args.calls, args.rounds),
        "forward_batch_256": bench_forward(256, max(1, args.calls // 10), args.rounds),
        "td3_update_loop": bench_update_loop(args.updates, args.rounds),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
