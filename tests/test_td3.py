"""Tests for kitae.algos.td3: TD3 and DDPG numerics (by hand), factories, configuration errors,
compilation, and learning on tiny envs and on gymnax Pendulum."""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import Target, corridor, make_vec
from helpers import TRACE_EVENT, assert_trees_equal, leaves, small_config, trees_all_differ

from kitae.algos import DDPG, TD3, DDPGParams, TD3Params
from kitae.algos import td3 as td3_module
from kitae.buffer import Experience
from kitae.config import AlgoConfig
from kitae.modules.distributions import ActionBounds
from kitae.modules.train_state import TrainState

BOUNDS = ActionBounds(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
"""loc [0, 0.5], scale [2, 0.5]."""


def td3_config(env, *, seed=0, n_env_steps=400, update=None, params_type=TD3Params, **params):
    """A small TD3 config: 32-32 torsos, batches of 16, learning after 64 transitions."""
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
        params_type,
        env,
        params=algo_params,
        update=update_params,
        seed=seed,
        n_env_steps=n_env_steps,
    )


# ---- numerics by hand --------------------------------------------------------------------------


def test_smoothed_target_action_at_the_bounds_by_hand():
    # noise std 0.2 and clip 0.5 relative to the bounds: in env units std 0.4 / 0.1 and clip
    # 1.0 / 0.25 for the two dimensions (scales 2 and 0.5).
    a_tp1 = jnp.array([[1.9, 0.9], [1.9, 0.1], [-1.5, 0.5]])
    eps = jnp.array([[3.0, 3.0], [-3.0, -3.0], [0.1, -1.0]])
    smoothed = td3_module.smoothed_target_action(a_tp1, eps, BOUNDS, 0.2, 0.5)
    expected = [
        [2.0, 1.0],  # noise 1.2 -> clipped 1.0, 1.9 + 1.0 -> bound 2.0; 0.9 + 0.25 -> bound 1.0
        [0.9, 0.0],  # noise -1.0 (clipped); 0.1 - 0.25 -> bound 0.0
        [-1.46, 0.4],  # noise 0.04 and -0.1, both within the clip
    ]
    np.testing.assert_allclose(np.asarray(smoothed), expected, rtol=1e-6, atol=1e-7)


def test_smoothing_without_noise_or_with_zero_clip_is_the_identity():
    a = jnp.array([[1.0, 0.3]])
    eps = jnp.array([[2.0, -2.0]])
    for std, clip in ((0.0, 0.5), (0.2, 0.0)):
        out = td3_module.smoothed_target_action(a, eps, BOUNDS, std, clip)
        np.testing.assert_allclose(np.asarray(out), np.asarray(a))


def test_exploration_noise_is_scaled_to_the_bounds_by_hand():
    a_t = jnp.array([[0.0, 0.5], [1.9, 0.95]])
    eps = jnp.array([[1.0, 1.0], [1.0, 1.0]])
    noisy = td3_module.exploration_action(a_t, eps, BOUNDS, 0.1)
    # noise 0.1 * [2, 0.5] = [0.2, 0.05]; the second row hits the bounds.
    np.testing.assert_allclose(np.asarray(noisy), [[0.2, 0.55], [2.0, 1.0]], rtol=1e-6)


def test_numerics_check_ranks():
    with pytest.raises(AssertionError):
        td3_module.smoothed_target_action(jnp.zeros(3), jnp.zeros(3), BOUNDS, 0.2, 0.5)


# ---- factories with hand-made networks ---------------------------------------------------------


def fake_state(config: AlgoConfig, *, policy_delay_steps: int = 0) -> td3_module.TD3State:
    """Linear 'networks' with known outputs: the actor outputs ``params["u"]`` whatever the
    observation; critic ``i`` is ``w_i * a[:, 0] + b_i``. Target params differ from params."""

    def actor_apply(params, obs):
        return jnp.broadcast_to(params["u"], (obs.shape[0], params["u"].shape[-1]))

    def critic_apply(params, obs, actions):
        del obs
        return params["w"][:, None] * actions[None, :, 0] + params["b"][:, None]

    tx = td3_module.make_optimizer(config.update_cfg, 100)
    actor_params = {"u": jnp.array([0.3])}
    actor_target = {"u": jnp.array([10.0])}  # squashes to the upper bound 2.0
    critic_params = {"w": jnp.array([1.0, 1.0]), "b": jnp.array([0.0, 0.0])}
    critic_target = {"w": jnp.array([1.0, -1.0]), "b": jnp.array([0.5, 1.0])}
    return td3_module.TD3State(
        actor=TrainState.create(
            apply_fn=actor_apply, params=actor_params, target_params=actor_target, tx=tx
        ),
        critic=TrainState.create(
            apply_fn=critic_apply, params=critic_params, target_params=critic_target, tx=tx
        ),
    )


def transitions(n: int = 3) -> Experience:
    return Experience(
        observation=jnp.zeros((n, 1)),
        action=jnp.zeros((n, 1)),
        reward=jnp.array([1.0, -1.0, 0.5])[:n],
        done=jnp.array([False, True, False])[:n],
        next_observation=jnp.ones((n, 1)),
    )


def test_td3_target_uses_the_smoothed_target_action_and_the_min_of_target_critics():
    env = make_vec(Target, 1)
    config = td3_config(env, gamma=0.5, target_policy_noise=0.2, target_noise_clip=0.5)
    state = fake_state(config)
    process = td3_module.process_experience_factory(config)
    batch = process(state, jax.random.PRNGKey(0), transitions())
    # Target actor: 2 tanh(10) = 2.0; any noise in [-1, 1] (clip 0.5 * scale 2) keeps it in
    # [1.0, 2.0]. Target critics at a: 1 * a + 0.5 and -a + 1.0; their min is -a + 1.0.
    eps = jax.random.normal(jax.random.PRNGKey(0), (3, 1))
    a = np.clip(2.0 + np.clip(0.4 * np.asarray(eps[:, 0]), -1.0, 1.0), -2.0, 2.0)
    v = np.minimum(a + 0.5, -a + 1.0)
    expected = np.array([1.0, -1.0, 0.5]) + 0.5 * np.array([1.0, 0.0, 1.0]) * v
    np.testing.assert_allclose(np.asarray(batch.target), expected, rtol=1e-5)


def test_ddpg_target_has_no_smoothing_and_one_critic():
    env = make_vec(Target, 1)
    config = td3_config(env, params_type=DDPGParams, gamma=0.5)
    state = fake_state(config)
    state = state.replace(
        critic=state.critic.replace(target_params={"w": jnp.array([2.0]), "b": jnp.array([0.1])})
    )
    batch = td3_module.process_experience_factory(config)(
        state, jax.random.PRNGKey(0), transitions()
    )
    v = 2.0 * 2.0 + 0.1  # target action exactly at the bound 2.0
    np.testing.assert_allclose(
        np.asarray(batch.target), [1.0 + 0.5 * v, -1.0, 0.5 + 0.5 * v], rtol=1e-6
    )


@pytest.mark.parametrize("policy_delay", [1, 2, 3])
def test_actor_and_targets_update_every_policy_delay_critic_steps(policy_delay):
    env = make_vec(Target, 1)
    config = td3_config(env, policy_delay=policy_delay, tau=0.5)
    state = td3_module.train_state_td3_factory(jax.random.PRNGKey(0), config)
    update = jax.jit(td3_module.update_step_factory(config))
    batch = td3_module.TD3Batch(jnp.ones((4, 1)), jnp.full((4, 1), 0.5), jnp.ones(4))
    for step in range(1, 7):
        previous = state
        state, info = update(state, jax.random.PRNGKey(step), batch)
        assert int(state.critic.step) == step
        assert int(state.actor.step) == step // policy_delay
        assert trees_all_differ(state.critic.params, previous.critic.params)
        if step % policy_delay == 0:
            # the actor moved, and both targets are the Polyak mix 0.5 new + 0.5 old
            assert trees_all_differ(state.actor.params, previous.actor.params)
            for name in ("actor", "critic"):
                new, old = getattr(state, name), getattr(previous, name)
                mix = jax.tree.map(lambda p, t: 0.5 * p + 0.5 * t, new.params, old.target_params)
                for x, y in zip(leaves(new.target_params), leaves(mix), strict=True):
                    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
        else:  # the actor and both targets are exactly as they were
            assert_trees_equal(state.actor.params, previous.actor.params)
            assert_trees_equal(state.actor.target_params, previous.actor.target_params)
            assert_trees_equal(state.critic.target_params, previous.critic.target_params)
        assert np.isfinite(float(info["loss_actor"]))


def test_ddpg_params_are_td3s_with_one_critic_no_delay_no_smoothing():
    ddpg, td3 = DDPGParams(), TD3Params()
    differing = {
        f.name: (getattr(td3, f.name), getattr(ddpg, f.name))
        for f in dataclasses.fields(TD3Params)
        if getattr(td3, f.name) != getattr(ddpg, f.name)
    }
    assert differing == {
        "policy_delay": (2, 1),
        "target_policy_noise": (0.2, 0.0),
        "target_noise_clip": (0.5, 0.0),
        "n_critics": (2, 1),
    }
    assert issubclass(DDPG, TD3)


def test_ddpg_update_matches_a_reference_written_with_optax():
    """Two DDPG steps (target, critic step, actor step against the new critic, Polyak targets)
    written with jax.grad and optax.adam on the agent's own networks."""
    env = make_vec(Target, 1)
    config = td3_config(env, params_type=DDPGParams, gamma=0.9, tau=0.1)
    state = td3_module.train_state_td3_factory(jax.random.PRNGKey(0), config)
    # targets that differ from the online networks
    state = state.replace(
        actor=state.actor.replace(
            target_params=jax.tree.map(lambda p: 0.5 * p, state.actor.params)
        ),
        critic=state.critic.replace(
            target_params=jax.tree.map(lambda p: 0.5 * p + 0.01, state.critic.params)
        ),
    )
    assert jax.tree.leaves(state.critic.params)[0].shape[0] == 1  # one critic
    rng = np.random.default_rng(0)
    n = 16
    experience = Experience(
        observation=jnp.asarray(rng.uniform(-1, 1, (n, 1)), jnp.float32),
        action=jnp.asarray(rng.uniform(-2, 2, (n, 1)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        done=jnp.asarray(rng.random(n) < 0.3),
        next_observation=jnp.asarray(rng.uniform(-1, 1, (n, 1)), jnp.float32),
    )
    process = jax.jit(td3_module.process_experience_factory(config))
    update = jax.jit(td3_module.update_step_factory(config))

    actor_apply, critic_apply = state.actor.apply_fn, state.critic.apply_fn
    adam = optax.adam(1e-3)
    obs, actions = experience.observation, experience.action

    def mu(params, observations):  # Target's bounds [-2, 2]
        return 2.0 * jnp.tanh(actor_apply(params, observations))

    @jax.jit
    def reference_step(ref):
        next_q = critic_apply(
            ref["critic_target"],
            experience.next_observation,
            mu(ref["actor_target"], experience.next_observation),
        )[0]
        y = experience.reward + 0.9 * (1.0 - experience.done) * next_q

        def critic_loss(params):
            return jnp.mean((critic_apply(params, obs, actions)[0] - y) ** 2)

        loss_c, grads = jax.value_and_grad(critic_loss)(ref["critic"])
        updates, critic_opt = adam.update(grads, ref["critic_opt"], ref["critic"])
        critic = optax.apply_updates(ref["critic"], updates)

        def actor_loss(params):
            return -jnp.mean(critic_apply(critic, obs, mu(params, obs))[0])

        loss_a, grads = jax.value_and_grad(actor_loss)(ref["actor"])
        updates, actor_opt = adam.update(grads, ref["actor_opt"], ref["actor"])
        actor = optax.apply_updates(ref["actor"], updates)
        polyak = functools.partial(jax.tree.map, lambda p, t: 0.1 * p + 0.9 * t)
        new = {
            "actor": actor,
            "actor_target": polyak(actor, ref["actor_target"]),
            "actor_opt": actor_opt,
            "critic": critic,
            "critic_target": polyak(critic, ref["critic_target"]),
            "critic_opt": critic_opt,
        }
        return new, y, loss_c, loss_a

    ref = {
        "actor": state.actor.params,
        "actor_target": state.actor.target_params,
        "actor_opt": adam.init(state.actor.params),
        "critic": state.critic.params,
        "critic_target": state.critic.target_params,
        "critic_opt": adam.init(state.critic.params),
    }
    for step in range(2):
        key = jax.random.PRNGKey(step)
        batch = process(state, key, experience)
        state, info = update(state, key, batch)
        ref, y, loss_c, loss_a = reference_step(ref)

        np.testing.assert_allclose(batch.target, y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(info["loss_critic"]), float(loss_c), rtol=1e-5)
        np.testing.assert_allclose(float(info["loss_actor"]), float(loss_a), rtol=1e-5)
        pairs = [
            (state.actor.params, ref["actor"]),
            (state.actor.target_params, ref["actor_target"]),
            (state.critic.params, ref["critic"]),
            (state.critic.target_params, ref["critic_target"]),
        ]
        for ours, theirs in pairs:
            for x, y_ in zip(leaves(ours), leaves(theirs), strict=True):
                np.testing.assert_allclose(x, y_, rtol=1e-5, atol=1e-6)


# ---- agent --------------------------------------------------------------------------------------


def test_select_action_is_the_squashed_actor_output_within_the_bounds():
    env = make_vec(Target, 2)
    agent = TD3("td3", td3_config(env))
    obs = np.array([[0.5], [-0.25]], np.float32)
    u = np.asarray(agent.state.actor.apply_fn(agent.state.actor.params, obs))
    actions, log_probs = agent.select_action(obs)
    np.testing.assert_allclose(np.asarray(actions), 2.0 * np.tanh(u), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(log_probs), [0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(agent.select_action(obs)[0]), np.asarray(actions))


def test_explore_is_uniform_before_start_step_then_noisy_around_the_actor():
    env = make_vec(Target, 2)
    agent = TD3("td3", td3_config(env, start_step=100, exploration_noise=0.1))
    obs = np.zeros((2, 1), np.float32)
    warmup = np.concatenate([np.asarray(agent.explore(obs)[0]) for _ in range(200)])
    assert warmup.min() < -1.8 and warmup.max() > 1.8  # uniform over [-2, 2]
    agent.env_steps = 100
    greedy = np.asarray(agent.select_action(obs)[0])
    noisy = np.stack([np.asarray(agent.explore(obs)[0]) for _ in range(200)])
    deviations = (noisy - greedy).ravel()
    assert abs(deviations.std() - 0.1 * 2.0) < 0.03  # noise std 0.1 * scale 2


def test_second_train_call_compiles_nothing(trace_counter):
    env = make_vec(Target, 2)
    agent = TD3("jit", td3_config(env))
    agent.train(env, 200)
    agent.select_action(np.zeros((2, 1), np.float32))
    sizes = (agent.explore_fn._cache_size(), agent.update_fn._cache_size())
    trace_counter.clear()
    agent.train(env, 200)  # crosses start_step: uniform then noisy actions
    agent.select_action(np.zeros((2, 1), np.float32))
    assert trace_counter[TRACE_EVENT] == 0, dict(trace_counter)
    assert (agent.explore_fn._cache_size(), agent.update_fn._cache_size()) == sizes


def test_same_seed_same_params_other_seed_other_params():
    def run(seed):
        env = make_vec(Target, 2)
        agent = TD3("seeded", td3_config(env, seed=seed))
        agent.train(env, 200)
        return agent

    a, b, c = run(3), run(3), run(4)
    assert_trees_equal(a.state, b.state)
    assert trees_all_differ(a.state.actor.params, c.state.actor.params)


@pytest.mark.parametrize(
    "params, match",
    [
        pytest.param({"tau": 0.0}, "algo_params.tau", id="tau-0"),
        pytest.param({"tau": 1.5}, "algo_params.tau", id="tau-above-1"),
        pytest.param({"gamma": 1.5}, "algo_params.gamma", id="gamma"),
        pytest.param({"policy_delay": 0}, "algo_params.policy_delay", id="policy-delay"),
        pytest.param({"n_critics": 0}, "algo_params.n_critics", id="n-critics"),
        pytest.param({"exploration_noise": -0.1}, "algo_params.exploration_noise", id="noise"),
        pytest.param({"target_noise_clip": float("inf")}, "target_noise_clip", id="clip-inf"),
        pytest.param({"skip_steps": 0}, "algo_params.skip_steps", id="skip-steps"),
    ],
)
def test_td3_config_errors(params, match):
    with pytest.raises(ValueError, match=match):
        TD3("bad", td3_config(make_vec(Target, 1), **params))


@pytest.mark.parametrize(
    "space, match",
    [
        pytest.param(gym.spaces.Discrete(2), "1-D gymnasium.spaces.Box", id="discrete"),
        pytest.param(gym.spaces.Box(-np.inf, np.inf, (1,)), "infinite bounds", id="infinite"),
    ],
)
@pytest.mark.parametrize("agent_cls", [TD3, DDPG])
def test_td3_and_ddpg_reject_action_spaces(agent_cls, space, match):
    config = td3_config(make_vec(Target, 1), params_type=agent_cls.params_type)
    config.env_cfg.action_space = space
    with pytest.raises(ValueError, match=match):
        agent_cls("bad", config)


def test_td3_rejects_discrete_env():
    env = make_vec(corridor, 1)
    with pytest.raises(ValueError, match="env_cfg.action_space"):
        TD3("bad", td3_config(env))


# ---- learning -------------------------------------------------------------------------------


def greedy_target_mse(agent) -> float:
    targets = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]
    return float(np.mean((np.asarray(agent.select_action(targets)[0]) - targets) ** 2))


@pytest.mark.parametrize("agent_cls", [TD3, DDPG])
def test_learns_the_continuous_target(agent_cls):
    env = make_vec(Target, 2)
    config = td3_config(env, n_env_steps=1_500, params_type=agent_cls.params_type)
    agent = agent_cls("target", config)
    initial = greedy_target_mse(agent)
    agent.train(env)
    final = greedy_target_mse(agent)
    assert final < 0.01, (initial, final)


def pendulum_transitions(n: int = 256, seed: int = 0) -> Experience:
    """``n`` transitions of gymnasium's Pendulum under uniformly random actions."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(n):
        action = rng.uniform(-2.0, 2.0, (1,)).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward, terminated, next_obs))
        obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    columns = [np.asarray(c) for c in zip(*rows, strict=True)]
    return Experience(
        observation=jnp.asarray(columns[0], jnp.float32),
        action=jnp.asarray(columns[1], jnp.float32),
        reward=jnp.asarray(columns[2], jnp.float32),
        done=jnp.asarray(columns[3]),
        next_observation=jnp.asarray(columns[4], jnp.float32),
    )


@functools.partial(jax.jit, static_argnums=2)
def td_error(state: td3_module.TD3State, experience: Experience, gamma: float) -> jax.Array:
    """Mean squared TD error of the critics against ``r + gamma * min_i Q'_i(s', mu'(s'))``
    (Pendulum's bounds [-2, 2], no smoothing)."""
    actor, critic = state.actor, state.critic
    next_obs = experience.next_observation
    a_next = 2.0 * jnp.tanh(actor.apply_fn(actor.target_params, next_obs))
    next_q = critic.apply_fn(critic.target_params, next_obs, a_next).min(axis=0)
    y = experience.reward + gamma * (1.0 - experience.done) * next_q
    q = critic.apply_fn(critic.params, experience.observation, experience.action)
    return jnp.mean((q - y) ** 2)


def test_compiled_pendulum_training_lowers_the_td_error():
    from kitae.compiled import make_agent_train
    from kitae.envs.jax_env import make_jax_env
    from kitae.modules.optimizer import get_learning_rate

    env = make_jax_env("Pendulum-v1")
    gym_env = gym.make("Pendulum-v1")
    config = td3_config(gym_env, n_env_steps=2_000, start_step=500)
    agent = TD3("compiled", config)
    before = jax.device_get(agent.state)
    summary = agent.train(env, 2_000)
    assert summary["n_updates"] == 2_000 - 500 + 1
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(agent.state)))
    # The critics fit their TD targets on Pendulum data they never saw: random-action
    # transitions of gymnasium's Pendulum.
    data = pendulum_transitions()
    error_before = float(td_error(before, data, 0.9))
    error_after = float(td_error(agent.state, data, 0.9))
    assert error_after < 0.2 * error_before, (error_before, error_after)
    # Learning-rate injection reaches the actor's and the critic's optimizers.
    runner = make_agent_train(agent, env, 1_000).init(jax.random.PRNGKey(0), {"learning_rate": 0.5})
    for name in ("actor", "critic"):
        lr = get_learning_rate(getattr(runner.agent_state, name).opt_state)
        assert float(lr) == 0.5
