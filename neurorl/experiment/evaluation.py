"""Deterministic evaluation episodes with the actor energy of each episode."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from neurorl.energy import EnergyModel, OperationCounter, OperationCounts


@dataclass
class EvaluationResult:
    """Returns, lengths and actor operation counts of each evaluation episode."""

    returns: list[float]
    lengths: list[int]
    counts: list[OperationCounts]
    energies_j: list[float]
    states: np.ndarray
    """float32 [N, obs_dim]: every observation the policy acted on, for policy statistics"""

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def energy_per_action_j(self) -> float:
        return float(np.sum(self.energies_j) / max(1, np.sum(self.lengths)))

    @property
    def energy_per_episode_j(self) -> float:
        return float(np.mean(self.energies_j))

    @property
    def return_per_joule(self) -> float:
        """Mean evaluation return divided by the mean actor energy of one evaluation episode."""
        energy = self.energy_per_episode_j
        return self.mean_return / energy if energy > 0 else float("nan")


def evaluate(
    policy,
    env: gym.Env,
    action_scale: np.ndarray,
    action_bias: np.ndarray,
    episodes: int,
    counter: OperationCounter,
    model: EnergyModel,
    seed: int,
) -> EvaluationResult:
    """Run ``episodes`` episodes with ``policy(obs) -> action in [−1, 1]``, counting actor operations.

    Episode i is reset with ``seed + i`` so every evaluation of a run sees the same start states.
    Operations are booked to the ``acting`` phase, which must hold no other counts on entry.
    """
    returns, lengths, counts, energies, states = [], [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, length, done = 0.0, 0, False
        while not done:
            obs = np.asarray(obs, dtype=np.float32)
            states.append(obs)
            with counter.phase("acting"):
                action = policy(obs)
            obs, reward, terminated, truncated, _ = env.step(action * action_scale + action_bias)
            total += float(reward)
            length += 1
            done = terminated or truncated
        episode_counts = counter.take("acting")
        returns.append(total)
        lengths.append(length)
        counts.append(episode_counts)
        energies.append(model.energy_j(episode_counts))
    return EvaluationResult(returns, lengths, counts, energies, np.stack(states))
