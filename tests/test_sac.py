"""Tests for kitae.algos.sac: soft targets and temperature loss (by hand), the factories with
hand-made networks, configuration errors, compilation, and learning on tiny envs and on gymnax
Pendulum (compiled path)."""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import Target, corridor, corridor_observations, make_vec
from helpers import TRACE_EVENT, assert_trees_equal, leaves, small_config, trees_all_differ

from kitae.algos import SAC, SACParams
from kitae.algos import sac as sac_module
from kitae.buffer import Experience
from kitae.config import AlgoConfig
from kitae.modules.distributions import ActionBounds, squashed_gaussian
from kitae.modules.train_state import TrainState


def sac_config(env, *, seed=0, n_env_steps=400, update=None, **params) -> AlgoConfig:
    """A small SAC config: 32-32 torsos, batches of 16, learning after 64 transitions."""
    algo_params = {"hidden_sizes": (32, 32), "start_step": 64, "gamma": 0.9, **params}
    update_params = {
        "learning_rate": 1e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": None,
        "max_buffer_size": 1_000,
        "batch_size": 16,
        "n_epochs": 1,
        **(update or {}),
    }
    return small_config(
        SACParams, env, params=algo_params, update=update_params, seed=seed, n_env_steps=n_env_steps
    )


# ---- numerics by hand --------------------------------------------------------------------------


def test_soft_value_is_min_of_critics_minus_alpha_log_pi_by_hand():
    q_tp1 = jnp.array([[1.0, 5.0], [2.0, 3.0]])  # [C=2, B=2]
    log_pi = jnp.array([-1.0, 0.5])
    # min [1, 3]; minus 0.2 * [-1, 0.5] -> [1.2, 2.9]
    np.testing.assert_allclose(
        np.asarray(sac_module.soft_value(q_tp1, log_pi, 0.2)), [1.2, 2.9], rtol=1e-6
    )


def test_soft_value_discrete_is_the_exact_expectation_by_hand():
    q_tp1 = jnp.array([[[1.0, 4.0]], [[2.0, 3.0]]])  # [C=2, B=1, K=2]: min [1, 3]
    logits = jnp.log(jnp.array([[0.25, 0.75]]))
    # 0.25 * (1 - 0.5 ln 0.25) + 0.75 * (3 - 0.5 ln 0.75)
    # = 0.25 * 1.6931472 + 0.75 * 3.1438410 = 0.4232868 + 2.3578808 = 2.7811676
    value = sac_module.soft_value_discrete(q_tp1, logits, 0.5)
    np.testing.assert_allclose(np.asarray(value), [2.7811676], rtol=1e-6)


def test_alpha_loss_and_its_gradient_by_hand():
    log_pi = jnp.array([-1.0, -3.0])
    # log_pi + target = [-2, -4], mean -3: loss = -0.5 * -3 = 1.5, d loss / d log_alpha = 3.
    loss, grad = jax.value_and_grad(sac_module.alpha_loss)(jnp.float32(0.5), log_pi, -1.0)
    assert float(loss) == pytest.approx(1.5)
    assert float(grad) == pytest.approx(3.0)  # gradient descent lowers alpha: entropy 2 > 1
    # The policy's log-probabilities get no gradient from the temperature loss.
    grad_pi = jax.grad(sac_module.alpha_loss, argnums=1)(jnp.float32(0.5), log_pi, -1.0)
    np.testing.assert_array_equal(np.asarray(grad_pi), [0.0, 0.0])


def test_numerics_check_ranks():
    with pytest.raises(AssertionError):
        sac_module.soft_value(jnp.zeros(3), jnp.zeros(3), 0.1)
    with pytest.raises(AssertionError):
        sac_module.soft_value_discrete(jnp.zeros((2, 3)), jnp.zeros((3,)), 0.1)


def test_default_target_entropies():
    box = sac_config(make_vec(Target, 1))
    box.env_cfg.action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert sac_module.target_entropy(box) == -3.0
    discrete = sac_config(make_vec(corridor, 1), target_entropy_ratio=0.5)
    assert sac_module.target_entropy(discrete) == pytest.approx(0.5 * math.log(2))
    explicit = sac_config(make_vec(Target, 1), target_entropy=-0.3)
    assert sac_module.target_entropy(explicit) == -0.3


# ---- factories with hand-made networks ---------------------------------------------------------

TARGET_BOUNDS = ActionBounds(np.array([-2.0], np.float32), np.array([2.0], np.float32))


def transitions(action) -> Experience:
    return Experience(
        observation=jnp.zeros((3, 1)),
        action=action,
        reward=jnp.array([1.0, -1.0, 0.5]),
        done=jnp.array([False, True, False]),
        next_observation=jnp.ones((3, 1)),
    )


def fake_continuous_state(config, alpha: float = 0.2) -> sac_module.SACState:
    """Actor: ``(params["mean"], params["log_std"])`` for every observation; critic ``i``:
    ``w_i * a + b_i``, with target params different from the params."""

    def actor_apply(params, obs):
        shape = (obs.shape[0], 1)
        return jnp.broadcast_to(params["mean"], shape), jnp.broadcast_to(params["log_std"], shape)

    def critic_apply(params, obs, actions):
        del obs
        return params["w"][:, None] * actions[None, :, 0] + params["b"][:, None]

    tx = sac_module.make_optimizer(config.update_cfg, 100)
    return sac_module.SACState(
        actor=TrainState.create(apply_fn=actor_apply, params={"mean": 0.3, "log_std": -0.5}, tx=tx),
        critic=TrainState.create(
            apply_fn=critic_apply,
            params={"w": jnp.array([9.0, 9.0]), "b": jnp.array([9.0, 9.0])},
            target_params={"w": jnp.array([1.0, -1.0]), "b": jnp.array([0.5, 1.0])},
            tx=tx,
        ),
        alpha=TrainState.create(
            apply_fn=sac_module.alpha_value, params={"log_alpha": jnp.log(alpha)}, tx=tx
        ),
    )


def test_continuous_critic_target_by_hand():
    env = make_vec(Target, 1)
    config = sac_config(env, gamma=0.5)
    state = fake_continuous_state(config)
    key = jax.random.PRNGKey(7)
    batch = sac_module.process_experience_factory(config)(
        state, key, transitions(jnp.zeros((3, 1)))
    )
    # The next action and its log-probability come from the current policy (same key).
    a, log_pi = squashed_gaussian(
        jnp.full((3, 1), 0.3), jnp.full((3, 1), -0.5), TARGET_BOUNDS
    ).sample_and_log_prob(seed=key)
    a, log_pi = np.asarray(a[:, 0]), np.asarray(log_pi)
    min_q = np.minimum(1.0 * a + 0.5, -1.0 * a + 1.0)  # the target critics, not the online ones
    expected = np.array([1.0, -1.0, 0.5]) + 0.5 * np.array([1, 0, 1]) * (min_q - 0.2 * log_pi)
    np.testing.assert_allclose(np.asarray(batch.target), expected, rtol=1e-5)


def test_discrete_critic_target_by_hand():
    env = make_vec(corridor, 1)
    config = sac_config(env, gamma=0.5)

    def actor_apply(params, obs):
        return jnp.broadcast_to(params["logits"], (obs.shape[0], 2))

    def critic_apply(params, obs):
        return jnp.broadcast_to(params["q"][:, None], (params["q"].shape[0], obs.shape[0], 2))

    tx = sac_module.make_optimizer(config.update_cfg, 100)
    state = sac_module.SACState(
        actor=TrainState.create(
            apply_fn=actor_apply, params={"logits": jnp.log(jnp.array([0.25, 0.75]))}, tx=tx
        ),
        critic=TrainState.create(
            apply_fn=critic_apply,
            params={"q": jnp.zeros((2, 2))},
            target_params={"q": jnp.array([[1.0, 4.0], [2.0, 3.0]])},
            tx=tx,
        ),
        alpha=TrainState.create(
            apply_fn=sac_module.alpha_value, params={"log_alpha": jnp.log(0.5)}, tx=tx
        ),
    )
    batch = sac_module.process_experience_factory(config)(
        state, jax.random.PRNGKey(0), transitions(jnp.zeros(3, jnp.int32))
    )
    v = 2.7811676  # see test_soft_value_discrete_is_the_exact_expectation_by_hand
    np.testing.assert_allclose(
        np.asarray(batch.target), [1.0 + 0.5 * v, -1.0, 0.5 + 0.5 * v], rtol=1e-6
    )


@pytest.mark.parametrize("target_entropy, direction", [(5.0, 1), (-5.0, -1)])
def test_temperature_moves_toward_the_entropy_target(target_entropy, direction):
    env = make_vec(Target, 1)
    config = sac_config(env, target_entropy=target_entropy)
    state = sac_module.train_state_sac_factory(jax.random.PRNGKey(0), config)
    batch = sac_module.SACBatch(jnp.ones((8, 1)), jnp.zeros((8, 1)), jnp.ones(8))
    update = jax.jit(sac_module.update_step_factory(config))
    new_state, info = update(state, jax.random.PRNGKey(1), batch)
    change = float(new_state.alpha.params["log_alpha"] - state.alpha.params["log_alpha"])
    assert np.sign(change) == direction
    assert float(info["alpha"]) == pytest.approx(1.0)  # the temperature used in this step


def test_fixed_temperature_is_not_learned():
    env = make_vec(Target, 1)
    config = sac_config(env, learn_alpha=False, init_alpha=0.3)
    state = sac_module.train_state_sac_factory(jax.random.PRNGKey(0), config)
    batch = sac_module.SACBatch(jnp.ones((8, 1)), jnp.zeros((8, 1)), jnp.ones(8))
    update = jax.jit(sac_module.update_step_factory(config))
    new_state, _ = update(state, jax.random.PRNGKey(1), batch)
    assert float(new_state.alpha.params["log_alpha"]) == pytest.approx(math.log(0.3))


def test_critic_targets_follow_polyak_averaging():
    env = make_vec(Target, 1)
    config = sac_config(env, tau=0.25)
    state = sac_module.train_state_sac_factory(jax.random.PRNGKey(0), config)
    batch = sac_module.SACBatch(jnp.ones((8, 1)), jnp.zeros((8, 1)), jnp.ones(8))
    update = jax.jit(sac_module.update_step_factory(config))
    new_state, _ = update(state, jax.random.PRNGKey(1), batch)
    expected = jax.tree.map(
        lambda p, t: 0.25 * p + 0.75 * t, new_state.critic.params, state.critic.target_params
    )
    for x, y in zip(leaves(new_state.critic.target_params), leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


# ---- agent --------------------------------------------------------------------------------------


def test_select_action_is_the_rescaled_squashed_mean():
    env = make_vec(Target, 2)
    agent = SAC("sac", sac_config(env))
    obs = np.array([[0.5], [-0.25]], np.float32)
    mean, log_std = agent.state.actor.apply_fn(agent.state.actor.params, obs)
    mean, log_std = np.asarray(mean), np.asarray(log_std)
    actions, log_probs = agent.select_action(obs)
    np.testing.assert_allclose(np.asarray(actions), 2.0 * np.tanh(mean), rtol=1e-5)
    # log N(mean; mean, std) - log(1 - tanh(mean)^2) - log 2
    expected = (
        -log_std[:, 0]
        - 0.5 * math.log(2 * math.pi)
        - np.log(1 - np.tanh(mean[:, 0]) ** 2)
        - math.log(2)
    )
    np.testing.assert_allclose(np.asarray(log_probs), expected, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(agent.select_action(obs)[0]), np.asarray(actions))


def test_acting_state_drops_every_optimizer_state():
    agent = SAC("sac", sac_config(make_vec(Target, 2)))
    acting = agent.acting_state
    for name in ("actor", "critic", "alpha"):
        assert getattr(acting, name).opt_state is None and getattr(acting, name).tx is None
        assert getattr(agent.state, name).opt_state is not None
    assert_trees_equal(acting.actor.params, agent.state.actor.params)


def test_explore_is_uniform_before_start_step_then_samples_the_policy():
    env = make_vec(Target, 2)
    agent = SAC("sac", sac_config(env, start_step=100))
    obs = np.zeros((2, 1), np.float32)
    warmup = [agent.explore(obs) for _ in range(200)]
    actions = np.concatenate([np.asarray(a) for a, _ in warmup])
    assert actions.min() < -1.8 and actions.max() > 1.8 and abs(actions.mean()) < 0.3
    np.testing.assert_allclose(np.asarray(warmup[0][1]), [-math.log(4.0)] * 2, rtol=1e-6)
    agent.env_steps = 100
    samples = [agent.explore(obs) for _ in range(20)]
    mean, log_std = agent.state.actor.apply_fn(agent.state.actor.params, obs)
    dist = squashed_gaussian(mean, log_std, TARGET_BOUNDS)
    for a, log_prob in samples[:3]:
        assert np.all(np.abs(np.asarray(a)) <= 2.0)
        np.testing.assert_allclose(
            np.asarray(log_prob), np.asarray(dist.log_prob(jnp.asarray(a))), rtol=1e-4, atol=1e-4
        )


def test_discrete_select_action_is_the_most_probable_action():
    env = make_vec(corridor, 2)
    agent = SAC("sac-discrete", sac_config(env))
    obs = corridor_observations()
    logits = np.asarray(agent.state.actor.apply_fn(agent.state.actor.params, obs))
    actions, log_probs = agent.select_action(obs)
    np.testing.assert_array_equal(np.asarray(actions), logits.argmax(-1))
    log_softmax = np.asarray(jax.nn.log_softmax(logits))
    np.testing.assert_allclose(
        np.asarray(log_probs), log_softmax[np.arange(len(obs)), logits.argmax(-1)], rtol=1e-5
    )


def test_second_train_call_compiles_nothing(trace_counter):
    env = make_vec(Target, 2)
    agent = SAC("jit", sac_config(env))
    agent.train(env, 200)
    agent.select_action(np.zeros((2, 1), np.float32))
    sizes = (agent.explore_fn._cache_size(), agent.update_fn._cache_size())
    trace_counter.clear()
    agent.train(env, 200)  # crosses start_step: uniform then sampled actions
    agent.select_action(np.zeros((2, 1), np.float32))
    assert trace_counter[TRACE_EVENT] == 0, dict(trace_counter)
    assert (agent.explore_fn._cache_size(), agent.update_fn._cache_size()) == sizes


def test_same_seed_same_params_other_seed_other_params():
    def run(seed):
        env = make_vec(Target, 2)
        agent = SAC("seeded", sac_config(env, seed=seed))
        agent.train(env, 200)
        return agent

    a, b, c = run(3), run(3), run(4)
    assert_trees_equal(a.state, b.state)
    assert trees_all_differ(a.state.actor.params, c.state.actor.params)
    assert trees_all_differ(a.state.critic.params, c.state.critic.params)


@pytest.mark.parametrize(
    "params, match",
    [
        pytest.param({"tau": 0.0}, "algo_params.tau", id="tau-0"),
        pytest.param({"tau": 2.0}, "algo_params.tau", id="tau-above-1"),
        pytest.param({"gamma": -0.1}, "algo_params.gamma", id="gamma"),
        pytest.param({"init_alpha": 0.0}, "algo_params.init_alpha", id="alpha-0"),
        pytest.param({"target_entropy": float("nan")}, "algo_params.target_entropy", id="nan"),
        pytest.param({"target_entropy_ratio": 0.0}, "target_entropy_ratio", id="ratio-0"),
        pytest.param({"target_entropy_ratio": 1.5}, "target_entropy_ratio", id="ratio-1.5"),
        pytest.param({"n_critics": 0}, "algo_params.n_critics", id="n-critics"),
        pytest.param({"target_update_period": 0}, "target_update_period", id="period"),
        pytest.param({"start_step": -2}, "algo_params.start_step", id="start-step"),
    ],
)
def test_sac_config_errors(params, match):
    with pytest.raises(ValueError, match=match):
        SAC("bad", sac_config(make_vec(Target, 1), **params))


@pytest.mark.parametrize(
    "space, match",
    [
        pytest.param(gym.spaces.Box(-np.inf, np.inf, (1,)), "infinite bounds", id="infinite"),
        pytest.param(gym.spaces.MultiDiscrete([2, 3]), r"MultiDiscrete.*\['PPO'\]", id="multi"),
    ],
)
def test_sac_rejects_action_spaces(space, match):
    config = sac_config(make_vec(Target, 1))
    config.env_cfg.action_space = space
    with pytest.raises(ValueError, match=match):
        SAC("bad", config)


# ---- learning -------------------------------------------------------------------------------


def test_learns_the_continuous_target():
    env = make_vec(Target, 2)
    agent = SAC("target", sac_config(env, n_env_steps=1_500))
    targets = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]

    def mse():
        return float(np.mean((np.asarray(agent.select_action(targets)[0]) - targets) ** 2))

    initial = mse()
    agent.train(env)
    final = mse()
    assert final < 0.01, (initial, final)


def test_discrete_sac_solves_the_corridor():
    env = make_vec(corridor, 2)
    # A small fixed temperature: the entropy bonus of every step alive would otherwise outweigh
    # the goal's reward, which ends the episode (and the bonus); and a learned one would keep
    # the policy near its entropy target, 0.98 log 2, close to uniform.
    config = sac_config(env, n_env_steps=1_500, start_step=200, init_alpha=0.02, learn_alpha=False)
    agent = SAC("corridor", config)
    observations = corridor_observations()

    def solved() -> tuple[bool, str]:
        actions = np.asarray(agent.select_action(observations)[0])
        logits = np.asarray(agent.state.actor.apply_fn(agent.state.actor.params, observations))
        p_right = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
        ok = (actions == 1).all() and (p_right >= 0.9).all()
        return bool(ok), f"greedy {actions}, P(right) {np.round(p_right, 3)}"

    ok, report = solved()
    assert not ok, f"the untrained agent already solves the corridor: {report}"
    agent.train(env)
    ok, report = solved()
    assert ok, report


def test_compiled_pendulum_training_fits_the_negative_returns():
    """2,000 compiled Pendulum steps: the critics' values of Pendulum states fall from about 0
    toward the discounted sum of Pendulum's costs (rewards in [-16.3, 0]; gamma 0.9: values of
    tens below 0), the temperature moves, and everything stays finite."""
    from kitae.compiled import make_agent_train
    from kitae.envs.jax_env import make_jax_env
    from kitae.modules.optimizer import get_learning_rate

    env = make_jax_env("Pendulum-v1")
    gym_env = gym.make("Pendulum-v1")
    agent = SAC("compiled", sac_config(gym_env, n_env_steps=2_000, start_step=500))
    rng = np.random.default_rng(0)
    angles = rng.uniform(-np.pi, np.pi, 64)
    states = np.stack([np.cos(angles), np.sin(angles), rng.uniform(-1, 1, 64)], -1)
    states = states.astype(np.float32)
    actions = rng.uniform(-2, 2, (64, 1)).astype(np.float32)

    def critic_values(state):
        return np.asarray(state.critic.apply_fn(state.critic.params, states, actions)).mean()

    before = critic_values(agent.state)
    summary = agent.train(env, 2_000)
    assert summary["n_updates"] == 2_000 - 500 + 1
    after = critic_values(agent.state)
    assert abs(before) < 1.0 and after < -5.0, (before, after)
    assert float(agent.state.alpha.params["log_alpha"]) != 0.0
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(agent.state)))
    # Learning-rate injection reaches the three optimizers.
    runner = make_agent_train(agent, env, 1_000).init(jax.random.PRNGKey(0), {"learning_rate": 0.5})
    for name in ("actor", "critic", "alpha"):
        assert float(get_learning_rate(getattr(runner.agent_state, name).opt_state)) == 0.5
