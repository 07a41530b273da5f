"""Benchmark the energy counter the way the training loop uses it, and against NeuroBench.

Prints one JSON object with two measurements. All times are CPU seconds of the measuring thread
(the machine may be shared), with torch on 1 thread.

* Training overhead. The real training loop (:class:`neurorl.experiment.training.Trainer`: TD3,
  PopSAN actor, T = 5, Hopper-v5, FIFO replay, 256-256, one evaluation at the last step) runs
  with and without counting. Counting is disabled inside this tool only: the trainer's counters
  are removed, ``phase`` becomes a no-op and ``take`` returns empty counts. Two trainers with
  the same seed run in one process, each in its own thread, taking turns every
  ``--turn-steps`` environment steps, so load from other processes hits both alike. One counts
  in the first half of its updates and the other in the second half, and the counted time is
  the sum of the two counted halves (a crossover). That cancels what differs between the two
  trainer instances (two identical uncounted trainers differed by up to 3 % over 900 steps) and
  between the halves. Loop time excludes evaluation and checkpoints, and the wall time of the
  turns is reported beside the CPU time. Both runs must return the same evaluation return, or
  the tool raises. ``--training-rounds`` pairs are run, and the overhead is their median. Beside
  it, ``counter_share_pct_wall`` is the counters' own time (``OperationCounter.seconds``) in the
  counted halves as a share of their wall time. That is the direct cost of counting. The
  overhead exceeds it by what lies outside the counters' timers: the wrappers' own calls, and the
  cache and memory traffic that counting adds to the rest of a step. With ``--inert-counters``
  the counted halves keep the counters installed but count nothing (every ``phase`` is a no-op),
  which measures the wrappers' calls and the optimizer step hook alone. ``--ablate`` drops one
  part of the counters' tensor work from the counted halves, which measures what that part costs
  in place. ``zero-tests`` takes every weight version as zero-free without reading it.
  ``input-sums`` skips the sum of each large spike input, so its AC count is wrong. Ablated counts
  are not exact, and the result lists the parts dropped.
* Cost per counted forward pass. The registry's PopSAN actor (obs 17, act 6, T = 5, 256-256)
  at batch 1 and 256, under ``torch.inference_mode`` as the agent acts, three ways on three
  copies with the same weights: bare (no counter); counted (inside its own ``acting`` phase,
  one ``take()`` per ``--take-every`` forwards, timed apart and added per forward); NeuroBench
  2.3's ``SynapticOperations`` (its hooks, then the metric and ``reset_hooks`` after every
  forward, as its ``Benchmark.run`` does). The three alternate forward by forward, the order
  rotating, and the added cost of each is the median of its per-forward differences to bare.
  The figure of merit is NeuroBench's added cost over the counter's. Both counters' AC counts
  are compared, so a failed count cannot pass as a fast one.

Counted variants first run past the counter's spike checks (the first 16 calls of each spike
layer), so the figures are the steady state of a long run.

Run: ``python tools/bench_energy.py --json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import snntorch as snn
import torch
from torch import nn

from neurorl.config import build_config
from neurorl.energy import OperationCounter, OperationCounts, counting, synapses
from neurorl.energy.counting import SPIKE_CHECK_CALLS
from neurorl.experiment.training import Trainer
from neurorl.snn.actors import ActorSpec, build_actor

FORWARD_SPEC = ActorSpec(obs_dim=17, act_dim=6, T=5)
# Parts of the counters' tensor work that --ablate can drop from the training pairs.
ABLATIONS = ("zero-tests", "input-sums")


# --------------------------------------------------------------------------------- training loop


def training_config(steps: int, learning_starts: int) -> Any:
    return build_config({}, {
        "env": "Hopper-v5", "actor": "popsan", "algo": "td3", "T": 5, "replay": "fifo",
        "steps": steps, "learning_starts": learning_starts, "eval_every": steps, "eval_episodes": 1,
        "hidden": [256, 256], "threads": 1, "checkpoint_every": 10 * steps, "tensorboard": False, "seed": 0,
    })


class _NoPhase:
    """Context manager that counts nothing, the ``phase`` of a disabled counter."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


def disable_counting(trainer: Trainer) -> None:
    """Remove the trainer's counters and make their phases and takes no-ops (this tool only)."""
    for counter in (trainer.counter, trainer.target_counter):
        counter.remove()
        counter.phase = lambda name: _NoPhase()
        counter.take = lambda phase: OperationCounts()


def enable_counting(trainer: Trainer, inert: bool = False) -> None:
    """Give the trainer new counters, built as ``Trainer.__init__`` builds them. With ``inert`` they count nothing."""
    networks = trainer.agent.networks()
    trainer.counter = OperationCounter(*[net for name, net in networks.items() if not name.endswith("_target")])
    trainer.target_counter = OperationCounter(*[net for name, net in networks.items() if name.endswith("_target")])
    if inert:
        make_inert(trainer)


def make_inert(trainer: Trainer) -> None:
    """Keep the trainer's counters installed but make their phases no-ops, so their wrappers only compute."""
    for counter in (trainer.counter, trainer.target_counter):
        counter.phase = lambda name: _NoPhase()


class Turns:
    """Let threads run one at a time, each until it passes the turn on (a baton)."""

    def __init__(self, names: list[str]) -> None:
        self._names = names
        self._turn = names[0]
        self._finished: set[str] = set()
        self._condition = threading.Condition()

    def wait(self, name: str) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._turn == name)

    def pass_on(self, name: str, finished: bool = False) -> None:
        with self._condition:
            if finished:
                self._finished.add(name)
            index = self._names.index(name)
            for offset in range(1, len(self._names) + 1):
                candidate = self._names[(index + offset) % len(self._names)]
                if candidate not in self._finished:
                    self._turn = candidate
                    break
            self._condition.notify_all()


class TimedTrainer:
    """A trainer run in its own thread that switches counting on or off halfway through its updates.

    It takes turns with the other trainers every ``turn_steps`` environment steps. ``cpu_s`` and
    ``wall_s`` hold, per half, the thread's CPU time in the training loop and the wall time of its
    turns, both without evaluation and checkpoints. A thread's CPU clock does not advance while it
    waits for its turn.
    """

    def __init__(
        self, name: str, counting_first: bool, steps: int, learning_starts: int, turns: Turns, turn_steps: int, inert: bool = False
    ) -> None:
        self.name, self.turns, self.turn_steps = name, turns, turn_steps
        self.counting_first, self.inert = counting_first, inert
        self.switch_step = learning_starts + (steps - learning_starts) // 2
        self._run_dir = tempfile.TemporaryDirectory(prefix="bench_energy_")
        self.trainer = Trainer(training_config(steps, learning_starts), Path(self._run_dir.name), show_progress=False)
        if not counting_first:
            disable_counting(self.trainer)
        elif inert:
            make_inert(self.trainer)
        self.cpu_s: list[float] = []
        self.wall_s: list[float] = []
        self.counter_s: list[float] = []
        self._excluded_cpu = self._excluded_wall = self._excluded_counter = 0.0
        self._counter_mark = self._counter_seconds()
        self._half_started_cpu = self._turn_started = self._turn_wall = 0.0
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._wrap()

    def _counter_seconds(self) -> float:
        return self.trainer.counter.seconds + self.trainer.target_counter.seconds

    def _end_half(self) -> None:
        self._turn_wall += time.perf_counter() - self._turn_started
        self.cpu_s.append(time.thread_time() - self._half_started_cpu - self._excluded_cpu)
        self.wall_s.append(self._turn_wall - self._excluded_wall)
        self.counter_s.append(self._counter_seconds() - self._counter_mark - self._excluded_counter)
        self._excluded_cpu = self._excluded_wall = self._turn_wall = self._excluded_counter = 0.0
        self._half_started_cpu = time.thread_time()
        self._turn_started = time.perf_counter()

    def _wrap(self) -> None:
        trainer = self.trainer
        loop, choose_action = trainer._loop, trainer._choose_action

        def timed_loop(*args: Any) -> None:
            self._half_started_cpu, self._turn_started = time.thread_time(), time.perf_counter()
            loop(*args)
            self._end_half()

        def turn_taking_choose_action(obs: Any, step: int, mark: float) -> Any:
            if step == self.switch_step:
                self._end_half()
                if self.counting_first:
                    disable_counting(trainer)
                else:
                    enable_counting(trainer, self.inert)
                self._counter_mark = self._counter_seconds()
            if step % self.turn_steps == 0:
                self._turn_wall += time.perf_counter() - self._turn_started
                self.turns.pass_on(self.name)
                self.turns.wait(self.name)
                self._turn_started = time.perf_counter()
                mark = time.perf_counter()
            return choose_action(obs, step, mark)

        trainer._loop = timed_loop
        trainer._choose_action = turn_taking_choose_action
        trainer._evaluate_and_log = self._excluding(trainer._evaluate_and_log)
        trainer._save_checkpoint = self._excluding(trainer._save_checkpoint)

    def _excluding(self, method: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu, counter = time.perf_counter(), time.thread_time(), self._counter_seconds()
            try:
                return method(*args, **kwargs)
            finally:
                self._excluded_wall += time.perf_counter() - wall
                self._excluded_cpu += time.thread_time() - cpu
                self._excluded_counter += self._counter_seconds() - counter

        return timed

    def run(self) -> None:
        """Train when this thread's turn comes. An exception is kept in ``error`` for the main thread."""
        self.turns.wait(self.name)
        try:
            self.summary = self.trainer.run()
        except BaseException as error:  # noqa: BLE001 (re-raised by run_training_pair)
            self.error = error
        finally:
            self.turns.pass_on(self.name, finished=True)
            self._run_dir.cleanup()


def run_training_pair(steps: int, learning_starts: int, turn_steps: int, inert: bool = False) -> dict[str, Any]:
    """Run two trainers in lockstep, one counting in the first half of its updates and the other in the second.

    Both halves of both trainers do the same work (same seed), so summing each trainer's counted
    half with the other's uncounted one cancels what differs between the two trainer instances
    and between the two halves.
    """
    names = ["counting_first", "counting_second"]
    turns = Turns(names)
    timed = {name: TimedTrainer(name, name == "counting_first", steps, learning_starts, turns, turn_steps, inert) for name in names}
    threads = [threading.Thread(target=timed[name].run, name=f"bench-{name}") for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run in timed.values():
        if run.error is not None:
            raise RuntimeError(f"the {run.name} training run failed: {run.error!r}") from run.error

    first, second = timed["counting_first"], timed["counting_second"]
    if first.summary.get("eval_return") != second.summary.get("eval_return"):
        raise RuntimeError("the two training runs returned different evaluation returns, so they did different work")
    return {
        "counted_cpu_s": first.cpu_s[0] + second.cpu_s[1],
        "uncounted_cpu_s": second.cpu_s[0] + first.cpu_s[1],
        "counted_wall_s": first.wall_s[0] + second.wall_s[1],
        "uncounted_wall_s": second.wall_s[0] + first.wall_s[1],
        "counter_s": first.counter_s[0] + second.counter_s[1],
        "halves_cpu_s": {name: run.cpu_s for name, run in timed.items()},
        "eval_return": first.summary["eval_return"],
    }


@contextlib.contextmanager
def ablated(parts: Collection[str]) -> Iterator[None]:
    """Drop ``parts`` (names from ``ABLATIONS``) from every counter's work while the block runs.

    ``zero-tests``: every CPU floating-point weight version counts as zero-free without being read.
    ``input-sums``: a spike layer's total advances its slot without summing the input, so its ACs
    are lost. Counts taken in the block are therefore not exact.

    NOTE: both parts are dropped by replacing module attributes, which reaches only callers that
    look them up at each call (``layer_fanout`` through ``synapses.zero_free``, and the wrappers
    through the method). A caller that binds either name once would keep the real work.
    """
    unknown = set(parts) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"invalid ablation {sorted(unknown)}; choose from {', '.join(ABLATIONS)}")
    zero_free, add_total = synapses.zero_free, counting._Accumulator.add_total

    def assume_zero_free(weight: torch.Tensor) -> bool:
        return weight.device.type == "cpu" and weight.is_floating_point() and weight.numel() > 0

    def skip_sum(accumulator: Any, matrix: torch.Tensor) -> None:
        accumulator.filled += 1
        if accumulator.filled == counting._TOTAL_SLOTS:
            accumulator.filled = 0

    try:
        if "zero-tests" in parts:
            synapses.zero_free = assume_zero_free
        if "input-sums" in parts:
            counting._Accumulator.add_total = skip_sum
        yield
    finally:
        synapses.zero_free, counting._Accumulator.add_total = zero_free, add_total


def bench_training(
    steps: int, learning_starts: int, rounds: int, turn_steps: int, inert: bool = False, ablate: Collection[str] = ()
) -> dict[str, Any]:
    """Run ``rounds`` crossover pairs of training runs (see :func:`run_training_pair`), with ``ablate`` dropped.

    A short pair runs first to warm up imports and allocators.
    """
    with ablated(ablate):
        run_training_pair(learning_starts + 4 * turn_steps, learning_starts, turn_steps, inert)
        pairs = [run_training_pair(steps, learning_starts, turn_steps, inert) for _ in range(rounds)]
    cpu = [100.0 * (pair["counted_cpu_s"] / pair["uncounted_cpu_s"] - 1.0) for pair in pairs]
    wall = [100.0 * (pair["counted_wall_s"] / pair["uncounted_wall_s"] - 1.0) for pair in pairs]
    share = [100.0 * pair["counter_s"] / pair["counted_wall_s"] for pair in pairs]
    config = training_config(steps, learning_starts)
    return {
        "config": {key: getattr(config, key) for key in ("env", "actor", "algo", "T", "replay", "steps", "learning_starts",
                                                          "batch_size", "update_every", "hidden")}
        | {"turn_steps": turn_steps, "counters": "inert" if inert else "counting", "ablated": sorted(ablate),
           "counts_exact": not inert and not ablate},
        "pairs": pairs,
        "overhead_pct_cpu": {"median": statistics.median(cpu), "per_pair": cpu},
        "overhead_pct_wall": {"median": statistics.median(wall), "per_pair": wall},
        "counter_share_pct_wall": {"median": statistics.median(share), "per_pair": share},
    }


# --------------------------------------------------------------------------------- forward passes


class ForwardVariants:
    """One actor forward three ways, on copies of the same actor with the same weights.

    ``bare``: no counter. ``counted``: a counter past its spike checks, the forward inside its
    own ``acting`` phase. ``neurobench``: NeuroBench's hooks, then its metric and
    ``reset_hooks`` (what its ``Benchmark.run`` does after every batch). Two copies take turns
    as ``bare`` and ``counted`` (see :meth:`swap`), because two copies of one actor can differ in
    speed by themselves (memory layout), by as much as the counter costs.
    """

    def __init__(self, actor: nn.Module, obs: torch.Tensor) -> None:
        from neurobench.metrics.workload import SynapticOperations
        from neurobench.models import TorchModel

        self.obs = obs
        self.bare_actor = copy.deepcopy(actor)
        self.neurobench_actor = copy.deepcopy(actor)
        self.counted_actor = actor
        self.counter = self._attach(actor)
        self.model = TorchModel(self.neurobench_actor)
        self.model.register_hooks()
        self.metric = SynapticOperations()

    def _attach(self, actor: nn.Module) -> OperationCounter:
        counter = OperationCounter(actor)
        for _ in range(SPIKE_CHECK_CALLS + 1):
            with counter.phase("acting"), torch.inference_mode():
                actor(self.obs)
        counter.take("acting")
        return counter

    def swap(self) -> None:
        """Move the counter from the counted copy to the bare one, past its spike checks again."""
        self.counter.remove()
        self.counted_actor, self.bare_actor = self.bare_actor, self.counted_actor
        self.counter = self._attach(self.counted_actor)

    def bare(self) -> None:
        with torch.inference_mode():
            self.bare_actor(self.obs)

    def counted(self) -> None:
        with self.counter.phase("acting"), torch.inference_mode():
            self.counted_actor(self.obs)

    def neurobench(self) -> None:
        with torch.inference_mode():
            preds = self.model(self.obs)
        self.metric(self.model, preds, (self.obs, None))
        self.model.reset_hooks()

    def close(self) -> None:
        self.counter.remove()
        self.model.cleanup_hooks()


def bench_forward(batch: int, forwards: int, block: int) -> dict[str, Any]:
    """Time bare, counted and NeuroBench forwards of the PopSAN actor, interleaved forward by forward.

    The order of the variants rotates at every step, so none always runs first. Halfway, the
    counted and bare copies swap roles. The counter's ``take`` runs once per ``block`` counted
    forwards and is timed apart.
    """
    torch.manual_seed(0)
    obs = torch.randn(batch, FORWARD_SPEC.obs_dim)
    variants = ForwardVariants(build_actor("popsan", FORWARD_SPEC), obs)
    runs = {"bare": variants.bare, "counted": variants.counted, "neurobench": variants.neurobench}
    for run in runs.values():
        run()

    cpu: list[dict[str, list[float]]] = [{name: [] for name in runs}, {name: [] for name in runs}]
    take_cpu = 0.0
    order = list(runs)
    for step in range(forwards):
        half = cpu[0] if step < forwards // 2 else cpu[1]
        if step == forwards // 2:
            variants.counter.take("acting")
            variants.swap()
        for name in order:
            start = time.process_time()
            runs[name]()
            half[name].append(time.process_time() - start)
        order = order[1:] + order[:1]
        if (step + 1) % block == 0 or step + 1 == forwards:
            start = time.process_time()
            counts = variants.counter.take("acting")
            take_cpu += time.process_time() - start

    agreement = compare_counts(counts, variants.metric)
    variants.close()
    return {"batch": batch, "forwards": forwards, "take_every": block, **added_costs(cpu, take_cpu / forwards),
            "counts_per_sample": agreement}


def added_costs(halves: list[dict[str, list[float]]], take_per_forward: float) -> dict[str, Any]:
    """Return the CPU time each method adds to a bare forward, from the forward-by-forward differences.

    The counter's figure is the mean of the two halves' medians, so the speed difference of the
    two copies cancels. Half the gap between the halves is that difference.
    """
    pooled = {name: halves[0][name] + halves[1][name] for name in halves[0]}
    figures: dict[str, Any] = {"cpu_s_per_forward_median": {name: statistics.median(v) for name, v in pooled.items()}}
    for name in ("counted", "neurobench"):
        per_half = [statistics.median(t - b for t, b in zip(half[name], half["bare"])) for half in halves]
        differences = [t - b for t, b in zip(pooled[name], pooled["bare"])]
        quartiles = statistics.quantiles(differences, n=4)
        figures[f"{name}_added_s"] = {"median": sum(per_half) / 2, "per_half_median": per_half,
                                      "quartiles": [quartiles[0], quartiles[2]]}
    counter_added = figures["counted_added_s"]["median"] + take_per_forward
    neurobench_added = figures["neurobench_added_s"]["median"]
    figures["take_s_per_forward"] = take_per_forward
    figures["counter_added_s_with_take"] = counter_added
    figures["counter_overhead_pct"] = 100.0 * counter_added / figures["cpu_s_per_forward_median"]["bare"]
    figures["neurobench_over_counter"] = neurobench_added / counter_added if counter_added > 0 else None
    return figures


def compare_counts(ours: OperationCounts, metric: Any) -> dict[str, float]:
    """Return both counters' per-sample ACs; raise when they differ (a failed count would time as fast)."""
    reference = metric.compute()
    ours_ac = ours.ac / ours.samples
    if abs(ours_ac - reference["Effective_ACs"]) > 1e-6 * max(1.0, ours_ac):
        raise RuntimeError(f"OperationCounter counts {ours_ac} ACs per sample, NeuroBench {reference['Effective_ACs']}")
    return {"counter_ac": ours_ac, "neurobench_ac": reference["Effective_ACs"],
            "counter_effective_mac": ours.effective_mac / ours.samples, "neurobench_effective_mac": reference["Effective_MACs"]}


# --------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (the only output format)")
    parser.add_argument("--steps", type=int, default=2500, help="environment steps per training run (default 2500)")
    parser.add_argument("--learning-starts", type=int, default=500, help="random steps before updates start (default 500)")
    parser.add_argument("--training-rounds", type=int, default=3, help="crossover pairs of training runs (default 3)")
    parser.add_argument("--turn-steps", type=int, default=10, help="environment steps a trainer runs before passing the turn (default 10)")
    parser.add_argument("--forwards", type=int, default=2000, help="timed forwards of each variant at batch 1; batch 256 runs a fifth (default 2000)")
    parser.add_argument("--take-every", type=int, default=500, help="counted forwards per take() (default 500)")
    parser.add_argument("--skip-training", action="store_true", help="run only the forward-pass benchmark")
    parser.add_argument("--inert-counters", action="store_true",
                        help="in the training pairs, install counters that count nothing (their wrappers and step hook alone)")
    parser.add_argument("--ablate", action="append", choices=ABLATIONS, default=[],
                        help="in the training pairs, drop this part of the counting work (repeatable; counts are then inexact)")
    args = parser.parse_args()
    if args.inert_counters and args.skip_training:
        parser.error("--inert-counters applies to the training pairs, which --skip-training skips. Drop one of them")
    if args.ablate and args.skip_training:
        parser.error("--ablate applies to the training pairs, which --skip-training skips. Drop one of them")
    if args.ablate and args.inert_counters:
        parser.error("--ablate drops parts of the counting work, and --inert-counters counts nothing at all. Use one of them")
    minimums = {"--learning-starts": (args.learning_starts, 0), "--training-rounds": (args.training_rounds, 1),
                "--turn-steps": (args.turn_steps, 1), "--forwards": (args.forwards, 2), "--take-every": (args.take_every, 1)}
    for option, (value, minimum) in minimums.items():
        if value < minimum:
            parser.error(f"{option} must be at least {minimum}, got {value}")
    if args.steps < args.learning_starts + 2:
        parser.error(f"--steps must exceed --learning-starts by at least 2 (two halves of updates), got {args.steps} and {args.learning_starts}")
    torch.set_num_threads(1)

    result: dict[str, Any] = {
        "tool": "tools/bench_energy.py",
        "torch": torch.__version__,
        "snntorch": snn.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_start": os.getloadavg()[0],
        "machine": f"{platform.machine()} {platform.system()} {platform.processor()}".strip(),
        "forward_batch_1": bench_forward(1, args.forwards, args.take_every),
        "forward_batch_256": bench_forward(256, max(1, args.forwards // 5), args.take_every),
    }
    if not args.skip_training:
        result["training"] = bench_training(args.steps, args.learning_starts, args.training_rounds, args.turn_steps,
                                            args.inert_counters, sorted(set(args.ablate)))
    result["load_average_1min_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
