"""Tests for action masking (kitae.masking) in every agent that acts in Discrete spaces: explore,
greedy acting, bootstrap targets, policy losses and the search never choose an invalid action.

The gymnasium env :class:`envs.MaskedChoice` raises on an invalid action; its JAX twin
:class:`JaxMaskedChoice` never ends an episode and counts invalid actions in its state, so the
count is still there after a compiled run.
"""

from __future__ import annotations

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import MASKED_ACTIONS, MaskedChoice, make_vec
from flax import struct
from gymnax.environments import environment
from gymnax.environments import spaces as gymnax_spaces
from helpers import small_config

import kitae.masking as masking
from kitae.algos import c51, dqn, iqn, ppo, qrdqn, sac
from kitae.algos.c51 import C51, C51Params
from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.iqn import IQN, IQNParams
from kitae.algos.ppo import PPO, PPOParams
from kitae.algos.qrdqn import QRDQN, QRDQNParams
from kitae.algos.r2d2 import R2D2, R2D2Params
from kitae.algos.sac import SAC, SACParams
from kitae.buffer import Experience
from kitae.compiled import make_agent_train
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
from kitae.masking import MASKED_VALUE, ActionMaskObservation
from kitae.modules.train_state import TrainState

Q_LEARNING = {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4}
OFF_POLICY_UPDATE = {"learning_rate": 1e-3, "max_buffer_size": 128, "batch_size": 8, "n_epochs": 1}
ON_POLICY_UPDATE = {"learning_rate": 1e-3, "max_buffer_size": 16, "batch_size": 8, "n_epochs": 1}
SMALL = {
    DQNParams: Q_LEARNING,
    C51Params: {**Q_LEARNING, "n_atoms": 5, "v_min": -1.0, "v_max": 1.0},
    QRDQNParams: {**Q_LEARNING, "n_quantiles": 4},
    IQNParams: {
        **Q_LEARNING,
        "n_tau_samples": 4,
        "n_tau_prime_samples": 4,
        "n_quantile_samples": 4,
        "n_cosines": 8,
    },
}


def masked_env(n_envs: int = 2, mask_in: str = "observation"):
    if mask_in == "wrapped":
        return make_vec(lambda: ActionMaskObservation(MaskedChoice("info")), n_envs)
    return make_vec(lambda: MaskedChoice(mask_in), n_envs)


def masked_observations(n: int, seed: int = 0, single: bool = False) -> dict[str, np.ndarray]:
    """``n`` MaskedChoice observations with random masks (one valid action each when
    ``single``), each with at least one valid action and at least one invalid one."""
    rng = np.random.default_rng(seed)
    if single:
        mask = np.eye(MASKED_ACTIONS, dtype=np.int8)[rng.integers(MASKED_ACTIONS, size=n)]
    else:
        mask = np.zeros((n, MASKED_ACTIONS), np.int8)
        for row in mask:
            k = rng.integers(1, MASKED_ACTIONS)
            row[rng.choice(MASKED_ACTIONS, k, replace=False)] = 1
    return {"observation": mask.astype(np.float32), "action_mask": mask}


def assert_valid(actions, mask) -> None:
    actions = np.asarray(actions)
    chosen = np.take_along_axis(np.asarray(mask), actions.reshape(len(mask), -1)[:, :1], -1)
    assert chosen.all(), f"invalid actions {actions[~chosen[:, 0]]}"


# ---- the mechanism, by hand ---------------------------------------------------------------------


def test_apply_mask_gives_invalid_actions_the_masked_value():
    values = jnp.array([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    mask = jnp.array([[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(
        masking.apply_mask(values, mask),
        [[1.0, MASKED_VALUE, -2.0], [MASKED_VALUE, MASKED_VALUE, 3.0]],
    )
    np.testing.assert_array_equal(masking.masked_argmax(values, mask), [0, 2])
    assert masking.apply_mask(values, None) is values
    with pytest.raises(ValueError, match="one entry per action"):
        masking.apply_mask(values, mask[:, :2])


@pytest.mark.parametrize("epsilon", [0.0, 1.0, 0.5], ids=["greedy", "uniform", "mixed"])
def test_epsilon_greedy_draws_only_valid_actions_with_the_right_probabilities(epsilon):
    # The unmasked argmax (action 3) is invalid; the best valid one is action 1.
    n = 4000
    q = jnp.broadcast_to(jnp.array([0.0, 2.0, 1.0, 9.0]), (n, 4))
    mask = jnp.broadcast_to(jnp.array([True, True, True, False]), (n, 4))
    actions, log_probs = jax.jit(masking.epsilon_greedy)(jax.random.PRNGKey(0), q, epsilon, mask)
    assert actions.dtype == jnp.int32 and actions.shape == (n,)
    assert not np.any(np.asarray(actions) == 3)
    # pi(1) = 1 - eps + eps / 3, pi(0) = pi(2) = eps / 3
    expected = np.array([epsilon / 3, 1 - epsilon + epsilon / 3, epsilon / 3, 0.0])
    freq = np.bincount(np.asarray(actions), minlength=4) / n
    np.testing.assert_allclose(freq, expected, atol=0.03)
    np.testing.assert_allclose(
        np.asarray(log_probs), np.log(expected[np.asarray(actions)]), rtol=1e-5
    )


# ---- explore and greedy acting in the agents ----------------------------------------------------


@pytest.mark.parametrize("params_type", [DQNParams, C51Params, QRDQNParams, IQNParams])
def test_q_learning_explore_and_greedy_pick_only_valid_actions(params_type):
    env = masked_env()
    cfg = small_config(params_type, env, params=SMALL[params_type], update=OFF_POLICY_UPDATE)
    agent = {DQNParams: DQN, C51Params: C51, QRDQNParams: QRDQN, IQNParams: IQN}[params_type](
        "m", cfg
    )
    obs = masked_observations(256, single=True)
    for epsilon in (1.0, 0.0):
        actions, _ = agent.explore_fn(agent.acting_state, jax.random.PRNGKey(1), obs, epsilon)
        assert_valid(actions, obs["action_mask"])
    actions, _ = agent.select_action(obs)
    assert_valid(actions, obs["action_mask"])


def test_r2d2_explore_picks_only_valid_actions():
    env = masked_env()
    params = {"hidden_sizes": (8,), "core_size": 4, "sequence_length": 4, "burn_in": 1}
    params = {**params, "start_step": -1, "skip_steps": 2}
    agent = R2D2("m", small_config(R2D2Params, env, params=params, update=OFF_POLICY_UPDATE))
    obs = masked_observations(256, single=True)
    core = agent.init_actor_state(256)
    for epsilon in (1.0, 0.0):
        actions, _, _ = agent.explore_fn(
            agent.acting_state, jax.random.PRNGKey(1), obs, core, epsilon
        )
        assert_valid(actions, obs["action_mask"])


def test_dqn_greedy_takes_the_best_valid_q_value():
    env = masked_env()
    agent = DQN("m", small_config(DQNParams, env, params=Q_LEARNING, update=OFF_POLICY_UPDATE))
    obs = masked_observations(64)
    q = np.asarray(agent.state.apply_fn(agent.state.params, obs))
    expected = np.argmax(np.where(obs["action_mask"] > 0, q, -np.inf), axis=-1)
    actions, _ = agent.select_action(obs)
    np.testing.assert_array_equal(actions, expected)


# ---- bootstrap targets --------------------------------------------------------------------------


def table_state(online: np.ndarray, target: np.ndarray) -> TrainState:
    """A Q "network" that reads row ``argmax(observation)`` of a table."""

    def apply_fn(params, observations):
        return observations["observation"] @ params["table"]

    return TrainState.create(
        apply_fn=apply_fn,
        params={"table": jnp.asarray(online)},
        target_params={"table": jnp.asarray(target)},
        tx=optax.sgd(0.0),
    )


@pytest.mark.parametrize("double_q", [False, True], ids=["max", "double"])
def test_dqn_targets_bootstrap_from_the_best_valid_next_action_by_hand(double_q):
    env = masked_env()
    cfg = small_config(
        DQNParams,
        env,
        params={**Q_LEARNING, "gamma": 0.9, "double_q": double_q},
        update=OFF_POLICY_UPDATE,
    )
    # next state 0 allows actions {0, 1}; next state 1 allows {2, 3}. The unmasked maxima of
    # both tables sit on invalid actions.
    target = np.array([[1.0, 2.0, 10.0, 3.0], [7.0, 8.0, 4.0, 5.0], [0, 0, 0, 0], [0, 0, 0, 0]])
    online = np.array([[5.0, 1.0, 9.0, 0.0], [9.0, 0.0, 1.0, 3.0], [0, 0, 0, 0], [0, 0, 0, 0]])
    next_obs = {
        "observation": np.eye(4, dtype=np.float32)[[0, 1]],
        "action_mask": np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.int8),
    }
    experience = Experience(
        observation=next_obs,
        action=np.array([0, 2]),
        reward=np.array([0.5, -1.0], np.float32),
        done=np.array([False, False]),
        next_observation=next_obs,
    )
    batch = dqn.process_experience_factory(cfg)(
        table_state(online, target), jax.random.PRNGKey(0), experience
    )
    # max: best valid target values 2 and 5; double: online picks 0 and 3, target gives 1 and 5.
    expected = [0.5 + 0.9 * 1.0, -1.0 + 0.9 * 5.0] if double_q else [2.3, -1.0 + 0.9 * 5.0]
    np.testing.assert_allclose(batch.target, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "module,params_type,agent_type",
    [(c51, C51Params, C51), (qrdqn, QRDQNParams, QRDQN), (iqn, IQNParams, IQN)],
    ids=["c51", "qrdqn", "iqn"],
)
def test_distributional_targets_use_the_only_valid_next_action(module, params_type, agent_type):
    env = masked_env()
    params = {**SMALL[params_type], "double_q": False}
    cfg = small_config(params_type, env, params=params, update=OFF_POLICY_UPDATE)
    agent = agent_type("m", cfg)
    n = 64
    next_obs = masked_observations(n, seed=3, single=True)
    valid = np.argmax(next_obs["action_mask"], axis=-1)
    experience = Experience(
        observation=next_obs,
        action=np.zeros(n, np.int32),
        reward=np.zeros(n, np.float32),
        done=np.zeros(n, bool),
        next_observation=next_obs,
    )
    key = jax.random.PRNGKey(2)
    state = agent.state
    batch = module.process_experience_factory(cfg)(state, key, experience)
    rows = np.arange(n)
    if module is c51:
        logits = state.apply_fn(state.target_params, next_obs)
        expected = jax.nn.softmax(np.asarray(logits)[rows, valid], axis=-1)
        np.testing.assert_allclose(batch.target_probs, expected, rtol=1e-5)
    elif module is qrdqn:
        quantiles = np.asarray(state.apply_fn(state.target_params, next_obs))
        np.testing.assert_allclose(batch.target_quantiles, quantiles[rows, valid], rtol=1e-5)
    else:
        _, k_target = jax.random.split(key)
        taus = jax.random.uniform(k_target, (n, params["n_tau_prime_samples"]))
        quantiles = np.asarray(state.apply_fn(state.target_params, next_obs, taus))
        np.testing.assert_allclose(batch.target_quantiles, quantiles[rows, valid], rtol=1e-5)


# ---- policies: PPO and discrete SAC -------------------------------------------------------------


def test_ppo_samples_only_valid_actions_with_masked_log_probs():
    env = masked_env()
    agent = PPO(
        "m", small_config(PPOParams, env, params={"hidden_sizes": (8,)}, update=ON_POLICY_UPDATE)
    )
    obs = masked_observations(2000)
    actions, log_probs = agent.explore(obs)
    assert_valid(actions, obs["action_mask"])
    logits, _ = agent.state.apply_fn(agent.state.params, obs)
    masked = np.where(obs["action_mask"] > 0, np.asarray(logits, np.float64), -np.inf)
    log_pi = masked - np.log(np.exp(masked).sum(-1, keepdims=True))
    np.testing.assert_allclose(log_probs, log_pi[np.arange(2000), actions], atol=1e-5)
    greedy, _ = agent.select_action(obs)
    np.testing.assert_array_equal(greedy, np.argmax(masked, axis=-1))


def test_ppo_loss_uses_the_masked_policy():
    # At initialisation the logits are nearly equal, so the masked policy's entropy is about
    # mean(log n_valid), well below log 4 for the unmasked one.
    env = masked_env()
    cfg = small_config(PPOParams, env, params={"hidden_sizes": (8,)}, update=ON_POLICY_UPDATE)
    state = ppo.train_state_ppo_factory(jax.random.PRNGKey(0), cfg)
    n = 8
    obs = masked_observations(n, seed=5)
    batch = ppo.PPOBatch(
        observation=obs,
        action=np.argmax(obs["action_mask"], axis=-1),
        log_prob=np.zeros(n, np.float32),
        value=np.zeros(n, np.float32),
        advantage=np.zeros(n, np.float32),
        target=np.zeros(n, np.float32),
    )
    _, info = jax.jit(ppo.update_step_factory(cfg))(state, jax.random.PRNGKey(1), batch)
    expected = np.mean(np.log(obs["action_mask"].sum(-1)))
    np.testing.assert_allclose(info["entropy"], expected, atol=1e-3)
    assert np.isfinite(info["loss"])


@pytest.mark.parametrize("double_q", [False, True], ids=["max", "double"])
def test_r2d2_targets_bootstrap_from_the_best_valid_next_action_by_hand(double_q):
    from kitae.algos.r2d2 import R2D2Batch, r2d2_sequence_losses
    from kitae.modules.recurrent import RecurrentOutput

    # One window of 2 steps (no burn-in), 1-step targets, gamma 0.5, rewards 1 and 0.
    # Next-state Q-values (online and target alike): action 3 is worth 10 but only actions 0 and
    # 1 (worth 2 and 4) are valid after step 0; after step 1 only action 3 is valid.
    q_next = jnp.array([[[2.0, 4.0, 0.0, 10.0]], [[2.0, 4.0, 0.0, 10.0]]])  # [T=2, B=1, A=4]
    masks = np.array([[[1, 1, 0, 0], [0, 0, 0, 1]]], np.float32)  # [B, T, A]

    def apply_fn(params, observations, resets, state, next_observations=None):
        q = jnp.zeros(q_next.shape)  # the taken actions' values, so td_error == target
        return RecurrentOutput(q, jnp.zeros((2, 1, 3)), q_next)

    batch = R2D2Batch(
        observation={"observation": np.zeros((1, 2, 4), np.float32), "action_mask": masks},
        action=np.zeros((1, 2), np.int32),
        reward=np.array([[1.0, 0.0]], np.float32),
        terminated=np.zeros((1, 2), bool),
        truncated=np.zeros((1, 2), bool),
        next_observation={"observation": np.zeros((1, 2, 4), np.float32), "action_mask": masks},
        core_state=np.zeros((1, 3), np.float32),
        weight=np.ones(1, np.float32),
    )
    params = R2D2Params(burn_in=0, sequence_length=2, n_step=1, gamma=0.5, double_q=double_q)
    out = r2d2_sequence_losses(apply_fn, {}, {}, batch, params)
    np.testing.assert_allclose(out.td_error[:, 0], [1.0 + 0.5 * 4.0, 0.0 + 0.5 * 10.0])


def test_discrete_sac_explores_acts_and_bootstraps_among_valid_actions():
    env = masked_env()
    params = {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4}
    agent = SAC("m", small_config(SACParams, env, params=params, update=OFF_POLICY_UPDATE))
    obs = masked_observations(1000)
    for greedy, uniform in ((False, False), (False, True), (True, False)):
        actions, log_probs = agent.explore_fn(
            agent.acting_state, jax.random.PRNGKey(3), obs, greedy, uniform
        )
        assert_valid(actions, obs["action_mask"])
        assert np.all(np.isfinite(log_probs))
    _, log_probs = agent.explore_fn(agent.acting_state, jax.random.PRNGKey(3), obs, False, True)
    np.testing.assert_allclose(log_probs, -np.log(obs["action_mask"].sum(-1)), rtol=1e-5)
    # The soft value of a next state with one valid action is that action's min-Q: the policy
    # puts all its mass there and its entropy is 0.
    single = masked_observations(16, seed=4, single=True)
    experience = Experience(
        observation=single,
        action=np.zeros(16, np.int32),
        reward=np.zeros(16, np.float32),
        done=np.zeros(16, bool),
        next_observation=single,
    )
    cfg = agent.config
    batch = sac.process_experience_factory(cfg)(agent.state, jax.random.PRNGKey(0), experience)
    critic = agent.state.critic
    q = np.asarray(critic.apply_fn(critic.target_params, single)).min(axis=0)
    valid = np.argmax(single["action_mask"], axis=-1)
    gamma = cfg.algo_params.gamma
    np.testing.assert_allclose(batch.target, gamma * q[np.arange(16), valid], rtol=1e-5)


# ---- both training paths ------------------------------------------------------------------------

AGENTS = {
    "dqn": (DQN, DQNParams, Q_LEARNING, OFF_POLICY_UPDATE),
    "ppo": (PPO, PPOParams, {"hidden_sizes": (8,)}, ON_POLICY_UPDATE),
}


@pytest.mark.parametrize("mask_in", ["observation", "wrapped"])
@pytest.mark.parametrize("name", list(AGENTS))
def test_gymnasium_loop_trains_without_an_invalid_action(name, mask_in):
    # MaskedChoice raises on an invalid action.
    env = masked_env(2, mask_in)
    agent_type, params_type, params, update = AGENTS[name]
    agent = agent_type("m", small_config(params_type, env, params=params, update=update))
    summary = agent.train(env, 64)
    assert summary["n_updates"] > 0
    if name == "dqn":
        # Every stored next observation carries its own mask (MaskedChoice's vector is the mask).
        data = agent.buffer_state.data
        size = int(agent.buffer_state.size.min())
        for field in (data.observation, data.next_observation):
            np.testing.assert_array_equal(
                np.asarray(field["action_mask"])[:size], np.asarray(field["observation"])[:size]
            )


@struct.dataclass
class MaskState(environment.EnvState):
    mask: jax.Array
    n_invalid: jax.Array


@struct.dataclass
class MaskParams(environment.EnvParams):
    max_steps_in_episode: int = 1_000_000_000


def draw_mask(key: jax.Array) -> jax.Array:
    k_mask, k_one = jax.random.split(key)
    mask = jax.random.bernoulli(k_mask, 0.5, (MASKED_ACTIONS,))
    one = jax.nn.one_hot(jax.random.randint(k_one, (), 0, MASKED_ACTIONS), MASKED_ACTIONS) > 0
    return jnp.where(mask.any(), mask, one)


class JaxMaskedChoice(environment.Environment):
    """:class:`envs.MaskedChoice` in JAX, without episode ends; ``state.n_invalid`` counts the
    invalid actions taken."""

    @property
    def default_params(self) -> MaskParams:
        return MaskParams()

    def get_obs(self, state, params=None, key=None):
        vector = state.mask.astype(jnp.float32)
        return {"observation": vector, "action_mask": vector}

    def reset_env(self, key, params):
        state = MaskState(time=jnp.int32(0), mask=draw_mask(key), n_invalid=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        valid = state.mask[action]
        best = MASKED_ACTIONS - 1 - jnp.argmax(state.mask[::-1])
        reward = jnp.where(valid & (action == best), 1.0, 0.0)
        state = MaskState(
            time=state.time + 1,
            mask=draw_mask(key),
            n_invalid=state.n_invalid + (~valid).astype(jnp.int32),
        )
        return self.get_obs(state), state, reward, jnp.bool_(False), {}

    def observation_space(self, params):
        box = gymnax_spaces.Box(0.0, 1.0, (MASKED_ACTIONS,), jnp.float32)
        return gymnax_spaces.Dict({"observation": box, "action_mask": box})

    def action_space(self, params=None):
        return gymnax_spaces.Discrete(MASKED_ACTIONS)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AGENTS))
def test_compiled_path_trains_without_an_invalid_action(name):
    env = JaxMaskedChoice()
    agent_type, params_type, params, update = AGENTS[name]
    cfg = AlgoConfig(
        seed=0,
        algo_params=params_type(**params),
        update_cfg=UpdateConfig(**update),
        train_cfg=TrainConfig(n_env_steps=256, progress_bar=False),
        env_cfg=EnvConfig(
            observation_space=gymnasium.spaces.Dict(
                {
                    "observation": gymnasium.spaces.Box(0.0, 1.0, (4,), np.float32),
                    "action_mask": gymnasium.spaces.Box(0.0, 1.0, (4,), np.float32),
                }
            ),
            action_space=gymnasium.spaces.Discrete(MASKED_ACTIONS),
            n_envs=4,
            task_name="masked-choice",
        ),
    )
    agent = agent_type("m", cfg)
    runner, metrics = jax.jit(make_agent_train(agent, env, 256))(jax.random.PRNGKey(0))
    assert int(np.sum(metrics.n_updates)) > 0
    assert int(runner.env_steps) == 256
    np.testing.assert_array_equal(runner.env_state.n_invalid, 0)


# ---- the search ---------------------------------------------------------------------------------


def masked_choice_search(n_roots: int, num_simulations: int, kind: str):
    """Roots of :class:`JaxMaskedChoice` and ``search(key, greedy)`` from them, jitted, with a
    network whose prior favours action 3 (often invalid) as strongly as possible."""
    pytest.importorskip("mctx")
    from kitae.planning.search import SearchParams, planning_env, run_search

    def predict_fn(net_params, observations):
        batch = observations["action_mask"].shape[0]
        return jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 20.0]), (batch, 4)), jnp.zeros(batch)

    env = planning_env(JaxMaskedChoice())
    roots, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), n_roots))
    params = SearchParams(num_simulations=num_simulations, gamma=0.9, kind=kind)
    search = jax.jit(
        lambda key, greedy: run_search(env, predict_fn, params, None, key, roots, greedy)
    )
    return roots, search


@pytest.mark.slow
def test_search_never_picks_an_invalid_action():
    for kind in ("puct", "gumbel"):
        roots, search = masked_choice_search(16, 2, kind)
        mask = np.asarray(roots.observation["action_mask"]) > 0
        assert not mask[:, 3].all()
        for greedy in (False, True):
            output = search(jax.random.PRNGKey(1), greedy)
            assert_valid(output.action, mask)
            weights = np.asarray(output.action_weights)
            assert np.all(weights[~mask] == 0.0)


@pytest.mark.slow
def test_the_gumbel_search_never_expands_an_invalid_action_below_the_root():
    _, search = masked_choice_search(8, 24, "gumbel")
    tree = search(jax.random.PRNGKey(1), False).search_tree
    assert (np.asarray(tree.parents) > 0).any()  # the search went below the root
    # every visited node was reached through valid actions only: no env state counts one
    n_invalid = np.asarray(tree.embeddings.env_state.n_invalid)
    visited = np.asarray(tree.node_visits) > 0
    assert np.all(n_invalid[visited] == 0)


# ---- clear errors -------------------------------------------------------------------------------


def test_a_mask_whose_shape_does_not_match_the_actions_is_rejected():
    space = gymnasium.spaces.Dict(
        {
            "observation": gymnasium.spaces.Box(0.0, 1.0, (4,), np.float32),
            "action_mask": gymnasium.spaces.Box(0, 1, (3,), np.int8),
        }
    )
    env_cfg = EnvConfig(
        observation_space=space,
        action_space=gymnasium.spaces.Discrete(4),
        n_envs=1,
        task_name="masked",
    )
    cfg = AlgoConfig(
        seed=0,
        train_cfg=TrainConfig(progress_bar=False),
        algo_params=DQNParams(**Q_LEARNING),
        update_cfg=UpdateConfig(**OFF_POLICY_UPDATE),
        env_cfg=env_cfg,
    )
    with pytest.raises(ValueError, match=r"action_mask.*shape \(3,\).*needs shape \(4,\)"):
        DQN("m", cfg)


def test_a_mask_on_a_continuous_action_space_is_rejected():
    space = gymnasium.spaces.Dict(
        {
            "observation": gymnasium.spaces.Box(0.0, 1.0, (4,), np.float32),
            "action_mask": gymnasium.spaces.Box(0, 1, (2,), np.int8),
        }
    )
    env_cfg = EnvConfig(
        observation_space=space,
        action_space=gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
        n_envs=1,
        task_name="masked",
    )
    cfg = AlgoConfig(
        seed=0,
        train_cfg=TrainConfig(progress_bar=False),
        algo_params=PPOParams(),
        update_cfg=UpdateConfig(**ON_POLICY_UPDATE),
        env_cfg=env_cfg,
    )
    with pytest.raises(ValueError, match="env_cfg.action_space=Box.*Discrete actions only"):
        PPO("m", cfg)
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        ActionMaskObservation(gymnasium.make("Pendulum-v1"))


def test_an_info_mask_the_observations_do_not_carry_is_rejected_before_training():
    env = masked_env(2, "info")
    agent = DQN("m", small_config(DQNParams, env, params=Q_LEARNING, update=OFF_POLICY_UPDATE))
    with pytest.raises(ValueError, match="ActionMaskObservation"):
        agent.train(env, 64)
    assert agent.env_steps == 0


def test_masked_value_keeps_entropy_and_expectations_finite():
    logits = masking.apply_mask(jnp.zeros((1, 4)), jnp.array([[True, True, False, False]]))
    log_pi = jax.nn.log_softmax(logits)
    pi = jnp.exp(log_pi)
    np.testing.assert_allclose(pi, [[0.5, 0.5, 0.0, 0.0]])
    assert float(jnp.sum(pi * log_pi)) == pytest.approx(-math.log(2), rel=1e-6)
