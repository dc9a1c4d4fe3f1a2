"""Greedy evaluation of a trained agent on fresh gymnasium envs."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from kitae.envs.make import make_vec_env


def evaluate(
    agent: Any,
    env_id: str,
    n_episodes: int = 20,
    seed: int = 10_000,
    *,
    greedy: bool = True,
    max_steps: int = 100_000,
    **env_kwargs: Any,
) -> np.ndarray:
    """Returns of ``n_episodes`` episodes; episode ``i`` starts from ``reset(seed=seed + i)``.

    Runs the episodes side by side in one vector env, using ``agent.select_action`` (or
    ``agent.explore`` when ``greedy=False``) on the batch of observations. The agent's
    interaction keys are restored afterwards, so evaluating during training does not change it.

    Args:
        agent: any agent with ``select_action(observations) -> (actions, log_probs)``.
        env_id: a registered gymnasium id.
        n_episodes: number of episodes.
        seed: seed of the first episode.
        greedy: use ``select_action`` rather than ``explore``.
        max_steps: safety cap on vector steps.
        **env_kwargs: passed to ``gymnasium.make``.

    Returns:
        ``float64[n_episodes]`` undiscounted returns.
    """
    env = make_vec_env(env_id, n_episodes, **env_kwargs)
    act = agent.select_action if greedy else agent.explore
    preserved = getattr(agent, "preserved_keys", contextlib.nullcontext)
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
                running &= ~(terminated | truncated)
                if not running.any():
                    break
        finally:
            env.close()
    return returns
