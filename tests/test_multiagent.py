"""Multi-agent training on PettingZoo ParallelEnvs (kitae.multiagent).

Two tiny hand-made ParallelEnvs, no extra dependency:

* :class:`Staggered`: agents live a fixed number of steps each (some terminate, one is truncated)
  and the env drops them from its dicts as PettingZoo envs do; the observation is
  ``[episode, t, row]``, so every stored transition says where it came from.
* :class:`Cue`: each agent sees a random cue in {0, 1} and is rewarded for repeating it; one agent
  terminates after 2 steps, the others are truncated after 4. A learning test in seconds.
* :class:`Vanish`: agent ``b`` is dropped from the env's dicts without any flag or final
  observation in the middle of every episode, and is back at the next reset.
"""

from __future__ import annotations

import json

import gymnasium as gym
import jax
import numpy as np
import pytest
from helpers import TRACE_EVENT, trees_all_differ, trees_equal
from pettingzoo import ParallelEnv

from kitae.algos.dqn import DQN, DQNParams, bootstrap_transition
from kitae.algos.ppo import PPO, PPOParams
from kitae.algos.r2d2 import R2D2, R2D2Params, build_recurrent_q_network
from kitae.algos.td3 import TD3, TD3Params
from kitae.config import TrainConfig, UpdateConfig
from kitae.multiagent import MultiAgentTrainer, make_groups
from kitae.multiagent.groups import AgentGroup

# ---- hand-made envs -------------------------------------------------------------------------


class Staggered(ParallelEnv):
    """Agent ``i`` acts for ``lifetimes[i]`` steps, gets reward ``i + 1`` per step and then
    terminates, except the longest-lived, which is truncated. Observation ``float32[3]``:
    ``[episode, t, i]``. ``step`` checks that it gets actions for exactly the live agents."""

    metadata = {"name": "staggered"}

    def __init__(self, lifetimes=(2, 4, 5)):
        self.lifetimes = dict(zip(["a", "b", "c"], lifetimes, strict=True))
        self.possible_agents = list(self.lifetimes)
        self.agents: list[str] = []
        self.episode = -1
        self.t = 0
        self.resets = 0
        self.longest = max(self.lifetimes, key=self.lifetimes.get)

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1e6, (3,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def _obs(self, agent):
        return np.array([self.episode, self.t, self.possible_agents.index(agent)], np.float32)

    def reset(self, seed=None, options=None):
        self.resets += 1
        self.episode += 1
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (sorted(actions), self.agents)
        self.t += 1
        obs, rew, term, trunc = {}, {}, {}, {}
        for a in self.agents:
            obs[a] = self._obs(a)
            rew[a] = float(self.possible_agents.index(a) + 1)
            ended = self.t >= self.lifetimes[a]
            term[a] = ended and a != self.longest
            trunc[a] = ended and a == self.longest
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos


class Cue(ParallelEnv):
    """Each agent observes a one-hot cue and gets reward 1 for the action equal to it."""

    metadata = {"name": "cue"}

    def __init__(self, n_agents=3, short=2, length=4):
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.short, self.length = short, length
        self.agents: list[str] = []
        self.rng = np.random.default_rng()
        self.t = 0

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1.0, (2,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def _draw(self):
        self.cues = {a: int(self.rng.integers(2)) for a in self.agents}
        return {a: np.eye(2, dtype=np.float32)[self.cues[a]] for a in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._draw(), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents)
        self.t += 1
        rew = {a: float(int(actions[a]) == self.cues[a]) for a in self.agents}
        term = {a: a == self.possible_agents[0] and self.t >= self.short for a in self.agents}
        trunc = {a: not term[a] and self.t >= self.length for a in self.agents}
        obs = self._draw()
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos


class Vanish(ParallelEnv):
    """Agents ``a`` and ``b`` observe ``float32[3]`` ``[episode, t, row]``. ``a`` gets reward 1
    per step and is truncated after 4 steps. ``b`` gets reward ``10 * (t + 1)`` for its actions at
    ``t = 0, 1``; at its third action the env drops it from every dict (no observation, reward or
    flag), and it is back at the next reset."""

    metadata = {"name": "vanish"}

    def __init__(self):
        self.possible_agents = ["a", "b"]
        self.agents: list[str] = []
        self.episode = -1
        self.t = 0

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1e6, (3,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def _obs(self, agent):
        return np.array([self.episode, self.t, self.possible_agents.index(agent)], np.float32)

    def reset(self, seed=None, options=None):
        self.episode += 1
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (sorted(actions), self.agents)
        acted_at = self.t
        self.t += 1
        obs, rew, term, trunc = {"a": self._obs("a")}, {"a": 1.0}, {"a": False}, {"a": self.t >= 4}
        if "b" in self.agents and acted_at < 2:
            obs["b"], rew["b"], term["b"], trunc["b"] = self._obs("b"), 10.0 * self.t, False, False
        self.agents = [a for a in self.agents if a in obs and not trunc[a]]
        return obs, rew, term, trunc, {a: {} for a in obs}


class BoxStaggered(Staggered):
    """:class:`Staggered` with actions in ``[-2, 2]``; ``step`` checks the bounds."""

    def action_space(self, agent):
        return gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def step(self, actions):
        for action in actions.values():
            assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
        return super().step(actions)


class MixedSpaces(Staggered):
    def action_space(self, agent):
        return gym.spaces.Discrete(3 if agent == "c" else 2)


# ---- configs ----------------------------------------------------------------------------------


def dqn_params(**overrides) -> DQNParams:
    values = dict(
        gamma=0.5,
        exploration_start=1.0,
        exploration_end=0.05,
        exploration_fraction=0.3,
        double_q=True,
        dueling=False,
        n_step=1,
        prioritized=False,
        tau=0.05,
        target_update_period=1,
        skip_steps=2,
        start_step=64,
        hidden_sizes=(32,),
        activation="relu",
        loss="mse",
    )
    values.update(overrides)
    return DQNParams(**values)


DQN_UPDATE = UpdateConfig(learning_rate=3e-3, max_buffer_size=3_000, batch_size=32, n_epochs=1)
QUIET = TrainConfig(progress_bar=False, log_frequency=60, loggers=())


def dqn_trainer(env, n_steps=60, **kwargs) -> MultiAgentTrainer:
    kwargs.setdefault("algo_params", dqn_params(start_step=8, skip_steps=4))
    kwargs.setdefault("update_cfg", UpdateConfig(max_buffer_size=300, batch_size=8))
    kwargs.setdefault("train_cfg", QUIET)
    return MultiAgentTrainer(env, DQN, n_steps=n_steps, **kwargs)


def ppo_params() -> PPOParams:
    return PPOParams(
        gamma=0.5,
        gae_lambda=0.95,
        clip_eps=0.2,
        entropy_coef=0.0,
        value_coef=0.5,
        normalize_advantages=True,
        hidden_sizes=(32,),
        activation="tanh",
    )


def stored_transitions(trainer: MultiAgentTrainer, group: str):
    """The replay buffer's transitions per slot: ``[(slot, Experience leaves [n, ...])]``."""
    learner = trainer.learners[group]
    learner.flush()
    state = jax.device_get(trainer.agents[group].buffer_state)
    out = []
    for slot in range(state.size.shape[0]):
        n = int(state.size[slot])
        out.append(jax.tree.map(lambda x, n=n, slot=slot: x[:n, slot], state.data))
    return out


# ---- the loop with agents dying early ---------------------------------------------------------


def test_dead_agents_store_nothing_and_the_env_resets_only_when_all_are_done():
    env = Staggered(lifetimes=(2, 4, 5))
    trainer = dqn_trainer(env, n_steps=20)  # 4 episodes of 5 steps
    trainer.train()
    assert env.resets == 4  # the fifth reset would only come with the next step
    per_slot = stored_transitions(trainer, "shared")
    for row, (slot, lifetime) in enumerate(zip(per_slot, (2, 4, 5), strict=True)):
        obs, next_obs = slot.observation, slot.next_observation
        assert len(obs) == 4 * lifetime  # live steps only
        np.testing.assert_array_equal(obs[:, 2], row)  # each slot holds one agent
        np.testing.assert_array_equal(obs[:, 0], np.repeat(np.arange(4), lifetime))
        np.testing.assert_array_equal(obs[:, 1], np.tile(np.arange(lifetime), 4))
        np.testing.assert_array_equal(next_obs[:, 1], obs[:, 1] + 1)  # true next observations
        np.testing.assert_array_equal(next_obs[:, 0], obs[:, 0])
        np.testing.assert_array_equal(slot.reward, row + 1)
        last = obs[:, 1] == lifetime - 1
        truncated_agent = lifetime == 5
        np.testing.assert_array_equal(slot.done, last & (not truncated_agent))
        np.testing.assert_array_equal(slot.truncated, last & truncated_agent)
    assert trainer.agents["shared"].env_steps == 4 * (2 + 4 + 5)


def test_per_agent_returns_and_lengths_are_logged_per_episode(tmp_path):
    env = Staggered(lifetimes=(2, 4, 5))
    train_cfg = TrainConfig(progress_bar=False, log_frequency=30, loggers=("jsonl", "csv"))
    trainer = dqn_trainer(env, n_steps=20, train_cfg=train_cfg, run_dir=tmp_path, run_name="run")
    trainer.train()
    expected = {
        "step": 5,
        "return": 2 * 1 + 4 * 2 + 5 * 3,
        "length": 5,
        "return/a": 2.0,
        "length/a": 2,
        "return/b": 8.0,
        "length/b": 4,
        "return/c": 15.0,
        "length/c": 5,
    }
    rows = trainer.logger.history["episodes"]
    assert [row["step"] for row in rows] == [5, 10, 15, 20]
    assert rows[0] == expected
    lines = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {**expected, "step": 20}
    assert (tmp_path / "run" / "episodes.csv").exists()
    train_rows = trainer.logger.history["train"]
    assert train_rows and train_rows[-1]["return/c"] == 15.0
    assert "loss_qvalue" in train_rows[-1]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["groups"] == {"shared": ["a", "b", "c"]}


def test_training_continues_the_running_episode_across_calls():
    env = Staggered(lifetimes=(2, 4, 5))
    trainer = dqn_trainer(env, n_steps=13)
    trainer.train(7)
    trainer.train(6)
    assert env.resets == 3 and trainer.env_steps == 13
    assert len(trainer.recorder.finished) == 2
    assert trainer.recorder.length == 3  # the third episode is 3 steps in


def test_on_policy_rollouts_hold_live_transitions_cut_between_agents():
    env = Staggered(lifetimes=(2, 4, 5))
    trainer = MultiAgentTrainer(
        env,
        PPO,
        n_steps=10,
        algo_params=ppo_params(),
        update_cfg=UpdateConfig(max_buffer_size=21, batch_size=7, n_epochs=1),
        train_cfg=QUIET,
    )
    trainer.train()  # 2 episodes: 22 live transitions, one rollout of 21
    learner = trainer.learners["shared"]
    assert trainer.agents["shared"].n_updates == 1
    rollout = learner.last_rollout
    assert rollout.observation.shape == (7, 3, 3)  # [T, lanes, obs]
    flat = jax.tree.map(lambda x: x.swapaxes(0, 1).reshape(21, *x.shape[2:]), rollout)
    agent_row, episode, t = flat.observation[:, 2], flat.observation[:, 0], flat.observation[:, 1]
    lifetimes = np.array([2, 4, 5])
    assert (t < lifetimes[agent_row.astype(int)]).all()  # no dead agent's transition
    np.testing.assert_array_equal(np.bincount(agent_row.astype(int)), [4, 8, 9])
    # Each agent's transitions stay in time order within the rollout.
    order = episode * 10 + t
    for row in range(3):
        assert (np.diff(order[agent_row == row]) > 0).all()
    # Terminations and truncations are the env's; a switch between agents is a cut.
    switch = np.append(agent_row[1:] != agent_row[:-1], False)
    ends = t == lifetimes[agent_row.astype(int)] - 1
    np.testing.assert_array_equal(flat.done, ends & (agent_row != 2))
    np.testing.assert_array_equal(flat.truncated, (ends & (agent_row == 2)) | (switch & ~flat.done))
    assert len(learner._pending) == 1  # the 22nd transition opens the next rollout


def test_an_agent_dropped_silently_is_truncated_at_its_last_stored_transition():
    """``b`` vanishes at its third action of each episode: its second transition (``t = 1``) is
    the last of its episode, so an n-step window from there stops at it and bootstraps from its
    next observation (``t = 2``) instead of running into ``b``'s next episode."""
    trainer = dqn_trainer(
        Vanish(), n_steps=8, algo_params=dqn_params(n_step=3, start_step=8, skip_steps=4)
    )
    trainer.train()  # 2 episodes of 4 steps
    a, b = stored_transitions(trainer, "shared")
    np.testing.assert_array_equal(a.truncated, [0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(b.observation[:, :2], [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(b.reward, [10, 20, 10, 20])
    np.testing.assert_array_equal(b.done, [0, 0, 0, 0])
    np.testing.assert_array_equal(b.truncated, [0, 1, 0, 1])
    # The 3-step window from b's last transition of episode 0: [ep 0 t 1, ep 1 t 0, ep 1 t 1].
    window = jax.tree.map(lambda x: x[None, 1:4], b)
    target = bootstrap_transition(window, gamma=0.5)
    np.testing.assert_allclose(target.reward, [20.0])  # not 20 + 0.5 * 10 + 0.25 * 20 = 30
    np.testing.assert_allclose(target.discount, [0.5])  # gamma ** 1, not gamma ** 3
    np.testing.assert_array_equal(target.next_observation, [[0, 2, 1]])  # ep 0, t = 2


def test_gae_does_not_run_through_a_silent_drop_into_the_next_episode():
    trainer = MultiAgentTrainer(
        Vanish(),
        PPO,
        n_steps=8,
        algo_params=ppo_params(),
        update_cfg=UpdateConfig(max_buffer_size=12, batch_size=6, n_epochs=1),
        train_cfg=QUIET,
    )
    trainer.train()  # 2 episodes: 8 transitions of a, 4 of b, one rollout of 12
    agent = trainer.agents["shared"]
    assert agent.n_updates == 1
    # Lane 1: a (ep 1, t = 2, 3), then b (ep 0, t = 0, 1) and b (ep 1, t = 0, 1).
    lane = jax.tree.map(lambda x: x[:, 1], trainer.learners["shared"].last_rollout)
    np.testing.assert_array_equal(lane.observation[:, 2], [0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(lane.observation[:, 0], [1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(lane.done, [0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(lane.truncated, [0, 1, 0, 1, 0, 1])
    # GAE by hand (gamma 0.5, lambda 0.95) from the critic's values: the chain stops after b's
    # t = 1 of episode 0, which bootstraps from its observation at t = 2.
    _, values = agent.state.apply_fn(agent.state.params, lane.observation)
    _, next_values = agent.state.apply_fn(agent.state.params, lane.next_observation)
    v, v_next = np.asarray(values, np.float64), np.asarray(next_values, np.float64)
    np.testing.assert_array_equal(lane.next_observation[3], [0, 2, 1])
    delta = lane.reward + 0.5 * v_next - v
    expected = [
        delta[0] + 0.5 * 0.95 * delta[1],
        delta[1],
        delta[2] + 0.5 * 0.95 * delta[3],
        delta[3],
        delta[4] + 0.5 * 0.95 * delta[5],
        delta[5],
    ]
    batch = agent.process_experience_fn(agent.state, jax.random.PRNGKey(0), lane)
    np.testing.assert_allclose(batch.advantage, expected, rtol=1e-5, atol=1e-6)


def test_a_second_training_call_does_not_recompile(trace_counter):
    trainer = dqn_trainer(Staggered(), n_steps=40)
    trainer.train(20)
    assert trainer.agents["shared"].n_updates > 0
    trace_counter.clear()
    trainer.train(20)
    assert trace_counter[TRACE_EVENT] == 0


# ---- recurrent agents -------------------------------------------------------------------------


def r2d2_trainer(env, n_steps: int, **kwargs) -> MultiAgentTrainer:
    params = R2D2Params(
        hidden_sizes=(8,),
        core_size=4,
        sequence_length=4,
        burn_in=1,
        start_step=20,
        skip_steps=4,
        exploration_fraction=0.5,
    )
    update = UpdateConfig(max_buffer_size=120, batch_size=4, n_epochs=1)
    return MultiAgentTrainer(
        env, R2D2, n_steps=n_steps, algo_params=params, update_cfg=update, train_cfg=QUIET, **kwargs
    )


def member_core_states(config, params, observations: np.ndarray) -> np.ndarray:
    """The core state before each step of one member's episode ``observations [T, 3]``: the
    network unrolled over that episode alone, from a zero state."""
    net = build_recurrent_q_network(config)
    steps = len(observations)
    start = net.initial_state(1)
    out = net.apply(params, observations[:, None], np.zeros((steps, 1), bool), start)
    return np.concatenate([np.asarray(start), np.asarray(out.states[:-1, 0])])


def test_r2d2_carries_stores_and_resets_a_core_state_per_member():
    env = Staggered(lifetimes=(2, 4, 5))
    trainer = r2d2_trainer(env, n_steps=25)  # 5 episodes of 5 steps
    agent = trainer.agents["shared"]
    initial = agent.state.params
    trainer.train()
    assert agent.n_updates >= 5
    for slot, lifetime in zip(stored_transitions(trainer, "shared"), (2, 4, 5), strict=True):
        episode, t = slot.observation[:, 0], slot.observation[:, 1]
        assert len(t) == 5 * lifetime
        stored = slot.actor_state
        # Every episode of every member starts from a zero core state; later steps do not (but
        # for a's first episode: its observations there are zeros, which leave the core at 0).
        np.testing.assert_array_equal(stored[t == 0], 0.0)
        assert (np.abs(stored[(t > 0) & (episode > 0)]).sum(axis=-1) > 0).all()
        # The first episode was acted before any update: its stored states are the member's own
        # unroll from zero, whatever the other members (and dead rows) did meanwhile.
        expected = member_core_states(agent.config, initial, slot.observation[:lifetime])
        np.testing.assert_allclose(stored[:lifetime], expected, rtol=1e-5, atol=1e-6)


def test_r2d2_greedy_evaluation_starts_every_episode_from_a_zero_core_state():
    trainer = r2d2_trainer(Cue(), n_steps=24)
    agent = trainer.agents["shared"]
    cores = []
    explore_fn = agent.explore_fn

    def spy(state, key, observations, core_state, exploration):
        cores.append(np.asarray(core_state))
        return explore_fn(state, key, observations, core_state, exploration)

    agent.explore_fn = spy
    trainer.evaluate(Cue(), 3)
    assert len(cores) == 3 * 4  # episodes of 4 steps
    for episode in range(3):
        np.testing.assert_array_equal(cores[4 * episode], 0.0)
        assert np.abs(cores[4 * episode + 1]).sum() > 0


# ---- sharing vs independent, seeds ------------------------------------------------------------


def test_parameter_sharing_uses_one_agent_and_independent_one_per_agent():
    shared = dqn_trainer(Staggered(), n_steps=20)
    independent = dqn_trainer(Staggered(), n_steps=20, grouping="independent")
    assert list(shared.agents) == ["shared"]
    assert shared.agents["shared"].config.env_cfg.n_envs == 3
    assert list(independent.agents) == ["a", "b", "c"]
    assert all(a.config.env_cfg.n_envs == 1 for a in independent.agents.values())
    independent.train()
    for learner in independent.learners.values():
        learner.flush()
    sizes = {name: int(a.buffer_state.size.sum()) for name, a in independent.agents.items()}
    assert sizes == {"a": 8, "b": 16, "c": 20}
    # Independent learners start from different parameters (seed + k).
    assert trees_all_differ(
        independent.agents["a"].state.params, independent.agents["b"].state.params
    )


def test_continuous_actions_with_an_off_policy_actor_critic():
    env = BoxStaggered()
    params = TD3Params(start_step=8, skip_steps=4, hidden_sizes=(16,), random_warmup=False)
    trainer = MultiAgentTrainer(
        env,
        TD3,
        n_steps=20,
        algo_params=params,
        update_cfg=UpdateConfig(max_buffer_size=300, batch_size=8),
        train_cfg=QUIET,
    )
    trainer.train()
    assert trainer.agents["shared"].n_updates > 0
    per_slot = stored_transitions(trainer, "shared")
    assert [len(slot.reward) for slot in per_slot] == [8, 16, 20]
    assert per_slot[0].action.shape == (8, 1)


def test_custom_groups_and_agent_id():
    env = Staggered()
    groups = make_groups(env, {"pair": ["a", "b"], "solo": ["c"]}, agent_id=True)
    assert [g.agents for g in groups] == [("a", "b"), ("c",)]
    pair = groups[0]
    assert pair.policy_observation_space.shape == (5,)
    np.testing.assert_array_equal(pair.encode(np.array([7, 1, 0], np.float32), 1), [7, 1, 0, 0, 1])
    trainer = dqn_trainer(env, grouping={"pair": ["a", "b"], "solo": ["c"]}, agent_id=True)
    trainer.train(10)
    assert set(trainer.agents) == {"pair", "solo"}


def test_non_box_observations_are_flattened():
    group = AgentGroup(
        "g", ("x",), gym.spaces.Dict({"pos": gym.spaces.Discrete(3)}), gym.spaces.Discrete(2)
    )
    assert group.policy_observation_space.shape == (3,)
    np.testing.assert_array_equal(group.encode({"pos": 2}, 0), [0, 0, 1])


def test_one_seed_determines_the_run():
    def run(seed):
        trainer = dqn_trainer(Cue(), n_steps=100, seed=seed)
        trainer.train()
        return trainer

    a, b, c = run(1), run(1), run(2)
    assert trees_equal(a.agents["shared"].state.params, b.agents["shared"].state.params)
    assert a.recorder.finished == b.recorder.finished
    assert trees_all_differ(a.agents["shared"].state.params, c.agents["shared"].state.params)


# ---- config errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"grouping": "everyone"}, "grouping='everyone' is invalid", id="mode"),
        pytest.param({"grouping": {"g": ["a", "b"]}}, r"\['c'\] are in no group", id="missing"),
        pytest.param({"grouping": {"g": ["a", "z"], "h": ["b", "c"]}}, "'z'", id="unknown"),
        pytest.param({"grouping": {"g": ["a", "b"], "h": ["b", "c"]}}, "both group", id="twice"),
        pytest.param({"grouping": {"g": [], "h": ["a", "b", "c"]}}, "is empty", id="empty"),
        pytest.param({"n_steps": 0}, "n_steps=0", id="n_steps"),
        pytest.param({"seed": -1}, "seed=-1", id="seed"),
    ],
)
def test_bad_configs_raise_before_training(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dqn_trainer(Staggered(), **kwargs)


def test_parameter_sharing_across_different_spaces_is_refused():
    with pytest.raises(ValueError, match="different action spaces: 'a' has Discrete.2."):
        dqn_trainer(MixedSpaces())
    dqn_trainer(MixedSpaces(), grouping="independent")  # fine as independent learners


def test_on_policy_rollout_must_divide_over_the_group():
    with pytest.raises(ValueError, match="not a multiple of the 3 agents of group 'shared'"):
        MultiAgentTrainer(
            Staggered(),
            PPO,
            n_steps=100,
            algo_params=ppo_params(),
            update_cfg=UpdateConfig(max_buffer_size=32, batch_size=8),
            train_cfg=QUIET,
        )


def test_a_run_without_any_update_is_refused():
    trainer = dqn_trainer(Staggered(), algo_params=dqn_params(start_step=1_000))
    with pytest.raises(ValueError, match="group 'shared'.*zero updates"):
        trainer.train()


def test_aec_envs_and_unsupported_action_spaces_are_refused():
    with pytest.raises(TypeError, match="PettingZoo ParallelEnv"):
        dqn_trainer(gym.make("CartPole-v1"))

    class BoxActions(Staggered):
        def action_space(self, agent):
            return gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    with pytest.raises(ValueError, match="Discrete action space"):
        dqn_trainer(BoxActions())


# ---- learning -----------------------------------------------------------------------------------


def greedy_returns(trainer: MultiAgentTrainer) -> dict[str, float]:
    results = trainer.evaluate(Cue(), 20, seed=1_000)
    return {name: float(values.mean()) for name, values in results.items()}


@pytest.mark.parametrize("grouping", ["shared", "independent"])
def test_dqn_learns_the_cue_game(grouping):
    trainer = MultiAgentTrainer(
        Cue(),
        DQN,
        n_steps=1_500,
        grouping=grouping,
        seed=3,
        algo_params=dqn_params(),
        update_cfg=DQN_UPDATE,
        train_cfg=QUIET,
    )
    before = greedy_returns(trainer)
    trainer.train()
    after = greedy_returns(trainer)
    # Optimal: 2 for agent_0 (terminates after 2 steps), 4 for the others; team 10.
    assert after["return/agent_0"] == 2.0
    assert after["return/agent_1"] >= 3.8 and after["return/agent_2"] >= 3.8
    assert after["return"] > before["return"] + 2


@pytest.mark.parametrize("grouping", ["shared", "independent"])
def test_ppo_learns_the_cue_game(grouping):
    trainer = MultiAgentTrainer(
        Cue(),
        PPO,
        n_steps=3_000,
        grouping=grouping,
        seed=0,
        algo_params=ppo_params(),
        update_cfg=UpdateConfig(
            learning_rate=3e-3, max_buffer_size=240, batch_size=60, n_epochs=4, max_grad_norm=0.5
        ),
        train_cfg=QUIET,
    )
    before = greedy_returns(trainer)
    trainer.train()
    after = greedy_returns(trainer)
    assert after["return"] >= 9.5
    assert after["return"] > before["return"] + 2


# ---- the example env (MPE, optional) ------------------------------------------------------------


def test_trains_on_mpe_with_shared_and_grouped_learners():
    mpe2 = pytest.importorskip("mpe2")
    from mpe2 import simple_spread_v3, simple_tag_v3

    del mpe2
    params = dqn_params(start_step=50, skip_steps=8)
    spread = simple_spread_v3.parallel_env(N=3, max_cycles=25)
    trainer = dqn_trainer(spread, n_steps=100, agent_id=True, algo_params=params)
    trainer.train()
    rows = trainer.logger.history["episodes"]
    assert len(rows) == 4 and rows[0]["length/agent_2"] == 25
    assert trainer.agents["shared"].n_updates > 0

    tag = simple_tag_v3.parallel_env(max_cycles=25)
    teams = {
        "adversaries": [a for a in tag.possible_agents if a.startswith("adversary")],
        "good": [a for a in tag.possible_agents if not a.startswith("adversary")],
    }
    with pytest.raises(ValueError, match="different observation spaces"):
        dqn_trainer(tag, algo_params=params)
    trainer = dqn_trainer(tag, n_steps=100, grouping=teams, algo_params=params)
    trainer.train()
    assert trainer.agents["adversaries"].config.env_cfg.n_envs == 3
    assert trainer.agents["good"].n_updates > 0
    evaluation = trainer.evaluate(simple_tag_v3.parallel_env(max_cycles=25), 2)
    assert set(evaluation) == {"return", *(f"return/{a}" for a in tag.possible_agents)}
