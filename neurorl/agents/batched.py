"""K independent TD3 learners (Fujimoto et al., ICML 2018) run as one computation on stacked networks.

:class:`BatchedTD3` takes K :class:`neurorl.agents.td3.TD3Agent` objects, built one seed at a
time exactly as the single-seed trainer builds them, and stacks their actors, critics and targets
(:mod:`neurorl.snn.stacked`). One update applies :meth:`TD3Agent.update`'s equations to all K
seeds at once:

* Each seed keeps its own observation normaliser, exploration-noise generator and target-noise
  generator, so the random numbers of seed k never depend on K or on the other seeds.
* The loss is the sum over seeds of each seed's mean loss, so the gradient of seed k's slice is
  the gradient of seed k's own loss. Adam is elementwise and all seeds take the same number of
  steps, so one Adam over the stacked parameters is K independent Adams.
* The policy delay counter is shared: all seeds update their actors and targets in lockstep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam as functional_adam

from neurorl.agents.critics import MLPCritic
from neurorl.agents.losses import td_loss
from neurorl.agents.normalization import EPSILON
from neurorl.agents.td3 import TD3Agent
from neurorl.snn.stacked import SeedSlice, StackedActor, StackedLinear, StackedModule, stack_actor


@dataclass
class BatchedUpdateInfo:
    """Losses of one batched update, per seed; ``td_errors`` [K, B] feed prioritized replay."""

    critic_losses: list[float]
    actor_losses: list[float] | None
    actor_updated: bool
    td_errors: np.ndarray


class StackedMLPCritic(StackedModule):
    """K :class:`MLPCritic` Q-networks, stacked: Q(s, a) for states [K, B, obs] and actions [K, B, act] → [K, B]."""

    def __init__(self, critics: Sequence[MLPCritic]) -> None:
        super().__init__(len(critics))
        if any(type(critic) is not MLPCritic for critic in critics):
            raise ValueError(f"StackedMLPCritic needs MLPCritic modules, got {[type(c).__name__ for c in critics]}")
        linears = [[m for m in critic.net if isinstance(m, nn.Linear)] for critic in critics]
        self.in_features = linears[0][0].in_features
        self.layers = nn.ModuleList(StackedLinear([seed[i] for seed in linears], "dense") for i in range(len(linears[0])))

    def forward(self, obs: torch.Tensor, action: torch.Tensor, seeds: SeedSlice = None) -> torch.Tensor:
        self.book_root(seeds, obs)
        x = torch.cat([obs, action], dim=-1)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x, seeds)
            if index < last:
                x = F.relu(x)
        return x.squeeze(-1)


class BatchedTD3:
    """K TD3 agents of one configuration, trained in lockstep on stacked networks.

    :param agents: freshly built agents, one per seed, with equal configurations and sizes.
        Their networks are stacked (copied); :meth:`copy_to_agents` writes the trained weights
        back. Their normalisers and random generators are used in place.
    """

    def __init__(self, agents: Sequence[TD3Agent]) -> None:
        _check_agents(agents)
        self.agents = list(agents)
        self.num_seeds = len(agents)
        self.config = agents[0].config
        self.device = agents[0].device
        self.act_dim = agents[0].act_dim

        self.actor: StackedActor = stack_actor([agent.actor for agent in agents])
        self.actor_target: StackedActor = stack_actor([agent.actor_target for agent in agents])
        self.critic1 = StackedMLPCritic([agent.critic1 for agent in agents])
        self.critic2 = StackedMLPCritic([agent.critic2 for agent in agents])
        self.critic1_target = StackedMLPCritic([agent.critic1_target for agent in agents])
        self.critic2_target = StackedMLPCritic([agent.critic2_target for agent in agents])
        for target in self.target_networks():
            target.requires_grad_(False)

        # Each agent's optimizer settings, because TD3Agent picks them. NOTE: the agents'
        # optimizer states are not carried over, so stacking suits freshly built agents only.
        # A resumed multi-seed run would need those states stacked too.
        self.actor_optimizer = _optimizer_like(agents[0].actor_optimizer, self.actor.parameters())
        critic_parameters = [*self.critic1.parameters(), *self.critic2.parameters()]
        self.critic_optimizer = _optimizer_like(agents[0].critic_optimizer, critic_parameters)

        self.normalizers = [agent.normalizer for agent in agents]
        self.num_updates = agents[0].num_updates
        # Wall seconds of all seeds' critic and actor updates together, as TD3Agent.seconds splits them.
        self.seconds = {"critic_update": 0.0, "actor_update": 0.0}
        self._stats_source: list[tuple[np.ndarray, np.ndarray]] = []
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def target_networks(self) -> list[nn.Module]:
        return [self.actor_target, self.critic1_target, self.critic2_target]

    def networks(self) -> dict[str, StackedModule]:
        """Return every stacked network by name, targets included."""
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic1": self.critic1,
            "critic2": self.critic2,
            "critic1_target": self.critic1_target,
            "critic2_target": self.critic2_target,
        }

    # ----------------------------------------------------------------------------- acting

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalise observations [K, B, obs_dim] with each seed's own running statistics."""
        mean, std = self._normalizer_stats()
        clip = self.normalizers[0].clip
        return ((obs - mean) / std).clamp(-clip, clip)

    def _normalizer_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        # RunningNormalizer replaces its mean and var arrays at every update, so identity shows
        # whether the stacked copy is stale. The references held here keep the ids from being reused.
        current = [(normalizer.mean, normalizer.var) for normalizer in self.normalizers]
        fresh = len(current) == len(self._stats_source) and all(
            mean is old_mean and var is old_var for (mean, var), (old_mean, old_var) in zip(current, self._stats_source)
        )
        if self._stats is None or not fresh:
            mean = torch.stack([torch.as_tensor(m, dtype=torch.float32, device=self.device) for m, _ in current])
            std = torch.stack([torch.as_tensor(np.sqrt(v + EPSILON), dtype=torch.float32, device=self.device) for _, v in current])
            self._stats = (mean.unsqueeze(1), std.unsqueeze(1))
            self._stats_source = current
        return self._stats

    @torch.inference_mode()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Return deterministic actions [K, N, act_dim] for raw observations [K, N, obs_dim]."""
        tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.actor(self.normalize(tensor)).cpu().numpy()

    @torch.inference_mode()
    def predict_seed(self, index: int, obs: np.ndarray) -> np.ndarray:
        """Return seed ``index``'s deterministic actions [N, act_dim] for raw observations [N, obs_dim].

        Only seed ``index``'s slice of the stacked actor runs.
        """
        if not 0 <= index < self.num_seeds:
            raise ValueError(f"seed index {index!r} is outside the stack of {self.num_seeds} seeds")
        tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        normalized = self.normalizers[index].normalize(tensor)
        return self.actor(normalized[None], seeds=slice(index, index + 1))[0].cpu().numpy()

    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """Return one action per seed [K, act_dim] in [−1, 1] for raw observations [K, obs_dim].

        With ``explore`` each seed adds Gaussian noise from its own generator, as
        :meth:`TD3Agent.act` does.
        """
        actions = self.predict(obs[:, None])[:, 0]
        if not explore:
            return actions.astype(np.float32)
        noisy = np.empty_like(actions, dtype=np.float32)
        for index, agent in enumerate(self.agents):
            noise = agent.noise_rng.normal(0.0, self.config.exploration_noise, size=self.act_dim)
            noisy[index] = np.clip(actions[index] + noise, -1.0, 1.0).astype(np.float32)
        return noisy

    # ----------------------------------------------------------------------------- learning

    def update(self, obs, actions, rewards, next_obs, terminated, weights) -> BatchedUpdateInfo:
        """Run one critic update and, every ``policy_delay`` updates, one actor update, for every seed.

        Inputs are float32 tensors on the agents' device with the seeds first: obs and next_obs
        [K, B, obs_dim], actions [K, B, act_dim], rewards, terminated and importance weights [K, B].
        """
        cfg = self.config
        start = time.perf_counter()
        obs = self.normalize(obs)
        next_obs = self.normalize(next_obs)

        with torch.no_grad():
            noise = self._target_noise(actions.shape[1:])
            noise = (noise * cfg.target_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_actions = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            next_q = torch.min(self.critic1_target(next_obs, next_actions), self.critic2_target(next_obs, next_actions))
            # Only termination stops bootstrapping; a time-limit truncation still bootstraps.
            target_q = rewards + cfg.gamma * (1.0 - terminated) * next_q

        q1 = self.critic1(obs, actions)
        q2 = self.critic2(obs, actions)
        critic_losses = self._critic_losses(q1, q2, target_q, weights)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_losses.sum().backward()
        self.critic_optimizer.step()

        self.num_updates += 1
        critic_done = time.perf_counter()
        self.seconds["critic_update"] += critic_done - start
        actor_losses = None
        actor_updated = self.num_updates % cfg.policy_delay == 0
        if actor_updated:
            actor_losses = self._update_actor(obs)
            self.seconds["actor_update"] += time.perf_counter() - critic_done

        td_errors = (q1.detach() - target_q).abs().cpu().numpy()
        return BatchedUpdateInfo(critic_losses.detach().cpu().tolist(), actor_losses, actor_updated, td_errors)

    def _critic_losses(self, q1: torch.Tensor, q2: torch.Tensor, target_q: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # td_loss per seed keeps TD3Agent's loss (its kind, clip and validation) in one place.
        # The gradient of the sum over seeds is each seed's own gradient.
        cfg = self.config
        losses = [
            td_loss(q1[k], target_q[k], weights[k], cfg.td_loss, cfg.td_clip)
            + td_loss(q2[k], target_q[k], weights[k], cfg.td_loss, cfg.td_clip)
            for k in range(self.num_seeds)
        ]
        return torch.stack(losses)

    def _target_noise(self, shape: torch.Size) -> torch.Tensor:
        # One draw per seed from its own generator, with the shape TD3Agent.update draws.
        draws = [torch.randn(shape, generator=agent.torch_generator, device=self.device) for agent in self.agents]
        return torch.stack(draws)

    def _update_actor(self, obs: torch.Tensor) -> list[float]:
        self.critic1.requires_grad_(False)
        actor_losses = -self.critic1(obs, self.actor(obs)).mean(dim=1)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_losses.sum().backward()
        self.actor_optimizer.step()
        self.critic1.requires_grad_(True)
        return actor_losses.detach().cpu().tolist()

    @torch.no_grad()
    def update_targets(self) -> None:
        """Polyak-average every stacked target network towards its online network."""
        tau = self.config.tau
        pairs = [(self.actor, self.actor_target), (self.critic1, self.critic1_target), (self.critic2, self.critic2_target)]
        for online, target in pairs:
            online_params = list(online.parameters())
            target_params = list(target.parameters())
            torch._foreach_mul_(target_params, 1.0 - tau)
            torch._foreach_add_(target_params, online_params, alpha=tau)

    def copy_to_agents(self) -> None:
        """Write the stacked networks, the update count and the update seconds back into the per-seed agents.

        The seconds are the shared wall time of the batched updates, not a per-seed share.
        """
        for network in self.networks().values():
            network.copy_to_sources()
        for agent in self.agents:
            agent.num_updates = self.num_updates
            agent.seconds = dict(self.seconds)


class SeedwiseAdam:
    """Adam over stacked parameters that steps each seed's slice as a tensor of its own.

    Adam is elementwise, but the fused CPU kernel (torch 2.13) rounds the last SIMD-width
    remainder of a tensor unlike its body. One step over a stacked tensor therefore rounds a few
    of seed k's elements unlike seed k's own optimizer, which shows as last-bit differences
    within a few hundred steps. Passing the K slices to the functional Adam as separate tensors keeps
    every seed's update bitwise that of a single-seed ``torch.optim.Adam`` with the same settings.

    :param parameters: stacked parameters, seeds on the first axis.
    :param template: a per-seed agent's Adam, whose settings (lr, betas, eps, weight decay,
        amsgrad, maximize, foreach, fused) are copied.
    """

    def __init__(self, parameters, template: torch.optim.Adam) -> None:
        settings = template.defaults
        if settings.get("capturable") or settings.get("differentiable"):
            raise ValueError("SeedwiseAdam does not support capturable or differentiable Adam; build the agents' Adam without them")
        self.parameters = list(parameters)
        self.settings = dict(settings)
        self.num_seeds = self.parameters[0].shape[0]
        amsgrad = bool(settings["amsgrad"])
        self.exp_avg = [torch.zeros_like(p) for p in self.parameters]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.parameters]
        self.max_exp_avg_sq = [torch.zeros_like(p) for p in self.parameters] if amsgrad else []
        # One step count per parameter and seed, with the dtype and device torch.optim.Adam uses.
        fused = bool(settings.get("fused"))
        self.steps = [[_step_counter(p, fused) for _ in range(self.num_seeds)] for p in self.parameters]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, one seed slice at a time."""
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
        for index, parameter in enumerate(self.parameters):
            if parameter.grad is None:
                continue
            for seed in range(self.num_seeds):
                params.append(parameter[seed])
                grads.append(parameter.grad[seed])
                exp_avgs.append(self.exp_avg[index][seed])
                exp_avg_sqs.append(self.exp_avg_sq[index][seed])
                if self.max_exp_avg_sq:
                    max_exp_avg_sqs.append(self.max_exp_avg_sq[index][seed])
                steps.append(self.steps[index][seed])
        if not params:
            return

        settings = self.settings
        beta1, beta2 = settings["betas"]
        functional_adam(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
            foreach=settings.get("foreach"), fused=settings.get("fused"),
            decoupled_weight_decay=bool(settings.get("decoupled_weight_decay", False)),
            amsgrad=bool(settings["amsgrad"]), beta1=beta1, beta2=beta2, lr=settings["lr"],
            weight_decay=settings["weight_decay"], eps=settings["eps"], maximize=bool(settings["maximize"]),
        )


def _step_counter(parameter: torch.Tensor, fused: bool) -> torch.Tensor:
    if fused:
        return torch.zeros((), dtype=torch.float32, device=parameter.device)
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


def _optimizer_like(template: torch.optim.Optimizer, parameters) -> SeedwiseAdam | torch.optim.Optimizer:
    """Build an optimizer with ``template``'s class and settings over stacked ``parameters``.

    Adam (what TD3Agent uses) becomes :class:`SeedwiseAdam`. Other elementwise optimizers (SGD,
    AdamW and the like) run over the stacked tensors, which matches one optimizer per seed up to
    rounding of the last bits.
    """
    if type(template) is torch.optim.Adam:
        return SeedwiseAdam(parameters, template)
    return type(template)(parameters, **template.defaults)


def _check_agents(agents: Sequence[TD3Agent]) -> None:
    if not agents:
        raise ValueError("BatchedTD3 needs at least one agent, got none")
    problems = []
    if any(not isinstance(agent, TD3Agent) for agent in agents):
        problems.append(f"every agent must be a TD3Agent, got {[type(a).__name__ for a in agents]}")
    else:
        first = agents[0]
        if any(agent.config != first.config for agent in agents):
            problems.append("the agents have different TD3 configurations")
        if len({str(agent.device) for agent in agents}) != 1:
            problems.append(f"the agents sit on different devices: {sorted({str(a.device) for a in agents})}")
        if len({agent.num_updates for agent in agents}) != 1:
            problems.append(f"the agents have taken different numbers of updates: {[a.num_updates for a in agents]}")
        if len({normalizer.clip for normalizer in (a.normalizer for a in agents)}) != 1:
            problems.append("the agents' observation normalisers clip at different values")
    if problems:
        raise ValueError("cannot batch these TD3 agents:\n  " + "\n  ".join(problems))
