"""SAC: squashed-Gaussian log-probabilities, soft targets, temperature tuning, round trips; TD3's
exploration entropy."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from neurorl.agents.entropy import clipped_gaussian_entropy, clipped_gaussian_log_prob
from neurorl.agents.sac import SACAgent, SACConfig, SACUpdateInfo, squashed_gaussian_log_prob
from neurorl.agents.td3 import TD3Agent, TD3Config, UpdateInfo
from neurorl.energy import OperationCounter
from neurorl.snn.actors import ActorSpec, MLPActor, build_actor

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 3, 2


def make_agent(actor_name: str = "ann", seed: int = 0, **overrides) -> SACAgent:
    torch.manual_seed(seed)
    config = SACConfig(critic_hidden=(16, 16), **overrides)
    actor = build_actor(actor_name, ActorSpec(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden=(16, 16), T=2, gaussian=True))
    return SACAgent(actor, OBS_DIM, ACT_DIM, config, seed=seed)


def batch(n: int = 6, terminated=None, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS_DIM, generator=generator)
    actions = torch.rand(n, ACT_DIM, generator=generator) * 2 - 1
    rewards = torch.randn(n, generator=generator)
    next_obs = torch.randn(n, OBS_DIM, generator=generator)
    done = torch.zeros(n) if terminated is None else torch.tensor(terminated, dtype=torch.float32)
    return obs, actions, rewards, next_obs, done, torch.ones(n)


def set_policy(agent: SACAgent, mean: float, log_std: float) -> None:
    """Make the ANN actor's Gaussian independent of the state: constant mean and log σ."""
    last = agent.actor.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([mean] * ACT_DIM + [log_std] * ACT_DIM))


# --------------------------------------------------------------------------------- log-probabilities


def test_log_prob_matches_transformed_distribution():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    log_std = torch.rand(50, 3, generator=generator, dtype=torch.float64) * 2 - 1.5
    pre_tanh = mean + torch.randn(50, 3, generator=generator, dtype=torch.float64) * log_std.exp()

    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    # Squashing through the cached transform lets log_prob reuse the pre-tanh value instead of
    # atanh, whose round-off near ±1 would blur the comparison.
    squashed = reference.transforms[0](pre_tanh)
    expected = reference.log_prob(squashed).sum(-1)

    ours = squashed_gaussian_log_prob(mean, log_std, pre_tanh)
    assert torch.allclose(ours, expected, atol=1e-9)


def test_log_prob_tanh_correction_matches_finite_difference_jacobian():
    mean = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.4]], dtype=torch.float64)
    pre_tanh = torch.tensor([[1.7, -0.4]], dtype=torch.float64)

    step = 1e-6
    jacobian = (torch.tanh(pre_tanh + step) - torch.tanh(pre_tanh - step)) / (2 * step)
    gaussian = torch.tensor(norm.logpdf(pre_tanh.numpy(), mean.numpy(), np.exp(log_std.numpy())))
    expected = (gaussian - torch.log(jacobian)).sum(-1)

    assert torch.allclose(squashed_gaussian_log_prob(mean, log_std, pre_tanh), expected, atol=1e-7)


def test_squashed_density_integrates_to_one():
    mean = torch.tensor([[0.8]], dtype=torch.float64)
    log_std = torch.tensor([[0.3]], dtype=torch.float64)
    actions = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001, dtype=torch.float64)
    pre_tanh = torch.atanh(actions).view(-1, 1)
    density = squashed_gaussian_log_prob(mean.expand(len(actions), 1), log_std.expand(len(actions), 1), pre_tanh).exp()
    total = torch.trapezoid(density, actions).item()
    assert total == pytest.approx(1.0, abs=1e-3)


def test_log_prob_stable_for_saturated_actions():
    mean = torch.zeros(1, 2)
    log_std = torch.zeros(1, 2)
    pre_tanh = torch.tensor([[25.0, -30.0]])
    value = squashed_gaussian_log_prob(mean, log_std, pre_tanh)
    assert torch.isfinite(value).all()


def test_samples_stay_inside_bounds_with_matching_log_prob():
    agent = make_agent()
    obs = torch.randn(64, OBS_DIM)
    actions, log_prob = agent.sample(obs)
    assert actions.shape == (64, ACT_DIM)
    assert log_prob.shape == (64,)
    assert actions.abs().max() < 1.0

    mean, log_std = agent.actor.mean_log_std(obs)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = reference.log_prob(actions.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-3)


# --------------------------------------------------------------------------------- acting


def test_predict_is_tanh_of_mean():
    agent = make_agent()
    obs = np.random.default_rng(0).normal(size=(5, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        mean, _ = agent.actor.mean_log_std(agent.normalizer.normalize(torch.as_tensor(obs)))
    np.testing.assert_allclose(agent.predict(obs), torch.tanh(mean).numpy(), atol=1e-6)
    np.testing.assert_allclose(agent.act(obs[0], explore=False), agent.predict(obs[:1])[0], atol=1e-6)


def test_exploration_is_seeded_and_bounded():
    first = make_agent(seed=4).act(np.zeros(OBS_DIM, np.float32), explore=True)
    second = make_agent(seed=4).act(np.zeros(OBS_DIM, np.float32), explore=True)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32
    assert np.abs(first).max() < 1.0


@pytest.mark.parametrize("explore", [True, False])
def test_energy_counter_sees_every_action(explore):
    """Sampling goes through the actor's forward, so the counter books one sample per action."""
    agent = make_agent("popsan")
    counter = OperationCounter(agent.actor)
    with counter.phase("acting"):
        for _ in range(3):
            agent.act(np.zeros(OBS_DIM, np.float32), explore=explore)
    counts = counter.take("acting")
    counter.remove()
    assert counts.samples == 3
    assert counts.forward_passes == 3
    assert counts.mac > 0


def test_nan_and_misshaped_observations_rejected():
    agent = make_agent()
    bad = np.zeros((2, OBS_DIM), np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        agent.predict(bad)
    with pytest.raises(ValueError, match="NaN"):
        agent.act(bad[1], explore=True)
    with pytest.raises(ValueError, match="NaN"):
        agent.policy_entropy(bad)
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        agent.predict(np.zeros((2, 4), np.float32))


def test_deterministic_actor_rejected():
    actor = MLPActor(ActorSpec(obs_dim=OBS_DIM, act_dim=ACT_DIM))
    with pytest.raises(ValueError, match="gaussian=True"):
        SACAgent(actor, OBS_DIM, ACT_DIM, SACConfig(), seed=0)


def test_config_lists_every_problem():
    with pytest.raises(ValueError) as error:
        SACConfig(gamma=1.5, tau=0.0, td_loss="l1", critic="transformer", policy_delay=0)
    message = str(error.value)
    for fragment in ("gamma=1.5", "tau=0.0", "td_loss='l1'", "critic='transformer'", "policy_delay=0"):
        assert fragment in message


# --------------------------------------------------------------------------------- updates


def test_critic_loss_uses_soft_clipped_double_q_target():
    agent = make_agent(gamma=0.9)
    obs, actions, rewards, next_obs, done, weights = batch(terminated=[0, 1, 0, 1, 0, 0])
    normalize = agent.normalizer.normalize
    generator = torch.Generator().manual_seed(0)
    generator.set_state(agent.torch_generator.get_state())
    with torch.no_grad():
        mean, log_std = agent.actor.mean_log_std(normalize(next_obs))
        pre_tanh = mean + torch.randn(mean.shape, generator=generator) * log_std.exp()
        next_actions = torch.tanh(pre_tanh)
        reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
        next_log_prob = reference.log_prob(reference.transforms[0](pre_tanh)).sum(-1)
        q_next = torch.minimum(
            agent.critic1_target(normalize(next_obs), next_actions), agent.critic2_target(normalize(next_obs), next_actions)
        )
        target = rewards + 0.9 * (1 - done) * (q_next - agent.alpha * next_log_prob)
        q1 = agent.critic1(normalize(obs), actions)
        q2 = agent.critic2(normalize(obs), actions)
        expected = (((q1 - target) ** 2) + ((q2 - target) ** 2)).mean().item()

    info = agent.update(obs, actions, rewards, next_obs, done, weights)
    assert isinstance(info, UpdateInfo) and isinstance(info, SACUpdateInfo)
    assert info.critic_loss == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose(info.td_errors, (q1 - target).abs().numpy(), rtol=1e-4, atol=1e-6)


def test_terminated_rows_do_not_bootstrap():
    agent = make_agent(gamma=0.99)
    obs, actions, rewards, next_obs, _, weights = batch(n=3)
    with torch.no_grad():
        q1 = agent.critic1(agent.normalizer.normalize(obs), actions)
    info = agent.update(obs, actions, rewards, next_obs, torch.ones(3), weights)
    np.testing.assert_allclose(info.td_errors, (q1 - rewards).abs().numpy(), rtol=1e-5)


def test_critic_regression_loss_decreases():
    agent = make_agent(gamma=0.0, critic_lr=1e-2)
    data = batch(n=32)
    first = agent.update(*data).critic_loss
    for _ in range(150):
        last = agent.update(*data).critic_loss
    assert last < 0.2 * first


def test_truncated_td_loss_option_clips_gradient_scale():
    """With a tiny bound, the first critic step of the truncated loss moves the critic less."""
    moves = {}
    for kind in ("mse", "truncated"):
        agent = make_agent(td_loss=kind, td_clip=1e-3, critic_lr=1e-3)
        before = [p.detach().clone() for p in agent.critic1.parameters()]
        obs, actions, rewards, next_obs, done, weights = batch(n=16)
        agent.update(obs, actions, rewards * 50, next_obs, done, weights)
        moves[kind] = sum((p.detach() - b).abs().sum().item() for p, b in zip(agent.critic1.parameters(), before))
    assert moves["truncated"] < moves["mse"]


@pytest.mark.parametrize(
    "log_std, direction",
    [(1.0, -1), (-4.0, +1)],
    ids=["wide-policy-lowers-alpha", "narrow-policy-raises-alpha"],
)
def test_temperature_moves_towards_target_entropy(log_std, direction):
    agent = make_agent(alpha_lr=1e-2)
    set_policy(agent, mean=0.0, log_std=log_std)
    alphas = [agent.alpha]
    for _ in range(5):
        info = agent.update(*batch())
        alphas.append(info.alpha)
    steps = np.sign(np.diff(alphas))
    assert (steps == direction).all(), alphas


def test_fixed_temperature_without_autotune():
    agent = make_agent(autotune=False, initial_alpha=0.3)
    info = agent.update(*batch())
    assert info.alpha == pytest.approx(0.3)
    assert info.alpha_loss is None


def test_actor_update_follows_policy_delay():
    agent = make_agent(policy_delay=2)
    before = copy.deepcopy(agent.actor.state_dict())
    flags = [agent.update(*batch()).actor_updated for _ in range(4)]
    assert flags == [False, True, False, True]
    assert any(not torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())


def test_actor_step_raises_q_of_its_actions():
    """With a frozen critic that rewards a = +1, the actor's mean must move up."""
    agent = make_agent(actor_lr=1e-2, autotune=False, initial_alpha=1e-3)
    obs = torch.randn(32, OBS_DIM)

    class RewardPositiveActions(torch.nn.Module):
        def forward(self, observations, action):
            return action.sum(-1) * 10

    agent.critic1 = RewardPositiveActions()
    agent.critic2 = RewardPositiveActions()
    before = agent.actor.mean_log_std(obs)[0].mean().item()
    info = SACUpdateInfo(0.0, None, False, np.zeros(1))
    for _ in range(20):
        agent._update_actor_and_alpha(obs, info)
    after = agent.actor.mean_log_std(obs)[0].mean().item()
    assert after > before + 0.1


def test_target_critics_follow_polyak_average():
    agent = make_agent(tau=0.25)
    agent.update(*batch())
    online = [p.detach().clone() for p in agent.critic2.parameters()]
    old_target = [p.detach().clone() for p in agent.critic2_target.parameters()]
    agent.update_targets()
    for p_online, p_old, p_new in zip(online, old_target, agent.critic2_target.parameters()):
        assert torch.allclose(p_new, 0.75 * p_old + 0.25 * p_online)


def test_networks_and_round_trip():
    agent = make_agent(seed=1)
    agent.normalizer.update(np.random.default_rng(0).normal(size=(50, OBS_DIM)))
    for _ in range(3):
        agent.update(*batch())
    assert set(agent.networks()) == {"actor", "critic1", "critic2", "critic1_target", "critic2_target"}

    state = copy.deepcopy(agent.state_dict())
    restored = make_agent(seed=9)
    restored.load_state_dict(state)
    obs = np.random.default_rng(1).normal(size=(4, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(restored.predict(obs), agent.predict(obs))
    assert restored.alpha == agent.alpha

    next_original = agent.update(*batch(seed=7))
    next_restored = restored.update(*batch(seed=7))
    assert next_restored.critic_loss == pytest.approx(next_original.critic_loss, rel=1e-6)
    assert next_restored.alpha == pytest.approx(next_original.alpha, rel=1e-6)


@pytest.mark.parametrize("family", ["popsan", "mdcsan", "ilcsan", "bptsan"])
def test_spiking_actors_train_with_sac(family):
    agent = make_agent(family)
    before = copy.deepcopy(agent.actor.state_dict())
    info = agent.update(*batch(n=8))
    assert info.actor_updated
    assert math.isfinite(info.critic_loss)
    assert math.isfinite(info.actor_loss)
    assert any(not torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())


def test_spiking_critic_trains_with_sac():
    agent = make_agent(critic="spiking-q", critic_T=2, td_loss="truncated")
    info = agent.update(*batch(n=8))
    assert math.isfinite(info.critic_loss)
    assert type(agent.critic1).__name__ == "SpikingQCritic"


# --------------------------------------------------------------------------------- entropy estimates


def squashed_entropy_by_quadrature(mean: float, std: float) -> float:
    """H(tanh(U)), U ~ N(mean, std²): H(U) + E[log(1 − tanh²U)], by Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    u = mean + std * nodes
    # 1 − tanh²u = sech²u, so log(1 − tanh²u) = −2·log cosh u, written without overflow.
    log_jacobian = -2.0 * (np.logaddexp(u, -u) - math.log(2.0))
    expectation = (weights * log_jacobian).sum() / weights.sum()
    return 0.5 * math.log(2 * math.pi * math.e * std**2) + expectation


def test_policy_entropy_matches_quadrature():
    agent = make_agent(seed=2)
    set_policy(agent, mean=0.4, log_std=-0.3)
    obs = np.zeros((500, OBS_DIM), np.float32)
    estimate = agent.policy_entropy(obs, samples=8)
    expected = ACT_DIM * squashed_entropy_by_quadrature(0.4, math.exp(-0.3))
    assert estimate == pytest.approx(expected, abs=0.03)


def test_policy_entropy_rejects_zero_samples():
    with pytest.raises(ValueError, match="samples must be at least 1"):
        make_agent().policy_entropy(np.zeros((2, OBS_DIM), np.float32), samples=0)


def test_clipped_entropy_far_from_bounds_is_gaussian():
    sigma = 0.05
    value = clipped_gaussian_entropy(np.zeros((4, 3)), sigma, resolution=0.001)
    per_dimension = 0.5 * math.log(2 * math.pi * math.e * sigma**2) - math.log(0.001)
    assert value == pytest.approx(3 * per_dimension, abs=1e-9)


def test_clipped_entropy_matches_binned_histogram():
    """Entropy of the sampled action binned at width Δ, against the closed form."""
    rng = np.random.default_rng(1)
    mean, sigma, width = 0.9, 0.2, 0.02
    draws = np.clip(mean + rng.normal(0, sigma, size=2_000_000), -1, 1)
    interior = draws[(draws > -1) & (draws < 1)]
    counts = np.histogram(interior, bins=np.arange(-1.0, 1.0 + width / 2, width))[0]
    masses = np.concatenate([counts, [(draws <= -1).sum(), (draws >= 1).sum()]]) / draws.size
    masses = masses[masses > 0]
    histogram_entropy = float(-(masses * np.log(masses)).sum())
    assert clipped_gaussian_entropy(np.array([[mean]]), sigma, resolution=width) == pytest.approx(
        histogram_entropy, abs=0.01
    )


def test_clipped_entropy_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = np.array([[0.95, -0.9, 0.3], [0.0, 1.0, -1.2]])
    sigma = 0.2
    samples = 200_000
    draws = np.clip(mean[None] + rng.normal(0, sigma, size=(samples, *mean.shape)), -1, 1)
    log_prob = clipped_gaussian_log_prob(draws, mean[None], sigma)
    estimate = -log_prob.mean()
    standard_error = log_prob.mean(axis=1).std() / math.sqrt(samples)
    assert clipped_gaussian_entropy(mean, sigma) == pytest.approx(estimate, abs=4 * standard_error + 1e-4)


def test_clipped_entropy_vanishes_when_all_mass_is_clipped():
    assert clipped_gaussian_entropy(np.full((2, 2), 6.0), 0.1) == pytest.approx(0.0, abs=1e-6)


def test_clipped_entropy_drops_near_bounds():
    centre = clipped_gaussian_entropy(np.zeros((1, 1)), 0.3)
    edge = clipped_gaussian_entropy(np.full((1, 1), 0.95), 0.3)
    assert edge < centre


@pytest.mark.parametrize(
    "actions, sigma, message",
    [(np.zeros((0, 2)), 0.1, "N, act_dim"), (np.zeros(3), 0.1, "N, act_dim"),
     (np.array([[np.nan, 0.0]]), 0.1, "NaN"), (np.zeros((1, 2)), 0.0, "noise_std must be positive")],
)
def test_clipped_entropy_rejects_bad_input(actions, sigma, message):
    with pytest.raises(ValueError, match=message):
        clipped_gaussian_entropy(actions, sigma)


def test_clipped_entropy_rejects_bad_resolution():
    with pytest.raises(ValueError, match="resolution must be positive"):
        clipped_gaussian_entropy(np.zeros((1, 1)), 0.1, resolution=0.0)


def test_clipped_entropy_of_td3_policy():
    torch.manual_seed(0)
    actor = MLPActor(ActorSpec(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden=(16, 16)))
    agent = TD3Agent(actor, OBS_DIM, ACT_DIM, TD3Config(critic_hidden=(16, 16)), seed=0)
    obs = np.random.default_rng(0).normal(size=(64, OBS_DIM)).astype(np.float32)
    value = clipped_gaussian_entropy(agent.predict(obs), agent.config.exploration_noise)
    sigma = agent.config.exploration_noise
    upper = ACT_DIM * (0.5 * math.log(2 * math.pi * math.e * sigma**2) - math.log(0.01))
    assert value <= upper + 1e-9
    assert value > upper - 0.5
