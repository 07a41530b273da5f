"""TD3 target, termination versus truncation, delayed actor updates and target averaging."""

import copy

import numpy as np
import pytest
import torch

from neurorl.agents.td3 import TD3Agent, TD3Config
from neurorl.snn.actors import ActorSpec, MLPActor


def make_agent(**overrides):
    torch.manual_seed(0)
    config = TD3Config(critic_hidden=(16, 16), **overrides)
    actor = MLPActor(ActorSpec(obs_dim=3, act_dim=2, hidden=(16, 16)))
    return TD3Agent(actor, 3, 2, config, seed=0)


def batch(n=6, terminated=None):
    generator = torch.Generator().manual_seed(3)
    obs = torch.randn(n, 3, generator=generator)
    actions = torch.rand(n, 2, generator=generator) * 2 - 1
    rewards = torch.randn(n, generator=generator)
    next_obs = torch.randn(n, 3, generator=generator)
    done = torch.zeros(n) if terminated is None else torch.tensor(terminated, dtype=torch.float32)
    return obs, actions, rewards, next_obs, done, torch.ones(n)


def test_critic_loss_uses_clipped_double_q_target():
    agent = make_agent(target_noise=0.0, gamma=0.9)
    obs, actions, rewards, next_obs, done, weights = batch(terminated=[0, 1, 0, 1, 0, 0])
    norm = agent.normalizer.normalize
    with torch.no_grad():
        next_actions = agent.actor_target(norm(next_obs)).clamp(-1, 1)
        q1_next = agent.critic1_target(norm(next_obs), next_actions)
        q2_next = agent.critic2_target(norm(next_obs), next_actions)
        target = rewards + 0.9 * (1 - done) * torch.minimum(q1_next, q2_next)
        q1 = agent.critic1(norm(obs), actions)
        q2 = agent.critic2(norm(obs), actions)
        expected = (((q1 - target) ** 2) + ((q2 - target) ** 2)).mean().item()
        expected_td = (q1 - target).abs().numpy()

    info = agent.update(obs, actions, rewards, next_obs, done, weights)
    assert info.critic_loss == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(info.td_errors, expected_td, rtol=1e-5)


def test_terminated_rows_do_not_bootstrap():
    agent = make_agent(target_noise=0.0, gamma=0.99)
    obs, actions, rewards, next_obs, _, weights = batch(n=2)
    with torch.no_grad():
        q1 = agent.critic1(agent.normalizer.normalize(obs), actions)
    info = agent.update(obs, actions, rewards, next_obs, torch.ones(2), weights)
    np.testing.assert_allclose(info.td_errors, (q1 - rewards).abs().numpy(), rtol=1e-5)


def test_actor_update_is_delayed():
    agent = make_agent(policy_delay=3)
    before = copy.deepcopy(agent.actor.state_dict())
    flags = [agent.update(*batch()).actor_updated for _ in range(6)]
    assert flags == [False, False, True, False, False, True]
    assert any(not torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())


def test_target_networks_follow_polyak_average():
    agent = make_agent(tau=0.25)
    agent.update(*batch())
    online = [p.detach().clone() for p in agent.critic1.parameters()]
    old_target = [p.detach().clone() for p in agent.critic1_target.parameters()]
    agent.update_targets()
    for p_online, p_old, p_new in zip(online, old_target, agent.critic1_target.parameters()):
        assert torch.allclose(p_new, 0.75 * p_old + 0.25 * p_online)


def test_exploration_noise_is_clipped_and_seeded():
    first = [make_agent(exploration_noise=5.0).act(np.zeros(3, np.float32), explore=True) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    assert np.abs(first[0]).max() <= 1.0


def test_state_dict_round_trip_restores_everything():
    agent = make_agent()
    for _ in range(3):
        agent.update(*batch())
    agent.normalizer.update(np.random.default_rng(0).normal(size=(10, 3)))
    clone = make_agent()
    clone.load_state_dict(agent.state_dict())
    obs = np.ones(3, np.float32)
    np.testing.assert_array_equal(agent.act(obs, explore=True), clone.act(obs, explore=True))
    assert agent.update(*batch()).critic_loss == pytest.approx(clone.update(*batch()).critic_loss)


@pytest.mark.slow
def test_compiled_losses_match_eager_and_counts():
    """torch.compile changes rounding at most, and the energy counter books the same layer calls."""
    import shutil

    from neurorl.energy import OperationCounter

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile needs a C++ compiler on CPU")

    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        actor = MLPActor(ActorSpec(obs_dim=3, act_dim=2, hidden=(16, 16)))
        agent = TD3Agent(actor, 3, 2, TD3Config(critic_hidden=(16, 16)), seed=0, compile_losses=compiled)
        counter = OperationCounter(agent.actor, agent.critic1, agent.critic2)
        initial = torch.cat([parameter.detach().flatten() for parameter in agent.actor.parameters()])
        losses = []
        for _ in range(4):
            with counter.phase("learning"):
                losses.append(agent.update(*batch()).critic_loss)
        weights = torch.cat([parameter.detach().flatten() for parameter in agent.actor.parameters()])
        results.append((losses, counter.take("learning"), weights))

    (eager_losses, eager_counts, eager_weights), (compiled_losses, compiled_counts, compiled_weights) = results
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    assert compiled_counts.mac == eager_counts.mac
    assert compiled_counts.mac > 0
    assert torch.allclose(compiled_weights, eager_weights, atol=1e-6)
    assert not torch.equal(compiled_weights, initial)
