"""Frame-stack replay (kitae.frame_replay): stacks rebuilt from frames stored once.

The envs here emit ``uint8[2]`` frames ``[game + 1, t + 1]`` (never 0), stacked by gymnasium's
``FrameStackObservation``, so every frame of every stack names the step it comes from. The
transitions go through a same-step-autoreset vector env as kitae's loop sees them (with the true
final observation of ended episodes), each with a unique id in its ``action`` field; the buffer
must give every sampleable transition back exactly as the loop stored it.
"""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal, rewrite_checkpoint_file

from kitae.algos.dqn import DQN, DQNParams
from kitae.base import true_next_observation
from kitae.buffer import Experience, make_replay_buffer
from kitae.compiled import train_agent_compiled
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
from kitae.envs.jax_env import JaxEnv
from kitae.frame_replay import (
    FrameStackReplayBuffer,
    FrameStackReplayBufferState,
    PrioritizedFrameStackReplayBufferState,
    check_frame_stacks,
    frame_stack_from_config,
    make_frame_stack_replay_buffer,
)

N_FRAMES = 3


class Frames(gym.Env):
    """Frames ``uint8[2] = [game + 1, t + 1]``; ``t`` counts the steps of the game. With
    ``image``, the frames are ``uint8[4, 4]``, that pair repeated (images, as ``"auto"`` detects
    their stacks).

    A game is ``lives`` episodes of ``length`` steps each. Losing a life (all but the last
    episode) is ``terminated`` with ``info["life_lost"]``; the last episode of game ``g`` ends
    ``terminated`` when ``g`` is even, ``truncated`` when it is odd. ``reset(seed=...)``
    restarts at game 0, a reset without seed starts the next game.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int, lives: int = 1, image: bool = False):
        self.length, self.lives, self.image = length, lives, image
        self.observation_space = gym.spaces.Box(0, 255, (4, 4) if image else (2,), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.game, self.t = -1, 0

    def _frame(self) -> np.ndarray:
        frame = np.array([self.game + 1, self.t + 1], np.uint8)
        return np.tile(frame, (4, 2)) if self.image else frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.game = 0 if seed is not None else self.game + 1
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        game_over = self.t >= self.length * self.lives
        life_lost = not game_over and self.t % self.length == 0
        truncated = game_over and self.game % 2 == 1
        terminated = (game_over and not truncated) or life_lost
        return self._frame(), float(self.t), terminated, truncated, {"life_lost": life_lost}


class GameGoesOn(gym.Wrapper):
    """After a lost life, ``reset`` returns the last observation and the game goes on (as
    Atari's ``EpisodicLife``): the stacks continue across the episode end."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._last = None

    def reset(self, **kwargs):
        if self._last is not None and kwargs.get("seed") is None:
            obs, self._last = self._last, None
            return obs, {}
        self._last = None
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last = obs if info["life_lost"] else None
        return obs, reward, terminated, truncated, info


def frames_env(length: int, lives: int = 1, padding: str = "zero", image: bool = False):
    env = Frames(length, lives, image)
    env = gym.wrappers.FrameStackObservation(env, N_FRAMES, padding_type=padding)
    return GameGoesOn(env) if lives > 1 else env


def make_vec(lengths, lives: int = 1, padding: str = "zero", image: bool = False):
    return gym.vector.SyncVectorEnv(
        [lambda n=n: frames_env(n, lives, padding, image) for n in lengths],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def stack(game: int, t: int, padding: str = "zero") -> np.ndarray:
    """The observation of step ``t`` of game ``game`` (a fresh stack at the game's start)."""
    rows = []
    for u in range(t - N_FRAMES + 1, t + 1):
        if u >= 0:
            rows.append([game + 1, u + 1])
        else:
            rows.append([0, 0] if padding == "zero" else [game + 1, 1])
    return np.array(rows, np.uint8)


def collect(venv, n_steps: int):
    """Runs ``n_steps`` vector steps as kitae's loop does.

    Returns:
        ``(steps, records)``: the vector steps ``[n_steps]`` (each an Experience of ``[N, ...]``
        numpy leaves, ``action`` = the transitions' ids), and ``id -> (env, transition)``.
    """
    n = venv.num_envs
    obs, _ = venv.reset(seed=0)
    steps, records = [], {}
    for i in range(n_steps):
        next_obs, reward, terminated, truncated, infos = venv.step(np.zeros(n, np.int64))
        ended = terminated | truncated
        step = Experience(
            observation=obs,
            action=(i * n + np.arange(n)).astype(np.int32),
            reward=reward.astype(np.float32),
            done=terminated,
            next_observation=true_next_observation(next_obs, infos, ended),
            truncated=truncated,
        )
        steps.append(step)
        for e in range(n):
            records[i * n + e] = (e, jax.tree.map(lambda x, e=e: np.asarray(x)[e], step))
        obs = next_obs
    return steps, records


# Jitted entry points (the buffer is static): eager calls would compile every primitive.
jit_add_batch = jax.jit(lambda buffer, *args: buffer.add_batch(*args), static_argnums=0)
jit_starts = jax.jit(lambda buffer, state, n: buffer.valid_starts(state, n), static_argnums=(0, 2))
jit_slots = jax.jit(lambda buffer, *args: buffer._slot_of_rank(*args), static_argnums=0)
jit_gather = jax.jit(
    lambda buffer, state, slots, envs, length: buffer.gather(state, slots, envs, length),
    static_argnums=(0, 4),
)
jit_sample = jax.jit(
    lambda buffer, state, key, batch_size: buffer.sample(state, key, batch_size),
    static_argnums=(0, 3),
)


def gather(buffer, state, slots, envs, length=None):
    return jit_gather(buffer, state, jnp.asarray(slots), jnp.asarray(envs), length)


def fill(buffer, steps, chunk: int = 1):
    """Adds the vector steps ``chunk`` at a time (``add_batch``) into a fresh state."""
    state = buffer.init(jax.tree.map(jnp.asarray, steps[0]))
    for i in range(0, len(steps), chunk):
        part = steps[i : i + chunk]
        batch = jax.tree.map(lambda *xs: np.stack(xs), *part)
        valid = np.ones((len(part), buffer.n_envs), bool)
        if len(part) < chunk:  # staged rows past the end are padding, as in the agent's flush
            pad = chunk - len(part)
            batch = jax.tree.map(
                lambda x, pad=pad: np.concatenate([x, x[-1:].repeat(pad, 0)]), batch
            )
            valid = np.concatenate([valid, np.zeros((pad, buffer.n_envs), bool)])
        state = jit_add_batch(buffer, state, batch, valid)
    return state


def sampleable(buffer, state, length: int = 1):
    """Every transition the buffer may draw: ``(slots, envs)`` of all window starts."""
    counts = np.asarray(jit_starts(buffer, state, length))
    envs = np.concatenate([np.full(c, e) for e, c in enumerate(counts)]).astype(np.int32)
    ranks = np.concatenate([np.arange(c) for c in counts]).astype(np.int32)
    slots = jit_slots(buffer, state, jnp.asarray(envs), jnp.asarray(ranks))
    return np.asarray(slots), envs


def assert_exact(batch, records, index=()) -> None:
    """Every transition of ``batch`` (leaves ``[B, ...]``) is the one the loop stored."""
    for i, key in enumerate(np.asarray(batch.action).tolist()):
        _, stored = records[key]
        for name in ("observation", "next_observation", "reward", "done", "truncated"):
            got = np.asarray(getattr(batch, name))[i]
            np.testing.assert_array_equal(got, getattr(stored, name), err_msg=f"{name} of {key}")


# ---- stacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["zero", "reset"])
def test_stacks_at_episode_starts_are_padded_as_the_env_pads_them(padding):
    venv = make_vec([4], padding=padding)
    steps, _ = collect(venv, 8)  # games 0 and 1, four steps each
    buffer = make_frame_stack_replay_buffer(64, 1, N_FRAMES)
    state = fill(buffer, steps)
    batch = gather(buffer, state, *sampleable(buffer, state))
    assert np.asarray(batch.action).tolist() == list(range(8))
    obs, nxt = np.asarray(batch.observation), np.asarray(batch.next_observation)
    # game 1, t = 0 and 1: padded before its first frame, nothing of game 0
    np.testing.assert_array_equal(obs[4], stack(1, 0, padding))
    np.testing.assert_array_equal(obs[5], stack(1, 1, padding))
    np.testing.assert_array_equal(nxt[4], stack(1, 1, padding))
    pad = [0, 0] if padding == "zero" else [2, 1]
    np.testing.assert_array_equal(obs[4], [pad, pad, [2, 1]])  # by hand
    # the last step of game 0 terminated: its next observation is the true final one
    np.testing.assert_array_equal(nxt[3], [[1, 3], [1, 4], [1, 5]])
    assert np.asarray(batch.done).tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert np.asarray(batch.truncated).tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    np.testing.assert_array_equal(nxt[7], [[2, 3], [2, 4], [2, 5]])  # truncated: final too
    assert batch.observation.dtype == jnp.uint8 and batch.next_observation.dtype == jnp.uint8
    assert int(state.mismatches) == 0


@pytest.mark.parametrize("chunk", [1, 5, 16], ids=["add", "add-batch-5", "add-batch-16"])
def test_every_sampleable_transition_is_the_one_stored_after_wraparound(chunk):
    # Three envs out of step, episodes ending by termination and truncation, a ring of 16 slots
    # per env wrapped several times.
    venv = make_vec([2, 3, 5])
    steps, records = collect(venv, 60)
    buffer = make_frame_stack_replay_buffer(48, 3, N_FRAMES)
    state = fill(buffer, steps, chunk)
    slots, envs = sampleable(buffer, state)
    batch = gather(buffer, state, slots, envs)
    # Each env's ring holds its newest 16 slots (by hand): env 0 (2 steps + a final slot per
    # episode, 90 slots) the last 5 episodes whole; env 1 (4 slots per episode, 80) the last 4;
    # env 2 (6 slots, 72 written) slots 56..71: the last 2 episodes and steps 2..4 of the one
    # before, of which only step 4 still has its stack's first frame (step 2's is slot 54).
    assert np.bincount(envs).tolist() == [10, 12, 11]
    assert_exact(batch, records)
    for key, env in zip(np.asarray(batch.action).tolist(), envs, strict=True):
        assert records[key][0] == env
    assert int(state.mismatches) == 0


@pytest.mark.parametrize(
    "length, n_steps, expected",
    [
        # episodes of 3 steps take 4 slots; a ring of 10: the third step of game 0 is held but
        # its stack's first frames are overwritten
        (3, 9, list(range(3, 9))),
        (3, 10, list(range(3, 10))),
        # game 0 (5 steps, 6 slots) then four steps of game 1 and the pending next frame: slots
        # 1..10 are held; steps 1 and 2 of game 0 need step 0's frame, which is gone
        (5, 9, [3, 4, 5, 6, 7, 8]),
    ],
    ids=["three-games", "three-games-and-a-step", "long-game"],
)
def test_transitions_whose_stack_was_overwritten_are_never_drawn(length, n_steps, expected):
    steps, records = collect(make_vec([length]), n_steps)
    buffer = make_frame_stack_replay_buffer(10, 1, N_FRAMES)
    state = fill(buffer, steps)
    slots, envs = sampleable(buffer, state)
    batch = gather(buffer, state, slots, envs)
    assert sorted(np.asarray(batch.action).tolist()) == expected
    assert_exact(batch, records)
    draws = jit_sample(buffer, state, jax.random.PRNGKey(0), 2_000)
    counts = np.bincount(np.asarray(draws.action), minlength=n_steps)
    assert set(np.flatnonzero(counts).tolist()) == set(expected)
    np.testing.assert_allclose(counts[expected] / 2_000, 1 / len(expected), atol=0.05)


def test_a_game_that_goes_on_after_a_lost_life_continues_its_stacks():
    # two lives of 3 steps: the second episode's first observation is the first one's final
    # observation, and its stacks hold frames of the first life as the env's do
    steps, records = collect(make_vec([3], lives=2), 6)
    buffer = make_frame_stack_replay_buffer(32, 1, N_FRAMES)
    state = fill(buffer, steps)
    batch = gather(buffer, state, *sampleable(buffer, state))
    assert np.asarray(batch.action).tolist() == list(range(6))
    assert_exact(batch, records)
    np.testing.assert_array_equal(batch.observation[3], [[1, 2], [1, 3], [1, 4]])  # by hand
    assert np.asarray(batch.done).tolist() == [0, 0, 1, 0, 0, 1]
    # 6 transitions in 7 slots: the lost life costs no final slot, the game over one
    assert int(state.size[0]) == 7 and int(state.mismatches) == 0


def test_n_step_windows_are_consecutive_transitions_across_episode_ends():
    steps, records = collect(make_vec([2, 3]), 20)
    buffer = make_frame_stack_replay_buffer(80, 2, N_FRAMES)
    state = fill(buffer, steps, chunk=4)
    slots, envs = sampleable(buffer, state, length=3)
    windows = gather(buffer, state, slots, envs, 3)
    assert windows.observation.shape == (len(slots), 3, N_FRAMES, 2)
    ids = np.asarray(windows.action)
    np.testing.assert_array_equal(ids[:, 1:] - ids[:, :-1], 2)  # the same env's next steps
    for j in range(3):
        assert_exact(jax.tree.map(lambda x, j=j: x[:, j], windows), records)
    # env 0 ends an episode every 2 steps: windows run across the final slots
    assert np.asarray(windows.done)[envs == 0].any()
    # every window start whose two successors are stored is drawn
    newest = max(k for k, (e, _) in records.items() if e == 1)
    assert set(ids[envs == 1, 0].tolist()) == set(range(1, newest - 3, 2))


def test_prioritized_replay_draws_transitions_by_priority_and_never_a_next_frame():
    steps, records = collect(make_vec([2, 4]), 12)
    buffer = make_replay_buffer(64, 2, prioritized=True, alpha=1.0, frame_stack=(N_FRAMES, 0))
    state = fill(buffer, steps, chunk=3)
    assert isinstance(state, PrioritizedFrameStackReplayBufferState)
    step = np.asarray(state.step)
    priorities = np.asarray(state.priorities)
    assert (priorities[step] == 1.0).all() and (priorities[~step] == 0.0).all()
    # raise one transition's priority: 24 transitions, weight 23 + 24 in total
    slots, envs = sampleable(buffer, state)
    state = jax.jit(buffer.update_priorities)(
        state, jnp.asarray(slots[5:6]), jnp.asarray(envs[5:6]), jnp.array([24.0 - 1e-6])
    )
    keys = jax.random.split(jax.random.PRNGKey(1), 40)
    draw = jax.jit(lambda s, k: buffer.sample_indices(s, k, 256))
    drawn = np.concatenate([np.stack(draw(state, k), -1) for k in keys])
    assert np.asarray(state.step)[drawn[:, 0], drawn[:, 1]].all()
    hits = np.mean((drawn[:, 0] == slots[5]) & (drawn[:, 1] == envs[5]))
    np.testing.assert_allclose(hits, 24 / 47, atol=0.03)
    batch = gather(buffer, state, drawn[:64, 0], drawn[:64, 1])
    assert_exact(batch, records)
    weights = jax.jit(buffer.importance_weights)(
        state, jnp.asarray(slots[:6]), jnp.asarray(envs[:6])
    )
    np.testing.assert_allclose(weights[5], (1.0 / 24.0) ** buffer.beta(state), rtol=1e-5)


@pytest.mark.parametrize("length, expected", [(1, [3, 4, 5, 6, 7, 8]), (2, [3, 4, 5, 6, 7])])
def test_prioritized_replay_draws_only_held_stacks_and_stored_windows(length, expected):
    # the wrapped ring of the long-game case above: steps 1 and 2 of game 0 lost their stack
    steps, records = collect(make_vec([5]), 9)
    buffer = make_replay_buffer(10, 1, prioritized=True, frame_stack=(N_FRAMES, 0))
    state = fill(buffer, steps)
    draw = jax.jit(lambda s, k: buffer.sample_indices(s, k, 512, length))
    slots, envs = draw(state, jax.random.PRNGKey(0))
    batch = gather(buffer, state, slots, envs)
    assert sorted(set(np.asarray(batch.action).tolist())) == expected
    assert_exact(batch, records)


# ---- pixel frames ------------------------------------------------------------------------------

PIXELS = (6, 6)


def pixel_frame(game: int, t: int) -> np.ndarray:
    """The ``uint8[6, 6]`` frame of step ``t`` of game ``game``: ``(190 + 40 game + 9 t + 6 i + j)
    % 256`` at pixel ``(i, j)``, so values run through 255 back to 0 and no two frames (nor a
    frame and its transpose) are alike."""
    i, j = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    return ((190 + 40 * game + 9 * t + 6 * i + j) % 256).astype(np.uint8)


def pixel_stack(game: int, t: int) -> np.ndarray:
    """``uint8[4, 6, 6]``: frames ``t - 3 .. t`` of the game, zeros before its first frame."""
    zero = np.zeros(PIXELS, np.uint8)
    return np.stack([pixel_frame(game, u) if u >= 0 else zero for u in range(t - 3, t + 1)])


def pixel_steps(episodes: list[tuple[int, str]]) -> tuple[list[Experience], dict]:
    """One env's vector steps (``[1, ...]`` leaves) for episodes of ``(length, end)``, ``end``
    "done", "truncated" or "running"; ``action`` is ``100 game + t``. Returns the steps and
    ``action -> (game, t)``."""
    steps, ids = [], {}
    for game, (length, end) in enumerate(episodes):
        for t in range(length):
            last = t == length - 1
            ids[100 * game + t] = (game, t)
            steps.append(
                Experience(
                    observation=pixel_stack(game, t)[None],
                    action=np.array([100 * game + t], np.int32),
                    reward=np.array([t], np.float32),
                    done=np.array([last and end == "done"]),
                    next_observation=pixel_stack(game, t + 1)[None],
                    truncated=np.array([last and end == "truncated"]),
                )
            )
    return steps, ids


@pytest.mark.parametrize("chunk", [1, 6], ids=["add", "add-batch-6"])
def test_uint8_pixel_frames_round_trip_across_the_rings_wraparound(chunk):
    # Games of 7 steps (8 slots each: 7 transitions and the final frame) and 2 steps of a third,
    # in a ring of 12 slots: 19 slots written, the newest 12 (7..18) held. Game 1 lies in slots
    # 8..15, physically 8..11 then 0..3; game 2 in 16, 17 and its pending next frame 18 (4..6).
    steps, ids = pixel_steps([(7, "done"), (7, "truncated"), (2, "running")])
    buffer = make_frame_stack_replay_buffer(12, 1, 4)
    state = fill(buffer, steps, chunk)
    assert state.frames.dtype == jnp.uint8 and state.frames.shape == (12, 1, *PIXELS)
    frames = np.asarray(state.frames)[:, 0]
    # storage round trip: each frame once, bit for bit, at its slot of the ring
    for slot, (game, t) in {
        8: (1, 0),
        11: (1, 3),
        0: (1, 4),
        3: (1, 7),
        4: (2, 0),
        6: (2, 2),
    }.items():
        np.testing.assert_array_equal(frames[slot], pixel_frame(game, t), err_msg=f"slot {slot}")
    assert frames.max() == 255 and frames[frames > 0].min() < 10  # through 255 and past 0
    # Game 0's transitions need frames of slots 0..3, overwritten by game 1: never drawn.
    expected = [100 + t for t in range(7)] + [200, 201]
    batch = gather(buffer, state, *sampleable(buffer, state))
    assert sorted(np.asarray(batch.action).tolist()) == expected
    draws = jit_sample(buffer, state, jax.random.PRNGKey(0), 256)
    assert set(np.asarray(draws.action).tolist()) == set(expected)
    for sample in (batch, draws):
        assert sample.observation.dtype == jnp.uint8 and sample.next_observation.dtype == jnp.uint8
        assert sample.observation.shape[1:] == (4, *PIXELS)
        obs, nxt = np.asarray(sample.observation), np.asarray(sample.next_observation)
        for i, key in enumerate(np.asarray(sample.action).tolist()):
            game, t = ids[key]
            np.testing.assert_array_equal(obs[i], pixel_stack(game, t), err_msg=f"{key}")
            np.testing.assert_array_equal(nxt[i], pixel_stack(game, t + 1), err_msg=f"{key}")
    batch = jax.tree.map(np.asarray, batch)
    row = {k: i for i, k in enumerate(batch.action.tolist())}
    # game 1, t = 6 (slot 14, physically 2): frames t = 3..6 from physical slots 11, 0, 1, 2,
    # and the true final frame (t = 7, physical slot 3) of a truncated game in its next stack
    i = row[106]
    assert batch.observation[i, :, 0, 0].tolist() == [(230 + 9 * u) % 256 for u in (3, 4, 5, 6)]
    assert batch.next_observation[i, :, 0, 0].tolist() == [
        (230 + 9 * u) % 256 for u in (4, 5, 6, 7)
    ]
    assert batch.truncated[i] and not batch.done[i]
    # game 2 starts after slot 15 (physically 3): zero padding, nothing of game 1
    assert not batch.observation[row[200], :3].any() and batch.observation[row[200], 3].all()
    assert not batch.observation[row[201], :2].any()
    assert int(state.mismatches) == 0


def test_a_million_atari_transitions_fit_in_8_gb():
    # shapes only: nothing is allocated
    n_envs, capacity = 8, 1_000_000
    example = Experience(
        observation=jax.ShapeDtypeStruct((n_envs, 4, 84, 84), jnp.uint8),
        action=jax.ShapeDtypeStruct((n_envs,), jnp.int32),
        reward=jax.ShapeDtypeStruct((n_envs,), jnp.float32),
        done=jax.ShapeDtypeStruct((n_envs,), bool),
        next_observation=jax.ShapeDtypeStruct((n_envs, 4, 84, 84), jnp.uint8),
        log_prob=jax.ShapeDtypeStruct((n_envs,), jnp.float32),
        truncated=jax.ShapeDtypeStruct((n_envs,), bool),
    )
    for prioritized in (False, True):
        buffer = make_replay_buffer(capacity, n_envs, prioritized=prioritized, frame_stack=(4, 0))
        state = jax.eval_shape(buffer.init, example)
        assert state.frames.shape == (125_000, 8, 84, 84) and state.frames.dtype == jnp.uint8
        total = sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state))
        # 7,056 bytes of frame per slot and at most 32 bytes of fields and indices
        assert 7_056 * capacity <= total <= 7_088 * capacity <= 8 * 10**9
        # storing observation and next_observation as float32 would take 225.8 GB
        assert 2 * 4 * 84 * 84 * 4 * capacity > 28 * total


# ---- memory ------------------------------------------------------------------------------------


def test_frames_keep_their_dtype_and_each_is_stored_once():
    shape = (4, 84, 84)
    example = Experience(
        observation=jnp.zeros((2, *shape), jnp.uint8),
        action=jnp.zeros((2,), jnp.int32),
        reward=jnp.zeros((2,), jnp.float32),
        done=jnp.zeros((2,), bool),
        next_observation=jnp.zeros((2, *shape), jnp.uint8),
        truncated=jnp.zeros((2,), bool),
    )
    buffer = make_frame_stack_replay_buffer(1_000, 2, 4)
    state = jax.eval_shape(buffer.init, example)
    assert state.frames.shape == (500, 2, 84, 84) and state.frames.dtype == jnp.uint8
    total = sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state))
    per_transition = total / 1_000
    assert 84 * 84 <= per_transition <= 84 * 84 + 32  # one frame, and a few bytes of fields


def test_mismatching_observations_are_counted_and_refused():
    rng = np.random.default_rng(0)
    steps, _ = collect(make_vec([4]), 6)
    steps = [
        s._replace(observation=rng.integers(1, 9, s.observation.shape, np.uint8)) for s in steps
    ]
    buffer = make_frame_stack_replay_buffer(32, 1, N_FRAMES)
    state = fill(buffer, steps)
    assert int(state.mismatches) >= 5
    with pytest.raises(ValueError, match="update_cfg.frame_stack_replay"):
        check_frame_stacks(state)
    check_frame_stacks(make_replay_buffer(8, 1).init(steps[0]))  # other buffers: nothing


def test_end_episodes_cuts_the_running_episode():
    steps, records = collect(make_vec([5]), 7)
    buffer = make_frame_stack_replay_buffer(32, 1, N_FRAMES)
    state = fill(buffer, steps[:2])  # game 0, t = 0, 1
    state = jax.jit(buffer.end_episodes)(state)
    # another env: a fresh game whose first frames look like game 0's
    again = jax.tree.map(lambda *xs: np.stack(xs), *steps[:3])
    state = jit_add_batch(buffer, state, again, np.ones((3, 1), bool))
    slots, envs = sampleable(buffer, state)
    batch = gather(buffer, state, slots, envs)
    assert np.asarray(batch.action).tolist() == [0, 1, 0, 1, 2]
    assert np.asarray(batch.truncated).tolist() == [0, 1, 0, 0, 0]  # the cut step
    np.testing.assert_array_equal(batch.next_observation[1], stack(0, 2))  # still exact
    np.testing.assert_array_equal(batch.observation[2], stack(0, 0))  # restarted, padded
    assert int(state.mismatches) == 0


# ---- configuration ----------------------------------------------------------------------------


def config_for(space: gym.Space, **update) -> AlgoConfig:
    return AlgoConfig(
        seed=0,
        algo_params=DQNParams(),
        update_cfg=UpdateConfig(**update),
        train_cfg=TrainConfig(),
        env_cfg=EnvConfig("Frames-v0", space, gym.spaces.Discrete(2)),
    )


def box(shape, dtype=np.uint8) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, shape, dtype)


@pytest.mark.parametrize(
    "space, update, expected",
    [
        (box((4, 84, 84)), {}, (4, 0)),
        (box((4, 84, 84, 3)), {}, (4, 0)),
        (box((84, 84, 4)), {"frame_stack_axis": -1}, (4, 2)),
        (box((84, 84, 3)), {}, None),
        (box((4, 84, 84), np.float32), {}, None),
        (box((4, 84, 84)), {"frame_stack_replay": False}, None),
        (box((6,), np.float32), {"frame_stack_replay": True}, (6, 0)),
        (gym.spaces.Discrete(3), {}, None),
    ],
    ids=[
        "atari-auto",
        "rgb-stack-auto",
        "channels-last-auto",
        "rgb-image-is-no-stack",
        "float-is-no-stack",
        "disabled",
        "forced",
        "discrete",
    ],
)
def test_frame_stack_replay_is_chosen_from_the_config(space, update, expected):
    assert frame_stack_from_config(config_for(space, **update)) == expected


@pytest.mark.parametrize(
    "space, update, match",
    [
        (box((4, 84, 84)), {"frame_stack_replay": "yes"}, "frame_stack_replay='yes'"),
        (box((4, 84, 84)), {"frame_stack_axis": 3}, "frame_stack_axis=3"),
        (gym.spaces.Discrete(3), {"frame_stack_replay": True}, "frame_stack_replay=True"),
    ],
    ids=["unknown-setting", "axis-out-of-range", "forced-on-discrete"],
)
def test_bad_frame_stack_settings_name_the_field(space, update, match):
    with pytest.raises(ValueError, match=match):
        frame_stack_from_config(config_for(space, **update))


def test_too_small_a_buffer_names_max_buffer_size():
    with pytest.raises(ValueError, match="max_buffer_size=8"):
        make_frame_stack_replay_buffer(8, 2, 4)


# ---- agents -----------------------------------------------------------------------------------

DQN_PARAMS = {
    "hidden_sizes": (16,),
    "start_step": 16,
    "skip_steps": 2,
    "exploration_fraction": 0.5,
    "prioritized": True,
}


def dqn_config(env, n_env_steps: int = 80, **update) -> AlgoConfig:
    return AlgoConfig(
        seed=0,
        algo_params=DQNParams(**DQN_PARAMS),
        update_cfg=UpdateConfig(
            learning_rate=1e-3, max_buffer_size=64, batch_size=8, n_epochs=1, **update
        ),
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig.from_env(env),
    )


def test_dqn_trains_on_the_gymnasium_path_with_frame_stack_replay():
    env = make_vec([3, 4], image=True)  # observations uint8[3, 4, 4]
    agent = DQN("frames", dqn_config(env, frame_stack_replay=True))
    assert isinstance(agent.replay_buffer, FrameStackReplayBuffer)
    agent.train(env, 80)
    assert agent.n_updates > 0 and np.isfinite(agent.last_info["loss_qvalue"])
    state = agent.buffer_state
    assert isinstance(state, PrioritizedFrameStackReplayBufferState)
    assert state.frames.dtype == jnp.uint8 and state.frames.shape == (32, 2, 4, 4)
    batch = jit_sample(agent.replay_buffer, state, jax.random.PRNGKey(0), 64)
    assert batch.observation.shape == (64, N_FRAMES, 4, 4) and batch.observation.dtype == jnp.uint8
    # each stack is the frames of consecutive steps of one game, zero-padded before its start
    obs, nxt = np.asarray(batch.observation), np.asarray(batch.next_observation)
    for o, n in zip(obs, nxt, strict=True):
        game, t = int(o[-1, 0, 0]) - 1, int(o[-1, 0, 1]) - 1
        np.testing.assert_array_equal(o, np.tile(stack(game, t)[:, None], (1, 4, 2)))
        np.testing.assert_array_equal(n[:-1], o[1:])
        np.testing.assert_array_equal(n[-1, 0, :2], [game + 1, t + 2])
    # observations and next observations reach the network as uint8 (its encoder scales pixels)
    seen = []

    def apply_fn(params, x, *args, **kwargs):
        seen.append(x.dtype)
        return agent.state.apply_fn(params, x, *args, **kwargs)

    state = agent.state.replace(apply_fn=apply_fn)
    processed = jax.jit(agent.process_experience_fn)(state, jax.random.PRNGKey(1), batch)
    jax.jit(agent.update_step_fn)(state, jax.random.PRNGKey(2), processed)
    assert len(seen) >= 2 and set(seen) == {jnp.dtype(jnp.uint8)}


class JaxFrames:
    """A gymnax-style env whose observations are stacks of ``N_FRAMES`` frames ``uint8[2] =
    [episode id, t + 1]`` (the id drawn at reset, in 1..255), zero-padded; episodes last 5
    steps and terminate."""

    def observation_space(self, params):
        return gym.spaces.Box(0, 255, (N_FRAMES, 2), np.uint8)

    def action_space(self, params):
        return gym.spaces.Discrete(2)

    @property
    def default_params(self):
        return None

    def is_truncated(self, state, params):
        return jnp.zeros((), bool)

    def reset_env(self, key, params):
        episode = jax.random.randint(key, (), 1, 256).astype(jnp.uint8)
        frame = jnp.stack([episode, jnp.ones((), jnp.uint8)])
        obs = jnp.zeros((N_FRAMES, 2), jnp.uint8).at[-1].set(frame)
        return obs, (obs, jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        obs, t = state
        t = t + 1
        frame = jnp.stack([obs[-1, 0], (t + 1).astype(jnp.uint8)])
        obs = jnp.concatenate([obs[1:], frame[None]], axis=0)
        return obs, (obs, t), jnp.ones((), jnp.float32), t >= 5, {}


def test_dqn_trains_on_the_compiled_path_with_frame_stack_replay():
    env = JaxEnv(JaxFrames(), name="JaxFrames")
    env_cfg = EnvConfig("JaxFrames", env.observation_space, env.action_space, n_envs=2)
    config = dataclasses.replace(dqn_config(make_vec([3, 4])), env_cfg=env_cfg)
    config.update_cfg.frame_stack_replay = True  # the JAX env's space is float32
    agent = DQN("frames", config)
    train_agent_compiled(agent, env, 80, progress_bar=False)
    runner = agent._compiled_cache["runner"]
    state = runner.buffer_state
    assert isinstance(state, PrioritizedFrameStackReplayBufferState)
    assert agent.n_updates > 0 and state.frames.dtype == jnp.uint8
    assert int(state.mismatches) == 0
    batch = jit_sample(agent.replay_buffer, state, jax.random.PRNGKey(0), 64)
    obs, nxt = np.asarray(batch.observation), np.asarray(batch.next_observation)
    for o, n in zip(obs, nxt, strict=True):
        np.testing.assert_array_equal(n[:-1], o[1:])
        t = int(o[-1, 1]) - 1
        expected_t = [u + 1 if u >= 0 else 0 for u in range(t - N_FRAMES + 1, t + 1)]
        np.testing.assert_array_equal(o[:, 1], expected_t)
        np.testing.assert_array_equal(o[:, 0], np.where(o[:, 1] > 0, o[-1, 0], 0))


def test_checkpoints_save_and_restore_the_frame_stack_buffer(tmp_path):
    env = make_vec([3, 4], image=True)
    agent = DQN("frames", dqn_config(env))  # "auto" picks frame replay for uint8[3, 4, 4]
    assert isinstance(agent.replay_buffer, FrameStackReplayBuffer)
    agent.train(env, 40)
    agent.save(tmp_path)
    restored = DQN("frames", dqn_config(make_vec([3, 4], image=True)))
    restored.restore(tmp_path)
    assert isinstance(restored.buffer_state, FrameStackReplayBufferState)
    assert int(restored.buffer_state.count.sum()) == 40
    assert_trees_equal(restored.buffer_state, agent.buffer_state)
    # the resumed buffer draws the same batches, frames still uint8
    for state in (agent.buffer_state, restored.buffer_state):
        batch = jit_sample(agent.replay_buffer, state, jax.random.PRNGKey(3), 16)
        assert batch.observation.dtype == jnp.uint8
        if state is agent.buffer_state:
            before = batch
    assert_trees_equal(batch, before)
    assert np.asarray(batch.observation).any()
    flat = DQN("frames", dqn_config(make_vec([3, 4], image=True), frame_stack_replay=False))
    with pytest.raises(ValueError, match="frame_stack_replay"):
        flat.restore(tmp_path)


def test_checkpoints_written_before_the_frame_stack_fields_still_restore(tmp_path):
    env = make_vec([3, 4], image=True)
    agent = DQN("frames", dqn_config(env))
    agent.train(env, 40)
    path = agent.save(tmp_path)
    saved = json.loads((path / "config.json").read_text())
    for name in ("frame_stack_replay", "frame_stack_axis"):  # as an older kitae wrote it
        del saved["fields"]["update_cfg"]["fields"][name]
    rewrite_checkpoint_file(path, "config.json", json.dumps(saved).encode())
    restored = DQN("frames", dqn_config(make_vec([3, 4], image=True)))
    restored.restore(tmp_path)  # the new fields hold their defaults: no difference
    assert_trees_equal(restored.buffer_state, agent.buffer_state)
    other = DQN("frames", dqn_config(make_vec([3, 4], image=True), frame_stack_axis=-1))
    with pytest.raises(ValueError, match="update_cfg.frame_stack_axis"):
        other.restore(tmp_path)  # set away from its default: a real difference
