"""Train K seeds of one configuration in one process, with their networks stacked and batched.

Each seed gets everything a single-seed run has: its own environment and evaluation environment,
replay buffer, observation normaliser, exploration-noise and target-noise generators, energy
ledger and run directory. :class:`neurorl.experiment.training.Trainer` builds them in the
single-seed order (``seed_everything(seed)``, environments, actor, TD3 agent, replay buffer,
energy ledger). Only the networks are shared work. :class:`neurorl.agents.batched.BatchedTD3`
stacks the K actors, critics and targets, so one forward pass, one backward pass and one Adam
step serve all seeds.

The loop runs the single-seed loop's steps for all seeds in lockstep: reset ended episodes → act
(one batched actor pass) → step each environment → add to each buffer → every ``update_every``
steps that many batched updates. Each seed's resilient check follows the last update of a block,
then the target update. Every ``eval_every`` steps each seed runs its deterministic evaluation
episodes (one batched actor pass per step for the seeds still running) and writes a metrics row.

Seeds stay independent: seed k's slice of every stacked computation reads only seed k's values,
each seed draws random numbers only from its own generators, and every batched call has the same
shapes whatever the other seeds do, so changing one seed's value never changes another seed's
results. Wall time (``timing_s``, ``sps``, ``wall_time_s``) is the process's, shared by all seeds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from neurorl.agents.batched import BatchedTD3
from neurorl.agents.entropy import clipped_gaussian_entropy
from neurorl.config import TrainConfig, validate
from neurorl.energy import OperationCounts
from neurorl.experiment.evaluation import EvaluationResult
from neurorl.experiment.logging import ScalarLogger
from neurorl.experiment.progress import TrainingProgress
from neurorl.experiment.rundir import to_toml, write_csv_atomic, write_json_atomic, write_text_atomic
from neurorl.experiment.training import CHECK_COLUMNS, METRIC_COLUMNS, LEARNING_BOOK_EVERY, TIMING_PARTS, Trainer
from neurorl.snn.stacked import StackedOperationCounter

MULTISEED_ACTORS = ("popsan", "ann")
MULTISEED_ALGOS = ("td3",)
MULTISEED_CRITICS = ("mlp",)
EVAL_SEED_OFFSET = 10_000


def check_multiseed_request(config: TrainConfig, seeds: Sequence[int], run_dirs: Sequence[Path]) -> None:
    """Raise before any work if ``seeds``, ``run_dirs`` or ``config`` cannot be trained together.

    :raises ValueError: listing every problem. Problems are an empty or repeated seed list, a
        seed outside the integers [0, 2**32), run directories that do not match the seeds one to
        one, an actor other than popsan or ann, an algorithm other than td3, a critic other than
        mlp, ``compile``, or an invalid configuration.
    :raises NotImplementedError: for popsan with a Bernoulli encoder.
    """
    problems = _seed_problems(seeds) + _run_dir_problems(seeds, run_dirs)
    if config.actor not in MULTISEED_ACTORS:
        problems.append(
            f"actor={config.actor!r} is not supported with several seeds per process; "
            f"use one of {', '.join(MULTISEED_ACTORS)} or train one seed per process"
        )
    if config.critic not in MULTISEED_CRITICS:
        problems.append(f"critic={config.critic!r} is not supported with several seeds per process; use {', '.join(MULTISEED_CRITICS)}")
    if config.algo not in MULTISEED_ALGOS:
        problems.append(f"algo={config.algo!r} is not supported with several seeds per process; use {', '.join(MULTISEED_ALGOS)}")
    if config.compile:
        problems.append("compile=True is not supported with several seeds per process (the stacked update is not compiled); "
                        "drop --compile or train one seed per process")
    if problems:
        raise ValueError("cannot train these seeds in one process:\n  " + "\n  ".join(problems))

    validate(config)
    if config.actor == "popsan" and config.encoder != "deterministic":
        raise NotImplementedError(
            f"encoder={config.encoder!r} is not supported with several seeds per process: Bernoulli spikes "
            "draw from torch's global generator, which the seeds would share; use --encoder deterministic "
            "or train one seed per process"
        )


def _seed_problems(seeds: Sequence[int]) -> list[str]:
    if not isinstance(seeds, (list, tuple)) or not seeds:
        return [f"seeds={seeds!r}: give a non-empty list of seeds, for example [0, 1, 2, 3, 4]"]
    problems = []
    for seed in seeds:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < 2**32:
            problems.append(f"seed {seed!r} must be an integer in [0, 2**32)")
    duplicates = sorted({int(seed) for seed in seeds if isinstance(seed, (int, np.integer)) and list(seeds).count(seed) > 1})
    if duplicates:
        problems.append(f"seeds={list(seeds)!r} repeat {duplicates}; each seed may appear once")
    return problems


def _run_dir_problems(seeds: Sequence[int], run_dirs: Sequence[Path]) -> list[str]:
    if not isinstance(run_dirs, (list, tuple)):
        return [f"run_dirs={run_dirs!r}: give a list with one run directory per seed"]
    problems = []
    if isinstance(seeds, (list, tuple)) and len(run_dirs) != len(seeds):
        problems.append(f"{len(run_dirs)} run directories for {len(seeds)} seeds; give one run directory per seed")
    resolved = [Path(path).resolve() for path in run_dirs]
    repeated = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if repeated:
        problems.append(f"run directories repeat {repeated}; each seed needs its own directory")
    return problems


class MultiSeedTrainer:
    """Train K seeds of ``config`` in lockstep on stacked networks, one run directory per seed.

    :param config: the run configuration; its ``seed`` is replaced by each of ``seeds``.
    :param seeds: distinct seeds.
    :param run_dirs: one run directory per seed, in the order of ``seeds``.
    :param show_progress: show one rich progress bar for the whole process.
    """

    def __init__(self, config: TrainConfig, seeds: Sequence[int], run_dirs: Sequence[Path], *, show_progress: bool = True) -> None:
        check_multiseed_request(config, seeds, run_dirs)
        self.config = config
        self.seeds = [int(seed) for seed in seeds]
        self.show_progress = show_progress

        # Each Trainer builds its seed's environments, networks, buffer and ledger exactly as a
        # single-seed run does. Its own counters are removed because its networks never run here.
        self.runs: list[Trainer] = []
        for seed, run_dir in zip(self.seeds, run_dirs):
            seed_config = dataclasses.replace(config, seed=seed, out=str(run_dir))
            trainer = Trainer(seed_config, Path(run_dir), show_progress=False)
            trainer.counter.remove()
            trainer.target_counter.remove()
            self.runs.append(trainer)
        self.device = self.runs[0].device

        self.agent = BatchedTD3([run.agent for run in self.runs])
        networks = self.agent.networks()
        self.counter = StackedOperationCounter(*[net for name, net in networks.items() if not name.endswith("_target")])
        self.target_counter = StackedOperationCounter(*[net for name, net in networks.items() if name.endswith("_target")])

        self.step = 0
        self.timing = {part: 0.0 for part in TIMING_PARTS}
        self.observations: list[np.ndarray | None] = [None] * len(self.runs)

    # ------------------------------------------------------------------------------- running

    def run(self) -> list[dict[str, Any]]:
        """Train every seed for ``config.steps`` environment steps; return one summary per seed."""
        for run in self.runs:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(run.run_dir / "config.toml", to_toml(run.config.to_dict()))
            run.scalars = ScalarLogger(run.run_dir, enabled=run.config.tensorboard, purge_step=1)

        started = time.perf_counter()
        with TrainingProgress(self.config.steps, enabled=self.show_progress) as progress:
            self._loop(progress, started)
        for run in self.runs:
            run.scalars.close()
        elapsed = time.perf_counter() - started

        self.agent.copy_to_agents()
        pending = self.counter.take("acting")
        summaries = []
        for index, run in enumerate(self.runs):
            run.ledger.book("acting", pending[index])
            run.state.elapsed_s = elapsed
            run.state.timing = dict(self.timing)
            summary = run._summary()
            summary["multiseed"] = {"seeds": list(self.seeds), "index": index, "timing": "shared by all seeds of the process"}
            run._save_actor()
            write_json_atomic(run.run_dir / "summary.json", summary)
            summaries.append(summary)
        return summaries

    def _loop(self, progress: TrainingProgress, started: float) -> None:
        cfg = self.config
        mark = time.perf_counter()

        while self.step < cfg.steps:
            self.step += 1
            step = self.step
            self._reset_ended_episodes(step)

            actions, mark = self._choose_actions(step, mark)
            transitions = self._step_environments(actions)
            mark = self._time("env", mark)

            self._store(actions, transitions)
            mark = self._time("replay", mark)

            if step > cfg.learning_starts and step % cfg.update_every == 0:
                mark = self._update_block(step, mark)

            if step % LEARNING_BOOK_EVERY == 0:
                self._book_learning()
                mark = time.perf_counter()

            if step % cfg.eval_every == 0 or step == cfg.steps:
                self._evaluate_and_log(step, started)
                mark = time.perf_counter()

            # NOTE: multi-seed runs write no checkpoints and cannot resume. One would go here, with
            # the stacked optimizers, but seeds' episodes rarely end at the same step, as the
            # single-seed checkpoint (taken at an episode end) requires.

            if step % 100 == 0 or step == cfg.steps:
                progress.update(step, self._progress_fields(started))
                mark = self._time("logging", mark)

    def _time(self, part: str, start: float) -> float:
        now = time.perf_counter()
        self.timing[part] += now - start
        return now

    def _reset_ended_episodes(self, step: int) -> None:
        for index, run in enumerate(self.runs):
            run.state.step = step
            if run.state.needs_reset:
                self.observations[index] = np.asarray(run.env.reset()[0], dtype=np.float32)
                run.state.needs_reset = False

    def _choose_actions(self, step: int, mark: float) -> tuple[np.ndarray, float]:
        if step <= self.config.learning_starts:
            actions = [
                ((run.env.action_space.sample() - run.action_bias) / run.action_scale).astype(np.float32)
                for run in self.runs
            ]
            return np.stack(actions), mark
        with self.counter.phase("acting"):
            actions = self.agent.act(np.stack(self.observations), explore=True)
        return actions, self._time("acting", mark)

    def _step_environments(self, actions: np.ndarray) -> list[tuple[np.ndarray, float, bool, bool]]:
        transitions = []
        for run, action in zip(self.runs, actions):
            next_obs, reward, terminated, truncated, _ = run.env.step(action * run.action_scale + run.action_bias)
            transitions.append((np.asarray(next_obs, dtype=np.float32), float(reward), bool(terminated), bool(truncated)))
        return transitions

    def _store(self, actions: np.ndarray, transitions: list[tuple[np.ndarray, float, bool, bool]]) -> None:
        for index, (run, action, transition) in enumerate(zip(self.runs, actions, transitions)):
            next_obs, reward, terminated, truncated = transition
            obs = self.observations[index]
            run.replay.add(obs, action, reward, next_obs, terminated, truncated)
            run.agent.normalizer.update(obs)
            self.observations[index] = next_obs
            run.state.needs_reset = terminated or truncated

    def _update_block(self, step: int, mark: float) -> float:
        cfg = self.config
        for index in range(cfg.update_every):
            batches = [run.replay.sample(cfg.batch_size) for run in self.runs]
            fields = ("obs", "actions", "rewards", "next_obs", "terminated", "weights")
            tensors = [torch.from_numpy(np.stack([getattr(batch, name) for batch in batches])).to(self.device) for name in fields]
            mark = self._time("replay", mark)

            with self.counter.phase("learning"), self.target_counter.phase("learning"):
                info = self.agent.update(*tensors)
            for run, batch, td_errors in zip(self.runs, batches, info.td_errors):
                run.replay.update_priorities(batch.indices, td_errors)
            mark = self._time("update", mark)

            if index == cfg.update_every - 1:
                mark = self._replay_checks(step, mark)
            if info.actor_updated:
                self.agent.update_targets()

        return mark

    def _book_learning(self) -> None:
        """Move every seed's learning-phase counts into its ledger, on the single-seed trainer's schedule."""
        mark = time.perf_counter()
        online = self.counter.take("learning")
        targets = self.target_counter.take("learning")
        for run, online_counts, target_counts in zip(self.runs, online, targets):
            run.ledger.book("learning", online_counts)
            run.ledger.book_backward_estimate(online_counts)
            run.ledger.book("learning", target_counts)
        self._time("energy", mark)

    def _replay_checks(self, step: int, mark: float) -> float:
        checked = False
        for index, run in enumerate(self.runs):
            record = run.replay.after_update(self._check_policy(index), step)
            if record is None:
                continue
            checked = True
            run.ledger.book("replay", self.counter.take_seed("replay", index))
            run.ledger.book_kdtree(record.check_batch, record.point_dim, record.check_batch)
            run.state.last_dis = record.dis
            if record.removed > 0:
                run.state.shrink_events += 1
            run.state.checks.append(record.as_row())
        return self._time("replay", mark) if checked else mark

    def _check_policy(self, index: int) -> Callable[[np.ndarray], np.ndarray]:
        def policy(states: np.ndarray) -> np.ndarray:
            with self.counter.phase("replay"):
                return self.agent.predict_seed(index, states)

        return policy

    # ---------------------------------------------------------------------------- evaluation

    def _evaluate_and_log(self, step: int, started: float) -> None:
        self._book_learning()
        mark = time.perf_counter()
        pending = self.counter.take("acting")
        for run, counts in zip(self.runs, pending):
            run.ledger.book("acting", counts)
        results = self._evaluate_all()
        for run, result in zip(self.runs, results):
            for counts in result.counts:
                run.ledger.book("acting", counts)
            run.last_evaluation = result
        mark = self._time("evaluation", mark)

        elapsed = time.perf_counter() - started
        for index, (run, result) in enumerate(zip(self.runs, results)):
            row = _metrics_row(run, result, step, elapsed, self._policy_entropy(index, result.states))
            run.state.metrics.append(row)
            write_csv_atomic(run.run_dir / "metrics.csv", run.state.metrics, METRIC_COLUMNS)
            write_csv_atomic(run.run_dir / "replay_checks.csv", run.state.checks, CHECK_COLUMNS)
            run.scalars.log(step, row)
        self._time("logging", mark)

    def _evaluate_all(self) -> list[EvaluationResult]:
        """Run every seed's deterministic evaluation episodes, as :func:`neurorl.experiment.evaluation.evaluate` does.

        Episode i of seed s is reset with ``s + 10_000 + i``. All seeds step together: one
        batched actor pass per step, in which seeds whose episodes have all ended get zero
        observations and book no operations, so the batch shape never depends on other seeds.
        """
        episodes = [_EvalEpisodes(run, self.config.eval_episodes) for run in self.runs]
        placeholder = np.zeros_like(episodes[0].obs)
        active = list(range(len(self.runs)))

        while active:
            batch = np.stack([episodes[i].obs if i in active else placeholder for i in range(len(self.runs))])
            with self.counter.phase("acting", seeds=active):
                actions = self.agent.act(batch, explore=False)

            for index in list(active):
                ended = episodes[index].step(actions[index])
                if ended and episodes[index].finish(self.counter.take_seed("acting", index)):
                    active.remove(index)
        return [episode.result() for episode in episodes]

    def _policy_entropy(self, index: int, states: np.ndarray) -> float:
        """Entropy (nats) of seed ``index``'s exploration distribution over evaluation states, as the
        single-seed trainer reports it for TD3; these actor passes are not energy-counted."""
        return clipped_gaussian_entropy(self.agent.predict_seed(index, states), self.config.exploration_noise)

    def _progress_fields(self, started: float) -> dict[str, Any]:
        returns = [run.last_evaluation.mean_return for run in self.runs if run.last_evaluation is not None]
        dis = [run.state.last_dis for run in self.runs if np.isfinite(run.state.last_dis)]
        return {
            "eval_return": float(np.mean(returns)) if returns else float("nan"),
            "buffer_size": int(np.mean([len(run.replay) for run in self.runs])),
            "sps": self.step / max(time.perf_counter() - started, 1e-9),
            "dis": float(np.mean(dis)) if dis else float("nan"),
        }


class _EvalEpisodes:
    """One seed's evaluation episodes in progress: the episode, its observation and the results so far."""

    def __init__(self, run: Trainer, episodes: int) -> None:
        self.run = run
        self.episodes = episodes
        self.episode = 0
        self.total = 0.0
        self.length = 0
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.counts: list[OperationCounts] = []
        self.energies_j: list[float] = []
        self.states: list[np.ndarray] = []
        self.obs = self._reset()

    def _reset(self) -> np.ndarray:
        obs, _ = self.run.eval_env.reset(seed=self.run.config.seed + EVAL_SEED_OFFSET + self.episode)
        return np.asarray(obs, dtype=np.float32)

    def step(self, action: np.ndarray) -> bool:
        """Apply ``action`` in [−1, 1] to the current observation; return whether the episode ended."""
        run = self.run
        self.states.append(self.obs)
        obs, reward, terminated, truncated, _ = run.eval_env.step(action * run.action_scale + run.action_bias)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.total += float(reward)
        self.length += 1
        return bool(terminated or truncated)

    def finish(self, counts: OperationCounts) -> bool:
        """Record the ended episode with its actor ``counts``; return whether this seed is done."""
        self.returns.append(self.total)
        self.lengths.append(self.length)
        self.counts.append(counts)
        self.energies_j.append(self.run.energy_model.energy_j(counts))
        self.episode += 1
        self.total, self.length = 0.0, 0
        if self.episode >= self.episodes:
            return True
        self.obs = self._reset()
        return False

    def result(self) -> EvaluationResult:
        return EvaluationResult(self.returns, self.lengths, self.counts, self.energies_j, np.stack(self.states))


def _metrics_row(run: Trainer, result: EvaluationResult, step: int, elapsed: float, policy_entropy: float) -> dict[str, Any]:
    """Return one seed's metrics row with the single-seed trainer's columns (``METRIC_COLUMNS``)."""
    energy = run.ledger.energy_j()
    return {
        "step": step,
        "eval_return": result.mean_return,
        "eval_return_std": result.std_return,
        "eval_episode_length": float(np.mean(result.lengths)),
        "buffer_size": len(run.replay),
        "dis": run.state.last_dis,
        "shrink_events": run.state.shrink_events,
        "sps": step / elapsed,
        "energy_acting_j": energy["acting"],
        "energy_learning_j": energy["learning"],
        "energy_replay_j": energy["replay"],
        "energy_per_action_j": result.energy_per_action_j,
        "return_per_joule": result.return_per_joule,
        "policy_entropy": policy_entropy,
        "wall_time_s": elapsed,
    }


def train_seeds(config: TrainConfig, seeds: list[int], run_dirs: list[Path], *, show_progress: bool = True) -> list[dict[str, Any]]:
    """Train every seed of ``seeds`` in one process on stacked networks; return one summary per seed.

    Each seed's run directory gets the files of a single-seed run (config.toml, metrics.csv,
    replay_checks.csv, summary.json, actor.pt, and tensorboard/ when enabled) except the
    checkpoint, so ``neurorl report`` and ``neurorl energy`` read them as usual.

    :raises ValueError: for an empty or repeated seed list, mismatched run directories, or an
        actor or algorithm without a stacked implementation (see :func:`check_multiseed_request`).
    :raises NotImplementedError: for popsan with a Bernoulli encoder.
    """
    if isinstance(run_dirs, (list, tuple)):
        run_dirs = [Path(path) for path in run_dirs]
    return MultiSeedTrainer(config, seeds, run_dirs, show_progress=show_progress).run()
