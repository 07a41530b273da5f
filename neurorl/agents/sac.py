"""Soft actor-critic with automatic entropy tuning for any Gaussian actor.

SAC and its temperature tuning are Haarnoja et al.'s (arXiv:1801.01290, arXiv:1812.05905).
The actor must be built with ``ActorSpec(gaussian=True)``: its ``mean_log_std(obs)`` gives the
mean and log σ of a Gaussian over pre-tanh actions u, and the policy acts with a = tanh(u), so
actions live in [−1, 1] like TD3's. The log-probability carries the tanh change of variables:

    log π(a|s) = Σ_i [log N(u_i; μ_i, σ_i) − log(1 − tanh²(u_i))],
    log(1 − tanh²(u)) = 2·(log 2 − u − softplus(−2u))          (stable for large |u|)

One update, top to bottom: soft clipped double-Q target from the target critics and a fresh
next action, y = r + γ·(1 − terminated)·(min_j Q'_j(s', a') − α·log π(a'|s')); critic regression
with :func:`~neurorl.agents.losses.td_loss`; every ``policy_delay`` updates an actor step on
α·log π(a|s) − min_j Q_j(s, a) with reparameterised a, followed by a temperature step on
−log α·(log π(a|s) + H̄) with target entropy H̄ = −act_dim. Only ``terminated`` stops
bootstrapping; a time-limit truncation still bootstraps. :meth:`SACAgent.update_targets` averages
the target critics (SAC has no target actor); the training loop calls it after the replay check.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurorl.agents.losses import DEFAULT_TD_CLIP, TD_LOSS_KINDS, td_loss
from neurorl.agents.normalization import RunningNormalizer
from neurorl.agents.spiking_critic import CRITIC_KINDS, make_critic
from neurorl.agents.td3 import UpdateInfo

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters; the defaults are those of Stable-Baselines3 2.9.2's SAC (learning rates
    3e-4, γ 0.99, τ 0.005, learned α starting at 1.0).

    :param initial_alpha: temperature α before tuning (the fixed α when ``autotune`` is False).
    :param autotune: learn α towards the target entropy −act_dim.
    :param policy_delay: critic updates per actor and temperature update.
    :param critic: ``mlp`` or ``spiking-q`` (see :func:`~neurorl.agents.spiking_critic.make_critic`).
    :param critic_T: time steps of a ``spiking-q`` critic.
    :param td_loss: ``mse`` or ``truncated`` (see :func:`~neurorl.agents.losses.td_loss`).
    :param td_clip: TD-error bound of the ``truncated`` loss.
    """

    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 1.0
    autotune: bool = True
    policy_delay: int = 1
    critic_hidden: tuple[int, ...] = (256, 256)
    critic: str = "mlp"
    critic_T: int = 5
    td_loss: str = "mse"
    td_clip: float = DEFAULT_TD_CLIP

    def __post_init__(self) -> None:
        checks = [
            ("gamma", 0.0 <= self.gamma <= 1.0, "must lie in [0, 1]"),
            ("tau", 0.0 < self.tau <= 1.0, "must lie in (0, 1]"),
            ("actor_lr", self.actor_lr > 0, "must be positive"),
            ("critic_lr", self.critic_lr > 0, "must be positive"),
            ("alpha_lr", self.alpha_lr > 0, "must be positive"),
            ("initial_alpha", self.initial_alpha > 0, "must be positive"),
            ("policy_delay", isinstance(self.policy_delay, int) and self.policy_delay >= 1, "must be an integer ≥ 1"),
            ("critic", self.critic in CRITIC_KINDS, f"must be one of {', '.join(CRITIC_KINDS)}"),
            ("critic_T", isinstance(self.critic_T, int) and self.critic_T >= 1, "must be an integer ≥ 1"),
            ("td_loss", self.td_loss in TD_LOSS_KINDS, f"must be one of {', '.join(TD_LOSS_KINDS)}"),
            ("td_clip", self.td_clip > 0, "must be positive"),
        ]
        problems = [f"{name}={getattr(self, name)!r} {rule}" for name, valid, rule in checks if not valid]
        if problems:
            raise ValueError("invalid SACConfig:\n  " + "\n  ".join(problems))


@dataclass
class SACUpdateInfo(UpdateInfo):
    """:class:`UpdateInfo` plus the temperature α after the update, its loss and the mean log π of
    the actor step's actions (None when the actor was not updated)."""

    alpha: float = float("nan")
    alpha_loss: float | None = None
    log_prob: float | None = None


def squashed_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
    """Return log π(tanh(u)) [B] for pre-tanh samples u of N(mean, exp(log_std)²), with the tanh
    Jacobian correction summed over action dimensions."""
    z = (pre_tanh - mean) * torch.exp(-log_std)
    gaussian = -0.5 * z * z - log_std - _LOG_SQRT_2PI
    log_jacobian = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - log_jacobian).sum(dim=-1)


class SACAgent:
    """Soft actor-critic with twin critics and automatic entropy tuning around a Gaussian actor.

    Public interface as :class:`~neurorl.agents.td3.TD3Agent`: ``normalizer``, :meth:`networks`,
    :meth:`predict` (deterministic tanh(mean)), :meth:`act`, :meth:`update`,
    :meth:`update_targets`, :meth:`state_dict`, :meth:`load_state_dict`, plus
    :meth:`policy_entropy`.
    """

    def __init__(
        self,
        actor: nn.Module,
        obs_dim: int,
        act_dim: int,
        config: SACConfig,
        *,
        seed: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if not getattr(actor, "gaussian", False) or not hasattr(actor, "mean_log_std"):
            raise ValueError(
                f"SAC needs a Gaussian actor with mean_log_std(); {type(actor).__name__} has none. "
                "Build the actor with ActorSpec(gaussian=True)"
            )
        self.config = config
        self.device = torch.device(device)
        self.act_dim = act_dim
        self.target_entropy = -float(act_dim)

        self.actor = actor.to(self.device)
        self.critic1 = self._make_critic(obs_dim, act_dim)
        self.critic2 = self._make_critic(obs_dim, act_dim)
        self.critic1_target = copy.deepcopy(self.critic1)
        self.critic2_target = copy.deepcopy(self.critic2)
        for target in (self.critic1_target, self.critic2_target):
            target.requires_grad_(False)

        self.log_alpha = torch.tensor(math.log(config.initial_alpha), device=self.device, requires_grad=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        critic_parameters = [*self.critic1.parameters(), *self.critic2.parameters()]
        self.critic_optimizer = torch.optim.Adam(critic_parameters, lr=config.critic_lr, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)

        self.normalizer = RunningNormalizer(obs_dim, self.device)
        self.torch_generator = torch.Generator(device=self.device)
        self.torch_generator.manual_seed(seed)
        self.num_updates = 0
        self.seconds = {"critic_update": 0.0, "actor_update": 0.0}

    def _make_critic(self, obs_dim: int, act_dim: int) -> nn.Module:
        cfg = self.config
        return make_critic(cfg.critic, obs_dim, act_dim, cfg.critic_hidden, cfg.critic_T).to(self.device)

    @property
    def alpha(self) -> float:
        """Current entropy temperature α."""
        return float(self.log_alpha.detach().exp())

    def networks(self) -> dict[str, nn.Module]:
        """Return every network by name, targets included (for checkpoints and energy hooks)."""
        return {
            "actor": self.actor,
            "critic1": self.critic1,
            "critic2": self.critic2,
            "critic1_target": self.critic1_target,
            "critic2_target": self.critic2_target,
        }

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw reparameterised actions [B, act_dim] in (−1, 1) for normalised ``obs`` and return
        them with their log-probabilities [B]."""
        mean, log_std = self.actor.mean_log_std(obs)
        noise = torch.randn(mean.shape, generator=self.torch_generator, device=self.device)
        pre_tanh = mean + noise * log_std.exp()
        return torch.tanh(pre_tanh), squashed_gaussian_log_prob(mean, log_std, pre_tanh)

    @torch.inference_mode()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Return the deterministic actions tanh(mean) [N, act_dim] for raw observations [N, obs_dim]."""
        tensor = self._observations(obs)
        return self.actor(self.normalizer.normalize(tensor)).cpu().numpy()

    @torch.inference_mode()
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """Return one action in [−1, 1] for a raw observation: a policy sample if ``explore``, else tanh(mean)."""
        if not explore:
            return self.predict(obs[None])[0].astype(np.float32)
        tensor = self.normalizer.normalize(self._observations(obs[None]))
        action, _ = self.sample(tensor)
        return action[0].cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def policy_entropy(self, obs: np.ndarray, samples: int = 1) -> float:
        """Estimate the squashed policy's entropy −E[log π(a|s)] in nats, averaged over the raw
        observations [N, obs_dim] with ``samples`` actions drawn per observation."""
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        tensor = self.normalizer.normalize(self._observations(obs))
        log_probs = [self.sample(tensor)[1] for _ in range(samples)]
        return float(-torch.stack(log_probs).mean())

    def update(self, obs, actions, rewards, next_obs, terminated, weights) -> SACUpdateInfo:
        """Run one critic update and, every ``policy_delay`` updates, one actor and temperature update.

        All inputs are float32 tensors on the agent's device; ``weights`` are importance weights
        (ones for uniform replay).
        """
        cfg = self.config
        start = time.perf_counter()
        obs = self.normalizer.normalize(obs)
        next_obs = self.normalizer.normalize(next_obs)
        alpha = self.log_alpha.detach().exp()

        with torch.no_grad():
            next_actions, next_log_prob = self.sample(next_obs)
            next_q = torch.min(self.critic1_target(next_obs, next_actions), self.critic2_target(next_obs, next_actions))
            # Only termination stops bootstrapping; a time-limit truncation still bootstraps.
            target_q = rewards + cfg.gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)

        q1 = self.critic1(obs, actions)
        q2 = self.critic2(obs, actions)
        critic_loss = td_loss(q1, target_q, weights, cfg.td_loss, cfg.td_clip) + td_loss(
            q2, target_q, weights, cfg.td_loss, cfg.td_clip
        )
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        self.num_updates += 1
        td_errors = (q1.detach() - target_q).abs().cpu().numpy()
        info = SACUpdateInfo(float(critic_loss.detach()), None, False, td_errors, alpha=float(alpha))
        critic_done = time.perf_counter()
        self.seconds["critic_update"] += critic_done - start
        if self.num_updates % cfg.policy_delay == 0:
            self._update_actor_and_alpha(obs, info)
            self.seconds["actor_update"] += time.perf_counter() - critic_done
        return info

    def _update_actor_and_alpha(self, obs: torch.Tensor, info: SACUpdateInfo) -> None:
        alpha = self.log_alpha.detach().exp()
        for critic in (self.critic1, self.critic2):
            critic.requires_grad_(False)
        actions, log_prob = self.sample(obs)
        q = torch.min(self.critic1(obs, actions), self.critic2(obs, actions))
        actor_loss = (alpha * log_prob - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        for critic in (self.critic1, self.critic2):
            critic.requires_grad_(True)

        info.actor_loss = float(actor_loss.detach())
        info.actor_updated = True
        info.log_prob = float(log_prob.detach().mean())
        if self.config.autotune:
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            info.alpha_loss = float(alpha_loss.detach())
        info.alpha = self.alpha

    @torch.no_grad()
    def update_targets(self) -> None:
        """Polyak-average both target critics towards their online critics."""
        tau = self.config.tau
        for online, target in ((self.critic1, self.critic1_target), (self.critic2, self.critic2_target)):
            target_params = list(target.parameters())
            torch._foreach_mul_(target_params, 1.0 - tau)
            torch._foreach_add_(target_params, list(online.parameters()), alpha=tau)

    def state_dict(self) -> dict:
        """Return networks, optimisers, temperature, normalisation and the random generator."""
        state = {name: net.state_dict() for name, net in self.networks().items()}
        state["actor_optimizer"] = self.actor_optimizer.state_dict()
        state["critic_optimizer"] = self.critic_optimizer.state_dict()
        state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        state["log_alpha"] = self.log_alpha.detach().clone()
        state["normalizer"] = self.normalizer.state_dict()
        state["torch_generator"] = self.torch_generator.get_state()
        state["num_updates"] = self.num_updates
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore everything :meth:`state_dict` returned."""
        for name, net in self.networks().items():
            net.load_state_dict(state[name])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.normalizer.load_state_dict(state["normalizer"])
        self.torch_generator.set_state(state["torch_generator"])
        self.num_updates = int(state["num_updates"])

    def _observations(self, obs: np.ndarray) -> torch.Tensor:
        array = np.asarray(obs, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.normalizer.dim:
            raise ValueError(f"observations must have shape [N, {self.normalizer.dim}], got {array.shape}")
        if np.isnan(array).any():
            raise ValueError(
                f"observations contain {int(np.isnan(array).sum())} NaN values; a spiking encoder would "
                "silently map them to no spikes, so check the environment's output"
            )
        return torch.as_tensor(array, device=self.device)
