"""The training loop: environment steps, replay, TD3 updates, resilient checks and energy.

One environment step, in order: reset if the last episode ended → act (uniform random before
``learning_starts``, then the actor plus exploration noise) → env.step → replay.add → every
``update_every`` steps that many updates (each: critic update, delayed actor update, then on the
last update of the block the replay check, then the target update) → every ``eval_every`` steps an
evaluation and a metrics row → at the first episode end after every ``checkpoint_every`` steps, a
checkpoint. Every forward pass runs inside an energy phase: ``acting`` (choosing actions and
evaluation), ``learning`` (updates), ``replay`` (the resilient check's actor pass; its KD-tree is
booked from the check record).

Checkpoints are taken at episode ends, so a resumed run only has to restore generators, not
simulator state: the next step resets the environment from the restored generator exactly as the
uninterrupted run does.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import neurorl.envs  # noqa: F401  (registers the neurorl/ navigation tasks)
from neurorl import runtime
from neurorl.agents.entropy import clipped_gaussian_entropy
from neurorl.agents.sac import SACAgent, SACConfig
from neurorl.agents.td3 import TD3Agent, TD3Config
from neurorl.config import TrainConfig
from neurorl.energy import EnergyLedger, OperationCounter, OperationCounts, count_operations, get_energy_model, load_energy_model
from neurorl.experiment import checkpoint as ckpt
from neurorl.experiment.evaluation import EvaluationResult, evaluate
from neurorl.experiment.logging import ScalarLogger
from neurorl.experiment.progress import TrainingProgress
from neurorl.experiment.rundir import save_torch_atomic, to_toml, write_csv_atomic, write_json_atomic, write_text_atomic
from neurorl.replay import make_replay
from neurorl.snn import linear
from neurorl.snn.actors import SPIKING_ACTORS, ActorSpec, MLPActor, build_actor

METRIC_COLUMNS = [
    "step", "eval_return", "eval_return_std", "eval_episode_length", "buffer_size", "dis", "shrink_events",
    "sps", "energy_acting_j", "energy_learning_j", "energy_replay_j", "energy_per_action_j",
    "return_per_joule", "policy_entropy", "wall_time_s",
]
CHECK_COLUMNS = ["step", "dis", "direct_dis", "threshold", "removed", "size_before", "size_after", "check_batch", "point_dim", "measure"]
PHASES = ("acting", "learning", "replay")
TIMING_PARTS = ("env", "acting", "update", "replay", "energy", "evaluation", "logging", "checkpoint")
# Steps between moves of the learning-phase operation counts into the energy ledger.
LEARNING_BOOK_EVERY = 100


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_env(env_id: str, seed: int) -> gym.Env:
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


@dataclass
class LoopState:
    """Everything about the loop's progress that a checkpoint must carry."""

    step: int = 0
    needs_reset: bool = True
    shrink_events: int = 0
    last_dis: float = float("nan")
    metrics: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=lambda: {part: 0.0 for part in TIMING_PARTS})
    elapsed_s: float = 0.0
    next_checkpoint: int = 0


def build_agent(config: TrainConfig, actor: torch.nn.Module, obs_dim: int, act_dim: int, device: torch.device):
    """Build the TD3 or SAC agent of ``config`` around ``actor``."""
    critic = {"critic": config.critic, "critic_T": config.critic_T, "td_loss": config.td_loss, "td_clip": config.td_clip}
    common = {"gamma": config.gamma, "tau": config.tau, "actor_lr": config.actor_lr, "critic_lr": config.critic_lr,
              "critic_hidden": tuple(config.hidden), **critic}
    if config.algo == "sac":
        sac = SACConfig(**common, alpha_lr=config.alpha_lr, initial_alpha=config.initial_alpha, autotune=config.autotune)
        return SACAgent(actor, obs_dim, act_dim, sac, seed=config.seed, device=device)
    td3 = TD3Config(
        **common, exploration_noise=config.exploration_noise, target_noise=config.target_noise,
        noise_clip=config.noise_clip, policy_delay=config.policy_delay,
    )
    return TD3Agent(actor, obs_dim, act_dim, td3, seed=config.seed, device=device, compile_losses=config.compile)


class Trainer:
    """Wire a config into environments, agent, replay, energy counter and run directory."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, show_progress: bool = True) -> None:
        self.config = config
        self.run_dir = run_dir
        self.show_progress = show_progress

        runtime.configure(config.threads, config.retain_memory, config.linear_backend)
        seed_everything(config.seed)
        self.device = resolve_device(config.device)

        self.env = make_env(config.env, config.seed)
        self.eval_env = make_env(config.env, config.seed + 10_000)
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.act_dim = int(np.prod(self.env.action_space.shape))
        low = self.env.action_space.low.astype(np.float32)
        high = self.env.action_space.high.astype(np.float32)
        self.action_scale = (high - low) / 2.0
        self.action_bias = (high + low) / 2.0

        self.spec = ActorSpec(
            obs_dim=self.obs_dim, act_dim=self.act_dim, hidden=tuple(config.hidden), T=config.T,
            neuron=config.neuron, encoder=config.encoder, pop_size=config.pop_size, out_pop_size=config.pop_size,
            surrogate=config.surrogate, gaussian=config.algo == "sac", readout=config.readout, branches=config.branches,
        )
        self.agent = build_agent(config, build_actor(config.actor, self.spec), self.obs_dim, self.act_dim, self.device)
        self.replay = make_replay(config.replay, self.obs_dim, self.act_dim, seed=config.seed, **config.replay_options())

        self.energy_model = load_energy_model(config.energy_model) if config.energy_model.endswith(".toml") else get_energy_model(config.energy_model)
        self.ledger = EnergyLedger(self.energy_model)
        # Online and target networks are counted apart because only online passes have a backward pass.
        networks = self.agent.networks()
        self.counter = OperationCounter(*[net for name, net in networks.items() if not name.endswith("_target")])
        self.target_counter = OperationCounter(*[net for name, net in networks.items() if name.endswith("_target")])
        self.ann_energy_per_action_j = self._ann_energy_per_action()

        self.state = LoopState(next_checkpoint=config.checkpoint_every)
        self.last_evaluation: EvaluationResult | None = None
        self.obs: np.ndarray | None = None

    def _ann_energy_per_action(self) -> float:
        """Energy of one action of the ANN actor with the same hidden sizes, under the same model."""
        ann = MLPActor(self.spec)
        counts = count_operations(ann, torch.zeros(1, self.obs_dim))
        return self.energy_model.energy_j(counts)

    # ------------------------------------------------------------------------------- running

    def run(self) -> dict[str, Any]:
        """Train until ``config.steps`` environment steps and return the summary."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_dir / "config.toml", to_toml(self.config.to_dict()))
        started = time.perf_counter() - self.state.elapsed_s
        self.scalars = ScalarLogger(self.run_dir, enabled=self.config.tensorboard, purge_step=self.state.step + 1)

        with TrainingProgress(self.config.steps, enabled=self.show_progress) as progress:
            progress.update(self.state.step, self._progress_fields(started))
            self._loop(progress, started)
        self.scalars.close()

        self.state.elapsed_s = time.perf_counter() - started
        self._save_checkpoint()
        summary = self._summary()
        self._save_actor()
        write_json_atomic(self.run_dir / "summary.json", summary)
        return summary

    def _loop(self, progress: TrainingProgress, started: float) -> None:
        cfg, state = self.config, self.state
        mark = time.perf_counter()

        while state.step < cfg.steps:
            state.step += 1
            step = state.step
            if state.needs_reset:
                self.obs = np.asarray(self.env.reset()[0], dtype=np.float32)
                state.needs_reset = False

            action, mark = self._choose_action(self.obs, step, mark)
            next_obs, reward, terminated, truncated, _ = self.env.step(action * self.action_scale + self.action_bias)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            mark = self._time("env", mark)

            self.replay.add(self.obs, action, float(reward), next_obs, bool(terminated), bool(truncated))
            self.agent.normalizer.update(self.obs)
            self.obs = next_obs
            state.needs_reset = bool(terminated or truncated)
            mark = self._time("replay", mark)

            if step > cfg.learning_starts and step % cfg.update_every == 0:
                mark = self._update_block(step, mark)

            if step % LEARNING_BOOK_EVERY == 0:
                self._book_learning()
                mark = time.perf_counter()

            if step % cfg.eval_every == 0 or step == cfg.steps:
                self._evaluate_and_log(step, started)
                mark = time.perf_counter()

            if state.needs_reset and step >= state.next_checkpoint and step < cfg.steps:
                state.elapsed_s = time.perf_counter() - started
                self._save_checkpoint()
                state.next_checkpoint = step + cfg.checkpoint_every
                mark = self._time("checkpoint", mark)

            if step % 100 == 0 or step == cfg.steps:
                progress.update(step, self._progress_fields(started))
                mark = self._time("logging", mark)

    def _time(self, part: str, start: float) -> float:
        now = time.perf_counter()
        self.state.timing[part] += now - start
        return now

    def _choose_action(self, obs: np.ndarray, step: int, mark: float) -> tuple[np.ndarray, float]:
        if step <= self.config.learning_starts:
            action = self.env.action_space.sample()
            action = ((action - self.action_bias) / self.action_scale).astype(np.float32)
            return action, mark
        with self.counter.phase("acting"):
            action = self.agent.act(obs, explore=True)
        return action, self._time("acting", mark)

    def _update_block(self, step: int, mark: float) -> float:
        cfg = self.config
        for index in range(cfg.update_every):
            batch = self.replay.sample(cfg.batch_size)
            tensors = [
                torch.from_numpy(array).to(self.device)
                for array in (batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminated, batch.weights)
            ]
            mark = self._time("replay", mark)

            with self.counter.phase("learning"), self.target_counter.phase("learning"):
                info = self.agent.update(*tensors)
            self.replay.update_priorities(batch.indices, info.td_errors)
            mark = self._time("update", mark)

            if index == cfg.update_every - 1:
                mark = self._replay_check(step, mark)
            if info.actor_updated:
                self.agent.update_targets()

        return mark

    def _book_learning(self) -> None:
        """Move the learning-phase counts of the updates since the last call into the ledger.

        Called every ``LEARNING_BOOK_EVERY`` steps and before every evaluation, checkpoint and
        summary. Taking after every update spent about a third of the counter's time in a
        profiled PopSAN run, and the booked sums are the same.
        """
        online = self.counter.take("learning")
        self.ledger.book("learning", online)
        self.ledger.book_backward_estimate(online)
        self.ledger.book("learning", self.target_counter.take("learning"))

    def _collect_counting_time(self) -> None:
        """Move the counters' own timing (wrappers, hooks and takes) into ``timing_s.energy``."""
        for counter in (self.counter, self.target_counter):
            self.state.timing["energy"] += getattr(counter, "seconds", 0.0)
            counter.seconds = 0.0

    def _replay_check(self, step: int, mark: float) -> float:
        def policy(states: np.ndarray) -> np.ndarray:
            with self.counter.phase("replay"):
                return self.agent.predict(states)

        record = self.replay.after_update(policy, step)
        if record is None:
            return mark
        self.ledger.book("replay", self.counter.take("replay"))
        self.ledger.book_kdtree(record.check_batch, record.point_dim, record.check_batch)
        self.state.last_dis = record.dis
        if record.removed > 0:
            self.state.shrink_events += 1
        self.state.checks.append(record.as_row())
        return self._time("replay", mark)

    # ---------------------------------------------------------------------------- evaluation

    def _evaluate_and_log(self, step: int, started: float) -> None:
        self._book_learning()
        mark = time.perf_counter()
        self.ledger.book("acting", self.counter.take("acting"))
        result = evaluate(
            lambda obs: self.agent.act(obs, explore=False),
            self.eval_env, self.action_scale, self.action_bias, self.config.eval_episodes,
            self.counter, self.energy_model, seed=self.config.seed + 10_000,
        )
        for counts in result.counts:
            self.ledger.book("acting", counts)
        self.last_evaluation = result
        mark = self._time("evaluation", mark)

        energy = self.ledger.energy_j()
        elapsed = time.perf_counter() - started
        row = {
            "step": step,
            "eval_return": result.mean_return,
            "eval_return_std": result.std_return,
            "eval_episode_length": float(np.mean(result.lengths)),
            "buffer_size": len(self.replay),
            "dis": self.state.last_dis,
            "shrink_events": self.state.shrink_events,
            "sps": step / elapsed,
            "energy_acting_j": energy["acting"],
            "energy_learning_j": energy["learning"],
            "energy_replay_j": energy["replay"],
            "energy_per_action_j": result.energy_per_action_j,
            "return_per_joule": result.return_per_joule,
            "policy_entropy": self._policy_entropy(result.states),
            "wall_time_s": elapsed,
        }
        self.state.metrics.append(row)
        write_csv_atomic(self.run_dir / "metrics.csv", self.state.metrics, METRIC_COLUMNS)
        write_csv_atomic(self.run_dir / "replay_checks.csv", self.state.checks, CHECK_COLUMNS)
        self.scalars.log(step, row)
        self._time("logging", mark)

    def _policy_entropy(self, states: np.ndarray) -> float:
        """Entropy (nats) of the behaviour policy over evaluation states; passes are not energy-counted.

        SAC: −mean log π of sampled actions. TD3: the clipped Gaussian exploration distribution
        around the deterministic action, quantised to bins of 0.01 (it has point masses at ±1).
        """
        if isinstance(self.agent, SACAgent):
            return self.agent.policy_entropy(states)
        return clipped_gaussian_entropy(self.agent.predict(states), self.config.exploration_noise)

    def _progress_fields(self, started: float) -> dict[str, Any]:
        result = self.last_evaluation
        return {
            "eval_return": result.mean_return if result else float("nan"),
            "buffer_size": len(self.replay),
            "sps": self.state.step / max(time.perf_counter() - started, 1e-9),
            "dis": self.state.last_dis,
        }

    # ------------------------------------------------------------------------------- results

    def _summary(self) -> dict[str, Any]:
        result = self.last_evaluation
        assert result is not None, "the loop always evaluates at its last step"
        cfg, state = self.config, self.state
        energy = self.ledger.energy_j()
        per_action = result.energy_per_action_j
        actions = max(1, sum(result.lengths))
        window_start = cfg.steps - cfg.final_window
        window_returns = [row["eval_return"] for row in state.metrics if row["step"] > window_start]
        return {
            "algo": cfg.algo,
            "policy_entropy": state.metrics[-1]["policy_entropy"],
            "eval_return": result.mean_return,
            "eval_return_std": result.std_return,
            "eval_return_max": float(np.max([row["eval_return"] for row in state.metrics])),
            "eval_return_final_window": float(np.mean(window_returns)),
            "final_window_steps": cfg.final_window,
            "energy_per_action_j": per_action,
            "ann_energy_per_action_j": self.ann_energy_per_action_j,
            "snn_ann_energy_ratio": per_action / self.ann_energy_per_action_j if self.ann_energy_per_action_j else float("nan"),
            "return_per_joule": result.return_per_joule,
            "energy_j": {phase: energy[phase] for phase in PHASES} | {"total": energy["total"]},
            "ac_per_action": sum(c.ac for c in result.counts) / actions,
            "mac_per_action": sum(c.mac for c in result.counts) / actions,
            "buffer_size": len(self.replay),
            "shrink_events": state.shrink_events,
            "replay_checks": len(state.checks),
            "steps": cfg.steps,
            "sps": cfg.steps / state.elapsed_s,
            "wall_time_s": state.elapsed_s,
            "timing_s": self._timing(),
            "linear_backend": linear.current_backend(),
            "energy_model": self.energy_model.name,
            "energy_ledger": self.ledger.summary(),
            "actor": cfg.actor,
            "spiking": cfg.actor in SPIKING_ACTORS,
            "env": cfg.env,
            "T": cfg.T,
            "replay": cfg.replay,
            "seed": cfg.seed,
        }

    def _timing(self) -> dict[str, float]:
        """Return wall seconds per part; ``update`` splits into critic and actor updates.

        ``energy`` is the operation counters' own time, which also lies inside ``acting``,
        ``update`` and ``evaluation`` because the counting runs within those forward passes.
        """
        self._collect_counting_time()
        timing = dict(self.state.timing)
        timing.update(self.agent.seconds)
        return timing

    def _save_actor(self) -> None:
        normalizer = self.agent.normalizer
        save_torch_atomic(self.run_dir / "actor.pt", {
            "actor": self.config.actor,
            "spec": {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self.spec).items()},
            "state_dict": self.agent.actor.state_dict(),
            "normalizer_mean": torch.as_tensor(normalizer.mean),
            "normalizer_var": torch.as_tensor(normalizer.var),
            "normalizer_count": float(normalizer.count),
            "action_scale": torch.as_tensor(self.action_scale),
            "action_bias": torch.as_tensor(self.action_bias),
            "env": self.config.env,
            "energy_model": self.energy_model.name,
        })

    # --------------------------------------------------------------------------- checkpoints

    def _save_checkpoint(self) -> None:
        # Operations counted since the last evaluation are booked now, so the ledger in the
        # checkpoint is complete; interrupted and uninterrupted runs book at the same steps.
        self._book_learning()
        self.ledger.book("acting", self.counter.take("acting"))
        self._collect_counting_time()
        ckpt.save_checkpoint(self.run_dir, {
            "loop": asdict(self.state),
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "ledger": self.ledger.state_dict(),
            "rng": ckpt.global_rng_state(),
            "env_rng": ckpt.env_rng_state(self.env),
            "last_evaluation": _evaluation_state(self.last_evaluation),
            "agent_seconds": dict(self.agent.seconds),
        })

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by this configuration."""
        self.state = LoopState(**state["loop"])
        for part in TIMING_PARTS:
            self.state.timing.setdefault(part, 0.0)
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.ledger.load_state_dict(state["ledger"])
        ckpt.restore_global_rng_state(state["rng"])
        ckpt.restore_env_rng_state(self.env, state["env_rng"])
        self.last_evaluation = _evaluation_from_state(state["last_evaluation"])
        self.agent.seconds = dict(state["agent_seconds"])
        write_csv_atomic(self.run_dir / "metrics.csv", self.state.metrics, METRIC_COLUMNS)
        write_csv_atomic(self.run_dir / "replay_checks.csv", self.state.checks, CHECK_COLUMNS)


def _evaluation_state(result: EvaluationResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"returns": result.returns, "lengths": result.lengths, "energies_j": result.energies_j,
            "counts": [counts.as_dict() for counts in result.counts], "states": result.states}


def _evaluation_from_state(state: dict[str, Any] | None) -> EvaluationResult | None:
    if state is None:
        return None
    counts = [OperationCounts.from_dict(values) for values in state["counts"]]
    return EvaluationResult(list(state["returns"]), list(state["lengths"]), counts, list(state["energies_j"]), state["states"])


def train(config: TrainConfig, run_dir: str | Path, *, show_progress: bool = True) -> dict[str, Any]:
    """Train one agent as configured and write its run directory; return the summary."""
    return Trainer(config, Path(run_dir), show_progress=show_progress).run()


def resume(config: TrainConfig, run_dir: str | Path, *, show_progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint; return the summary."""
    run_dir = Path(run_dir)
    trainer = Trainer(config, run_dir, show_progress=show_progress)
    trainer.restore(ckpt.load_checkpoint(run_dir))
    return trainer.run()
