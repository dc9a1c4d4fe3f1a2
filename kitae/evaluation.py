"""Greedy evaluation of a trained agent: on gymnasium envs, on JAX envs (compiled), and on video."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from kitae.envs.jax_env import JaxEnv, make_jax_env
from kitae.envs.make import build_env, make_vec_env


def evaluate(
    agent: Any,
    env_id: str,
    n_episodes: int = 20,
    seed: int = 10_000,
    *,
    greedy: bool = True,
    max_steps: int = 100_000,
    progress_bar: bool = False,
    **env_kwargs: Any,
) -> np.ndarray:
    """Returns of ``n_episodes`` episodes; episode ``i`` starts from ``reset(seed=seed + i)``.

    Runs the episodes side by side in one vector env, using ``agent.select_action`` (or
    ``agent.explore`` when ``greedy=False``) on the batch of observations. The agent's
    interaction keys are restored afterwards, so evaluating during training does not change it.

    Args:
        agent: any agent with ``select_action(observations) -> (actions, log_probs)``.
        env_id: a registered gymnasium id; built as an evaluation env (``training=False``: an
            Atari game's returns are game scores, see :mod:`kitae.envs.atari`).
        n_episodes: number of episodes.
        seed: seed of the first episode.
        greedy: use ``select_action`` rather than ``explore``.
        max_steps: safety cap on vector steps.
        progress_bar: show finished episodes in a progress bar.
        **env_kwargs: passed to ``gymnasium.make``.

    Returns:
        ``float64[n_episodes]`` undiscounted returns.
    """
    env = make_vec_env(env_id, n_episodes, training=False, **env_kwargs)
    act = agent.select_action if greedy else agent.explore
    preserved = getattr(agent, "preserved_keys", contextlib.nullcontext)
    bar = tqdm(total=n_episodes, unit="episode", desc="eval", disable=not progress_bar)
    with preserved():
        try:
            obs, _ = env.reset(seed=seed)
            returns = np.zeros(n_episodes)
            running = np.ones(n_episodes, bool)
            to_env = getattr(agent, "to_env_action", lambda a: a)
            for _ in range(max_steps):
                actions, _ = act(obs)
                obs, rewards, terminated, truncated, _ = env.step(to_env(np.asarray(actions)))
                returns += rewards * running
                ended = running & (terminated | truncated)
                running &= ~ended
                bar.update(int(ended.sum()))
                if not running.any():
                    break
        finally:
            env.close()
            bar.close()
    return returns


def evaluate_compiled(
    act_fn: Callable[[Any, jax.Array, Any], jax.Array],
    state: Any,
    env: JaxEnv | Any,
    key: jax.Array,
    n_episodes: int = 128,
    max_steps: int | None = None,
    to_env_action: Callable[[jax.Array], jax.Array] | None = None,
    init_actor_state: Callable[[int], Any] | None = None,
) -> jax.Array:
    """Returns ``[n_episodes]`` undiscounted returns of ``act_fn`` on a JAX env, compiled.

    Args:
        act_fn: ``(state, key, observations [N, ...]) -> actions [N]`` (e.g. greedy).
        state: the agent state.
        env: the JAX env.
        key: PRNG key (episode resets).
        n_episodes: episodes run side by side.
        max_steps: step cap (default: the env's ``max_steps_in_episode``).
        to_env_action: maps actions to env actions.
        init_actor_state: for an ``act_fn(state, key, observations, actor_state) -> (actions,
            actor_state)`` with an acting state (e.g. recurrent agents): ``n -> actor_state``,
            its value at the start of the episodes.
    """
    env = make_jax_env(env)
    to_env_action = to_env_action or (lambda a: a)
    if max_steps is None:
        max_steps = int(getattr(env.params, "max_steps_in_episode", 1000))
    key, reset_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset)(jax.random.split(reset_key, n_episodes))

    def body(carry, step_key):
        obs, env_state, returns, running, actor_state = carry
        k_act, k_env = jax.random.split(step_key)
        if init_actor_state is None:
            actions = act_fn(state, k_act, obs)
        else:  # each episode runs once: the acting state needs no reset
            actions, actor_state = act_fn(state, k_act, obs, actor_state)
        step = jax.vmap(env.step)(
            jax.random.split(k_env, n_episodes), env_state, to_env_action(actions)
        )
        returns = returns + step.reward * running
        running = running & ~(step.terminated | step.truncated)
        return (step.observation, step.state, returns, running, actor_state), None

    actor_state = None if init_actor_state is None else init_actor_state(n_episodes)
    returns, running = jnp.zeros((n_episodes,), jnp.float32), jnp.ones((n_episodes,), bool)
    init = (obs, env_state, returns, running, actor_state)
    (_, _, returns, _, _), _ = jax.lax.scan(body, init, jax.random.split(key, max_steps))
    return returns


def make_jax_evaluator(
    agent: Any, env: Any, n_episodes: int = 128, max_steps: int | None = None
) -> Callable[[Any, jax.Array], jax.Array]:
    """A jitted ``evaluate(state, key) -> returns [n_episodes]`` of the agent's greedy policy on
    a JAX env (see :func:`evaluate_compiled`); compiled once, reusable with any
    state of the same structure, and vmappable over states and keys.

    Args:
        agent: a kitae agent (its ``act_fn(greedy=True)`` and ``to_env_action`` are used).
        env: a gymnax id, gymnax env or :class:`~kitae.envs.jax_env.JaxEnv`.
        n_episodes: episodes run side by side.
        max_steps: step cap (default: the env's ``max_steps_in_episode``).
    """
    env = agent.as_jax_env(env) if hasattr(agent, "as_jax_env") else make_jax_env(env)
    greedy = agent.act_fn(greedy=True)
    hyperparams = dict(getattr(agent, "hyperparams", {}) or {})

    init_actor_state = getattr(agent, "init_actor_state", None)

    def act(state, key, observations, *actor_state):
        out = greedy(state, key, observations, jnp.zeros((), jnp.int32), hyperparams, *actor_state)
        return out[0] if init_actor_state is None else (out[0], out[2])

    def evaluate_fn(state: Any, key: jax.Array) -> jax.Array:
        return evaluate_compiled(
            act,
            state,
            env,
            key,
            n_episodes,
            max_steps,
            to_env_action=agent.to_env_action,
            init_actor_state=init_actor_state,
        )

    return jax.jit(evaluate_fn)


def evaluate_jax(agent: Any, env: Any, n_episodes: int = 128, seed: int = 10_000) -> np.ndarray:
    """Greedy returns of ``agent`` on a JAX env, compiled (the evaluator is cached on the agent
    per env and episode count, so periodic evaluations compile once).

    Returns:
        ``float32[n_episodes]`` undiscounted returns.
    """
    cache = agent.__dict__.setdefault("_jax_evaluators", {})
    cache_key = (id(env) if not isinstance(env, str) else env, n_episodes)
    if cache_key not in cache:
        cache[cache_key] = make_jax_evaluator(agent, env, n_episodes)
    returns = cache[cache_key](agent.state, jax.random.PRNGKey(seed))
    return np.asarray(jax.device_get(returns))


def record_video(
    agent: Any,
    env_id: str,
    video_dir: str | Path,
    n_episodes: int = 1,
    seed: int = 10_000,
    *,
    name_prefix: str = "eval",
    max_steps: int = 100_000,
) -> list[Path]:
    """Records greedy episodes as mp4 files with gymnasium's ``RecordVideo``.

    Args:
        agent: a kitae agent.
        env_id: a gymnasium id whose env renders ``rgb_array`` frames.
        video_dir: where the videos go (created).
        n_episodes: episodes to record; episode ``i`` starts from ``reset(seed=seed + i)``.
        seed: seed of the first episode.
        name_prefix: file name prefix (``<prefix>-episode-<i>.mp4``).
        max_steps: step cap per episode.

    An agent with an acting state (``init_actor_state``, e.g. R2D2's recurrent core) acts each
    episode from a fresh one (see :func:`greedy_single_env_actor`); its training state is left
    alone.

    Returns:
        The video files written.

    Raises:
        ImportError: if moviepy (``pip install 'kitae[video]'``) is missing.
        ValueError: if the env cannot render ``rgb_array`` frames.
    """
    import gymnasium as gym

    try:
        import moviepy  # noqa: F401
    except ImportError as err:
        raise ImportError("video needs moviepy: pip install 'kitae[video]'.") from err
    video_dir = Path(video_dir)
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renderers need no sound device
    try:
        env = build_env(env_id, training=False, render_mode="rgb_array")
    except (TypeError, gym.error.Error) as err:
        raise ValueError(f"{env_id} cannot render rgb_array frames for a video: {err}") from err
    try:  # one frame first, so that a renderer that cannot work fails before any video
        env.reset(seed=seed)
        frame = env.render()
    except gym.error.DependencyNotInstalled as err:
        env.close()
        raise ImportError(f"rendering {env_id} needs more packages: {err}") from err
    if frame is None:
        env.close()
        raise ValueError(f"{env_id} rendered no rgb_array frame: it cannot be recorded.")
    with warnings.catch_warnings():  # an existing folder is expected: files are named per step
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
        env = gym.wrappers.RecordVideo(
            env,
            str(video_dir),
            episode_trigger=lambda _: True,
            name_prefix=name_prefix,
            disable_logger=True,
        )
    to_env = getattr(agent, "to_env_action", lambda a: a)
    preserved = getattr(agent, "preserved_keys", contextlib.nullcontext)
    init_actor_state = getattr(agent, "init_actor_state", None)
    act = greedy_single_env_actor(agent)
    before = set(video_dir.glob("*.mp4")) if video_dir.exists() else set()
    with preserved():
        try:
            for i in range(n_episodes):
                obs, _ = env.reset(seed=seed + i)
                actor_state = None if init_actor_state is None else init_actor_state(1)
                for _ in range(max_steps):
                    batch = jax.tree.map(lambda x: np.asarray(x)[None], obs)
                    actions, actor_state = act(batch, actor_state)
                    action = np.asarray(to_env(np.asarray(actions)))[0]
                    obs, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        break
        finally:
            env.close()
    return sorted(set(video_dir.glob("*.mp4")) - before)


def greedy_single_env_actor(agent: Any) -> Callable[[Any, Any], tuple[Any, Any]]:
    """``act(observations, actor_state) -> (actions, actor_state)``: the agent's greedy action on
    a batch ``observations [N, ...]`` (or a dict of them), for a host loop that owns the acting
    state.

    An agent with an acting state (``init_actor_state``, e.g. a recurrent core) acts through its
    ``act_fn(greedy=True)`` from the given ``actor_state`` (start each episode from
    ``init_actor_state(N)``) and returns the next one; any other agent uses ``select_action``
    (``actor_state`` stays ``None``).
    """
    if getattr(agent, "init_actor_state", None) is None:

        def act_stateless(observations: Any, actor_state: Any) -> tuple[Any, Any]:
            actions, _ = agent.select_action(observations)
            return actions, actor_state

        return act_stateless
    greedy = agent.act_fn(greedy=True)
    hyperparams = dict(getattr(agent, "hyperparams", {}) or {})

    def act(observations: Any, actor_state: Any) -> tuple[Any, Any]:
        actions, _, actor_state = greedy(
            agent.acting_state,
            agent.interact_keys(observations),
            observations,
            agent.env_steps,
            hyperparams,
            actor_state,
        )
        return actions, actor_state

    return act
