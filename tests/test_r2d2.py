"""Tests for R2D2 (kitae.algos.r2d2) and its recurrent Q-network (kitae.modules.recurrent):
core resets at episode starts, stored start states, burn-in, sequence targets, priorities,
both execution paths, checkpoints and small learning runs."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import Counting, make_vec
from helpers import TRACE_EVENT, assert_trees_equal, trees_equal

from kitae.algos.r2d2 import (
    R2D2,
    R2D2Batch,
    R2D2Params,
    build_recurrent_q_network,
    explore_factory,
    process_experience_factory,
    r2d2_sequence_losses,
    sequence_targets,
    train_state_r2d2_factory,
    update_step_factory,
)
from kitae.compiled import (
    config_for_jax_env,
    make_agent_train,
    make_train,
    train_agent_compiled,
)
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
from kitae.envs.jax_env import make_jax_env
from kitae.evaluation import evaluate, evaluate_jax
from kitae.modules.recurrent import recurrent_qvalue_factory

SMALL_UPDATE = UpdateConfig(
    learning_rate=1e-3,
    learning_rate_annealing=False,
    max_grad_norm=10.0,
    max_buffer_size=512,
    batch_size=8,
    n_epochs=1,
)
SMALL = {
    "hidden_sizes": (16,),
    "core_size": 8,
    "sequence_length": 6,
    "burn_in": 2,
    "start_step": -1,
    "skip_steps": 2,
    "exploration_fraction": 0.5,
}


class Recall(gym.Env):
    """A cue ``+-1`` shown at step 0 only, then ``delay`` blank steps; at the last step (flagged
    in the observation) the action must name the cue: reward ``+1``, else ``-1``. A feed-forward
    agent cannot beat 0 on average; a recurrent one can reach 1."""

    def __init__(self, delay: int = 3):
        self.delay = delay
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.cue, self.t = 0, 0

    def _obs(self) -> np.ndarray:
        cue = 2.0 * self.cue - 1.0 if self.t == 0 else 0.0
        return np.array([cue, float(self.t == self.delay)], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def step(self, action):
        if self.t == self.delay:
            self.t += 1
            return self._obs(), 1.0 if int(action) == self.cue else -1.0, True, False, {}
        self.t += 1
        return self._obs(), 0.0, False, False, {}


if "KitaeRecall-v0" not in gym.registry:
    gym.register("KitaeRecall-v0", entry_point=Recall)


class RenderedRecall(Recall):
    """:class:`Recall` that renders blank ``rgb_array`` frames and logs every action it gets in
    :attr:`actions` (shared by all instances)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    actions: list[int] = []

    def __init__(self, render_mode: str | None = None, delay: int = 3):
        super().__init__(delay)
        self.render_mode = render_mode

    def render(self) -> np.ndarray:
        return np.zeros((16, 16, 3), np.uint8)

    def step(self, action):
        RenderedRecall.actions.append(int(action))
        return super().step(action)


if "KitaeRenderedRecall-v0" not in gym.registry:
    gym.register("KitaeRenderedRecall-v0", entry_point=RenderedRecall)


def make_config(env, *, n_env_steps=1_000, update=SMALL_UPDATE, **params) -> AlgoConfig:
    return AlgoConfig(
        seed=0,
        algo_params=R2D2Params(**{**SMALL, **params}),
        update_cfg=update,
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig.from_env(env),
    )


def network(cell: str = "lstm", dueling: bool = False):
    return recurrent_qvalue_factory(
        gym.spaces.Box(-1.0, 1.0, (3,)),
        gym.spaces.Discrete(2),
        hidden_sizes=(8,),
        core_size=4,
        cell=cell,
        dueling=dueling,
    )


def unroll_states(agent: R2D2, observations: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The core state before each step of one env's stream ``observations [T, ...]``, zero
    where ``first[t]`` (an episode starts), recomputed from scratch with the agent's params."""
    net = build_recurrent_q_network(agent.config)

    def step(state, inputs):
        observation, reset = inputs
        state = jnp.where(reset, jnp.zeros_like(state), state)
        out = net.apply(agent.state.params, observation[None, None], jnp.zeros((1, 1), bool), state)
        return out.states[0], state[0]

    inputs = (jnp.asarray(observations), jnp.asarray(first))
    _, states = jax.jit(lambda i: jax.lax.scan(step, net.initial_state(1), i))(inputs)
    return np.asarray(states)


# ---- params ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("burn_in", 6),
        ("burn_in", -1),
        ("sequence_length", 1),
        ("sequence_length", 10_000),
        ("cell", "rnn"),
        ("target", "retrace"),
        ("td_lambda", 1.5),
        ("priority_mix", -0.1),
        ("core_size", 0),
    ],
    ids=lambda v: str(v),
)
def test_invalid_params_raise_naming_the_field(field, value):
    env = make_vec(lambda: Recall(), 2)
    with pytest.raises(ValueError, match=f"algo_params.{field}"):
        R2D2("bad", make_config(env, **{field: value}))


# ---- the recurrent network ---------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_core_state_resets_at_episode_starts(cell):
    net = network(cell, dueling=True)
    key = jax.random.PRNGKey(0)
    obs = jax.random.normal(key, (7, 3, 3))
    resets = jnp.zeros((7, 3), bool).at[4, 1].set(True)
    start = jax.random.normal(jax.random.PRNGKey(1), (3, net.state_size))
    params = net.init(key, obs, resets, start, obs)

    out = net.apply(params, obs, resets, start)
    fresh = net.apply(params, obs[4:, 1:2], jnp.zeros((3, 1), bool), net.initial_state(1))
    # env 1 from step 4 on behaves as a fresh episode; the others keep their history
    np.testing.assert_allclose(out.q[4:, 1], fresh.q[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.states[4:, 1], fresh.states[:, 0], rtol=1e-6, atol=1e-6)
    no_reset = net.apply(params, obs, jnp.zeros_like(resets), start)
    assert not np.allclose(no_reset.q[4:, 1], out.q[4:, 1])
    np.testing.assert_allclose(no_reset.q[:, 0], out.q[:, 0])


def test_bootstrap_q_values_continue_the_unroll():
    net = network("lstm")
    key = jax.random.PRNGKey(2)
    obs = jax.random.normal(key, (6, 2, 3))
    resets = jnp.zeros((6, 2), bool)
    params = net.init(key, obs, resets, net.initial_state(2), obs)
    # with next observation t == observation t + 1 and no reset, q_next[t] == q[t + 1]
    out = net.apply(params, obs[:-1], resets[:-1], net.initial_state(2), obs[1:])
    whole = net.apply(params, obs, resets, net.initial_state(2))
    np.testing.assert_allclose(out.q_next, whole.q[1:], rtol=1e-5, atol=1e-6)


# ---- acting: core state carried, reset and stored ----------------------------------------------


def collect(agent: R2D2, env: gym.vector.VectorEnv, n_steps: int):
    """Drives the agent's acting and storage like the training loop, without updates."""
    obs, _ = env.reset(seed=0)
    agent.on_env_reset()
    for _ in range(n_steps):
        actions, log_probs = agent.explore(obs)
        actions = np.asarray(actions)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        agent.store_transition(
            agent.experience_type(
                observation=obs,
                action=actions,
                reward=rewards,
                done=terminated,
                next_observation=next_obs,
                log_prob=np.asarray(log_probs),
                truncated=truncated,
            )
        )
        obs = next_obs
    agent.flush()


def test_gymnasium_acting_stores_the_core_state_before_each_step_reset_at_episode_starts():
    env = make_vec([lambda: Counting(4), lambda: Counting(3)])
    agent = R2D2("store", make_config(env))
    collect(agent, env, 20)
    data = jax.device_get(agent.buffer_state.data)
    for e in range(2):
        observations = data.observation[:20, e]
        first = observations[:, 1] == 0  # Counting's step index
        stored = data.actor_state[:20, e]
        assert first.sum() >= 5
        np.testing.assert_array_equal(stored[first], 0.0)
        assert np.abs(stored[~first]).sum(axis=-1).mean() > 0
        np.testing.assert_allclose(stored, unroll_states(agent, observations, first), atol=1e-5)


def test_sequence_buffer_returns_the_stored_start_states():
    env = make_vec([lambda: Counting(4), lambda: Counting(5)])
    agent = R2D2("windows", make_config(env, sequence_length=5, burn_in=1))
    collect(agent, env, 30)
    buffer, state = agent.replay_buffer, agent.buffer_state
    slots, envs = buffer.sample_indices(state, jax.random.PRNGKey(3), 16, 5)
    windows = buffer.gather(state, slots, envs, 5)
    batch = agent.process_experience_fn(agent.state, jax.random.PRNGKey(0), windows)
    assert isinstance(batch, R2D2Batch) and batch.core_state.shape == (16, 16)
    data = jax.device_get(state.data)
    for b in range(16):
        s, e = int(slots[b]), int(envs[b])
        np.testing.assert_array_equal(batch.core_state[b], data.actor_state[s, e])
        np.testing.assert_array_equal(batch.observation[b, 0], data.observation[s, e])
        observations = data.observation[:30, e]
        expected = unroll_states(agent, observations, observations[:, 1] == 0)[s]
        np.testing.assert_allclose(batch.core_state[b], expected, atol=1e-5)


def test_explore_compiles_once_and_evaluation_keeps_the_training_core_state(trace_counter):
    env = make_vec(lambda: Recall(), 2)
    agent = R2D2("eval", make_config(env))
    obs, _ = env.reset(seed=0)
    agent.explore(obs)
    before = trace_counter[TRACE_EVENT]
    agent.explore(obs)
    assert trace_counter[TRACE_EVENT] == before
    core = agent.core_state.copy()
    evaluate(agent, "KitaeRecall-v0", 3)
    np.testing.assert_array_equal(agent.core_state, core)
    agent.reset_actor_state(np.array([True, False]))
    np.testing.assert_array_equal(agent.core_state[0], 0.0)
    np.testing.assert_array_equal(agent.core_state[1], core[1])


def spy_core_states(agent: R2D2) -> list[np.ndarray]:
    """Makes ``agent.explore_fn`` log the core state of every call in the returned list."""
    cores: list[np.ndarray] = []
    explore_fn = agent.explore_fn

    def spy(state, key, observations, core_state, exploration):
        cores.append(np.array(core_state))
        return explore_fn(state, key, observations, core_state, exploration)

    agent.explore_fn = spy
    return cores


def test_record_video_acts_every_episode_from_a_fresh_core_state(tmp_path):
    pytest.importorskip("moviepy")
    from kitae.evaluation import record_video

    env = make_vec(lambda: Recall(), 1)
    agent = R2D2("video", make_config(env))
    agent.explore(env.reset(seed=0)[0])  # a training core state that must stay untouched
    training_core = agent.core_state.copy()
    assert np.abs(training_core).sum() > 0
    cores = spy_core_states(agent)
    RenderedRecall.actions.clear()
    videos = record_video(agent, "KitaeRenderedRecall-v0", tmp_path, n_episodes=2, seed=7)
    assert [v.name for v in videos] == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    recorded, recorded_cores = list(RenderedRecall.actions), list(cores)
    assert len(recorded) == len(recorded_cores) == 2 * 4  # two episodes of 4 steps
    np.testing.assert_array_equal(agent.core_state, training_core)
    # Each recorded episode is what a greedy rollout from a zero core state does.
    for episode in range(2):
        cores.clear()
        agent.reset_actor_state()
        rollout_env = Recall()
        obs, _ = rollout_env.reset(seed=7 + episode)
        actions, done = [], False
        while not done:
            action, _ = agent.select_action(obs[None])
            actions.append(int(np.asarray(action)[0]))
            obs, _, done, _, _ = rollout_env.step(actions[-1])
        steps = slice(4 * episode, 4 * episode + 4)
        assert recorded[steps] == actions
        np.testing.assert_array_equal(recorded_cores[4 * episode], 0.0)
        np.testing.assert_allclose(np.concatenate(recorded_cores[steps]), np.concatenate(cores))


def test_compiled_loop_carries_resets_and_stores_the_core_state():
    env = make_jax_env("MemoryChain-bsuite")
    config = config_for_jax_env(make_config(make_vec(lambda: Recall(), 1)), env, n_envs=3)
    agent = R2D2("compiled", config)
    trainer = make_agent_train(agent, env, 60, log_interval=60)
    # learning rate 0: the params never change, so stored states can be recomputed
    runner = jax.jit(trainer.init)(jax.random.PRNGKey(0), {"learning_rate": 0.0}, agent.state)
    runner, _ = jax.jit(trainer.run_chunk)(runner)
    assert runner.actor_state.shape == (3, 16)
    data = jax.device_get(runner.buffer_state.data)
    ended = data.done[:20] | data.truncated[:20]
    for e in range(3):
        first = np.concatenate([[True], ended[:-1, e]])
        stored = data.actor_state[:20, e]
        np.testing.assert_array_equal(stored[first], 0.0)
        expected = unroll_states(agent, data.observation[:20, e], first)
        np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_make_train_runs_the_recurrent_factories_as_one_pure_program_over_seeds():
    env = make_jax_env("MemoryChain-bsuite")
    config = config_for_jax_env(make_config(make_vec(lambda: Recall(), 1)), env, n_envs=2)
    p = config.algo_params
    train = make_train(
        config,
        env,
        train_state_r2d2_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
        explore_hyperparams=lambda steps, hyper: {"exploration": 0.5},
        init_actor_state=lambda n: jnp.zeros((n, 2 * p.core_size), jnp.float32),
        n_env_steps=80,
        log_interval=40,
    )
    runners, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), 2))
    assert runners.actor_state.shape == (2, 2, 16)
    assert int(metrics.n_updates.sum(axis=1)[0]) > 0
    assert not trees_equal(
        jax.tree.map(lambda x: x[0], runners.agent_state.params),
        jax.tree.map(lambda x: x[1], runners.agent_state.params),
    )


# ---- learning numerics -------------------------------------------------------------------------


def test_n_step_targets_cut_at_termination_and_bootstrap_at_truncation():
    r = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    v = jnp.array([10.0, 20.0, 30.0, 40.0, 50.0])
    term = jnp.array([0, 1, 0, 0, 0], bool)
    trunc = jnp.array([0, 0, 0, 1, 0], bool)
    kwargs = dict(gamma=0.5, target="n_step", n_step=3, td_lambda=0.0, value_rescaling=False)
    got = sequence_targets(r, term, trunc, v, **kwargs)
    expected = [
        1.0 + 0.5 * 2.0,  # terminated after step 1: no bootstrap
        2.0,
        3.0 + 0.5 * 4.0 + 0.25 * 40.0,  # truncated after step 3: bootstrap v[3], stop there
        4.0 + 0.5 * 40.0,
        5.0 + 0.5 * 50.0,  # window end: one-step bootstrap
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    one = sequence_targets(r, term, trunc, v, **{**kwargs, "n_step": 1})
    np.testing.assert_allclose(one, r + 0.5 * (1 - term) * v, rtol=1e-6)
    lam0 = sequence_targets(r, term, trunc, v, **{**kwargs, "target": "q_lambda"})
    np.testing.assert_allclose(lam0, one, rtol=1e-6)


def test_q_lambda_one_is_monte_carlo_with_an_end_bootstrap_and_rescaling_wraps_it():
    r = jnp.array([1.0, 0.0, 2.0])
    v = jnp.array([7.0, 8.0, 9.0])
    no = jnp.zeros(3, bool)
    kwargs = dict(gamma=0.9, target="q_lambda", n_step=1, td_lambda=1.0, value_rescaling=False)
    got = sequence_targets(r, no, no, v, **kwargs)
    mc = [1.0 + 0.81 * 2.0 + 0.729 * 9.0, 0.9 * 2.0 + 0.81 * 9.0, 2.0 + 0.9 * 9.0]
    np.testing.assert_allclose(got, mc, rtol=1e-6)
    import rlax

    h = rlax.signed_hyperbolic
    scaled = sequence_targets(r, no, no, h(v), **{**kwargs, "value_rescaling": True})
    np.testing.assert_allclose(scaled, h(jnp.array(mc)), rtol=1e-4)


def random_batch(key, batch=4, length=8, obs_dim=2, state_size=16):
    ks = jax.random.split(key, 6)
    return R2D2Batch(
        observation=jax.random.normal(ks[0], (batch, length, obs_dim)),
        action=jax.random.randint(ks[1], (batch, length), 0, 2),
        reward=jax.random.normal(ks[2], (batch, length)),
        terminated=jnp.zeros((batch, length), bool).at[0, 5].set(True),
        truncated=jnp.zeros((batch, length), bool).at[1, 6].set(True),
        next_observation=jax.random.normal(ks[3], (batch, length, obs_dim)),
        core_state=jax.random.normal(ks[4], (batch, state_size)),
        weight=jnp.ones((batch,)),
    )


def loss_and_grads_fn(agent: R2D2, p: R2D2Params):
    """A jitted ``(online, target, batch) -> (mean loss, grads, SequenceLosses)``."""
    apply_fn = agent.state.apply_fn

    def fn(online, target, batch):
        def loss(params):
            out = r2d2_sequence_losses(apply_fn, params, target, batch, p)
            return out.losses.mean(), out

        (value, out), grads = jax.value_and_grad(loss, has_aux=True)(online)
        return value, grads, out

    jitted = jax.jit(fn)
    return lambda batch: jitted(agent.state.params, agent.state.target_params, batch)


@pytest.mark.parametrize("target", ["n_step", "q_lambda"])
def test_burn_in_steps_are_excluded_from_the_loss(target):
    env = make_vec(lambda: Recall(), 2)
    agent = R2D2("burn", make_config(env, sequence_length=8, burn_in=3))
    # different target params, so that double-Q and the target unroll both matter
    agent.state = agent.state.replace(
        target_params=jax.tree.map(lambda x: x * 0.9 + 0.01, agent.state.params)
    )
    p = dataclasses.replace(agent.config.algo_params, target=target)
    loss_and_grads = loss_and_grads_fn(agent, p)
    batch = random_batch(jax.random.PRNGKey(0))
    value, grads, out = loss_and_grads(batch)
    assert out.td_error.shape == (5, 4) and out.losses.shape == (4,)

    # rewards and actions of burn-in steps change nothing
    burn_changed = batch._replace(
        reward=batch.reward.at[:, :3].add(5.0),
        action=jnp.concatenate([1 - batch.action[:, :3], batch.action[:, 3:]], axis=1),
    )
    v2, g2, _ = loss_and_grads(burn_changed)
    assert v2 == value and trees_equal(g2, grads)
    # those of learned steps do
    for changed in (
        batch._replace(reward=batch.reward.at[:, 4].add(5.0)),
        batch._replace(action=batch.action.at[:, 3].set(1 - batch.action[:, 3])),
    ):
        v3, g3, _ = loss_and_grads(changed)
        assert v3 != value and not trees_equal(g3, grads)

    # the burn-in only sets the start state: no gradient flows through it. With equal online
    # and target params, the window whose start state is the burnt-in one (computed apart) and
    # whose burn-in steps are cut off gives the same loss and gradients.
    agent.state = agent.state.replace(target_params=agent.state.params)
    warm = agent.state.apply_fn(
        agent.state.params,
        jnp.swapaxes(batch.observation[:, :3], 0, 1),
        jnp.zeros((3, 4), bool),
        batch.core_state,
    ).states[-1]
    rest = jax.tree.map(lambda x: x[:, 3:], batch._replace(core_state=None, weight=None))
    rest = rest._replace(core_state=warm, weight=batch.weight)
    v_full, g_full, _ = loss_and_grads_fn(agent, p)(batch)
    v_rest, g_rest, _ = loss_and_grads_fn(agent, dataclasses.replace(p, burn_in=0))(rest)
    np.testing.assert_allclose(v_full, v_rest, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_rest), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_priorities_mix_max_and_mean_td_errors():
    env = make_vec(lambda: Recall(), 2)
    agent = R2D2("prio", make_config(env, sequence_length=8, burn_in=2, priority_mix=0.9))
    batch = random_batch(jax.random.PRNGKey(4))
    _, _, out = loss_and_grads_fn(agent, agent.config.algo_params)(batch)
    abs_td = np.abs(np.asarray(out.td_error))
    np.testing.assert_allclose(
        out.priorities, 0.9 * abs_td.max(0) + 0.1 * abs_td.mean(0), rtol=1e-6
    )
    _, info = jax.jit(agent.update_step_fn)(agent.state, jax.random.PRNGKey(0), batch)
    np.testing.assert_allclose(info["td_error"], out.priorities, rtol=1e-5)


# ---- checkpoints -------------------------------------------------------------------------------


def test_gymnasium_checkpoint_keeps_the_stored_core_states(tmp_path):
    env = make_vec(lambda: Recall(), 2)
    config = make_config(env, n_env_steps=200)
    agent = R2D2("ckpt", config, run_dir=tmp_path)
    agent.train(env, 64)
    agent.save(include_buffer=True)
    resumed = R2D2.resume(tmp_path / "ckpt")
    assert_trees_equal(resumed.buffer_state, agent.buffer_state)
    assert np.abs(np.asarray(resumed.buffer_state.data.actor_state)).sum() > 0
    resumed.train(env, 16)  # fresh episodes start from a zero core state
    assert resumed.env_steps == 80


def test_compiled_resume_continues_the_carried_core_state_bit_identically(tmp_path):
    env = make_jax_env("MemoryChain-bsuite")
    base = make_config(make_vec(lambda: Recall(), 1), n_env_steps=400)
    config = config_for_jax_env(base, env, n_envs=2)
    config = dataclasses.replace(
        config, train_cfg=dataclasses.replace(config.train_cfg, save_frequency=200)
    )
    whole = R2D2("whole", config, run_dir=tmp_path)
    train_agent_compiled(whole, env, 400, log_interval=40)
    first = R2D2("split", config, run_dir=tmp_path)
    train_agent_compiled(first, env, 200, log_interval=40)
    second = R2D2.resume(tmp_path / "split")
    train_agent_compiled(second, make_jax_env("MemoryChain-bsuite"), 200, log_interval=40)
    runner = second._compiled_cache["runner"]
    assert runner.actor_state.shape == (2, 16)
    assert_trees_equal(runner, whole._compiled_cache["runner"])
    assert_trees_equal(second.state, whole.state)


# ---- learning ----------------------------------------------------------------------------------

LEARN_UPDATE = UpdateConfig(
    learning_rate=1e-3,
    learning_rate_annealing=False,
    max_grad_norm=10.0,
    max_buffer_size=4_000,
    batch_size=32,
    n_epochs=1,
)
LEARN = {
    "hidden_sizes": (32,),
    "core_size": 32,
    "sequence_length": 8,
    "burn_in": 2,
    "start_step": 200,
    "skip_steps": 4,
    "exploration_fraction": 0.3,
}


@pytest.mark.slow
def test_r2d2_solves_a_memory_task_on_the_gymnasium_path():
    env = make_vec(lambda: Recall(), 4)
    config = make_config(env, n_env_steps=4_000, update=LEARN_UPDATE, **LEARN)
    agent = R2D2("learn", config)
    agent.train(env)
    assert evaluate(agent, "KitaeRecall-v0", 50).mean() >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize(
    "cell, target, value_rescaling",
    [("lstm", "q_lambda", False), ("gru", "n_step", True)],
    ids=["lstm-q_lambda", "gru-n_step-rescaled"],
)
def test_r2d2_solves_memory_chain_on_the_compiled_path(cell, target, value_rescaling):
    env = make_jax_env("MemoryChain-bsuite")
    base = make_config(make_vec(lambda: Recall(), 1), n_env_steps=6_000, update=LEARN_UPDATE)
    config = config_for_jax_env(base, env, n_envs=8)
    config = dataclasses.replace(
        config,
        algo_params=R2D2Params(
            **{**LEARN, "cell": cell, "target": target, "value_rescaling": value_rescaling}
        ),
    )
    agent = R2D2("chain", config)
    agent.train(env)
    assert evaluate_jax(agent, env, 128).mean() >= 0.9
