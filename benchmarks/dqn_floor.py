"""The floor of the RL-Zoo DQN run: its gradient updates alone plus random-action env steps.

Times (1) the same number of 128-step update calls the RL-Zoo config makes in 50k steps
(192 calls, 24,576 gradient steps of batch 64 on a 256-256 MLP) on a filled replay buffer, each a
single compiled call, compilation excluded; and (2) 50k CartPole-v1 steps with random actions
through the same single-env vector env. ``floor_s`` is their sum; a training loop can't beat it.

Usage::

    python benchmarks/dqn_floor.py --steps 50000
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from common import emit
from dqn_cartpole import rl_zoo_config

from kitae.algos import DQN
from kitae.buffer import Experience
from kitae.envs.make import make_vec_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    args = parser.parse_args()

    env = make_vec_env("CartPole-v1", 1)
    config = rl_zoo_config(env, 0, args.steps)
    config.train_cfg.progress_bar = False
    agent = DQN("floor", config)
    n_calls = agent.expected_updates(args.steps)

    # Fill the buffer with real transitions (untimed), then time the updates alone.
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        actions = rng.integers(0, 2, size=1)
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        agent.store_transition(
            Experience(
                obs, actions, rewards, terminated, next_obs, np.zeros(1, np.float32), truncated
            )
        )
        obs = next_obs
    agent.flush()
    state, key = agent.state, agent._update_key
    state, key, _ = agent.update_fn(state, agent.buffer_state, key)  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(n_calls):
        state, key, _ = agent.update_fn(state, agent.buffer_state, key)
    jax.block_until_ready(state)
    updates_s = time.perf_counter() - start

    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(args.steps):
        env.step(rng.integers(0, 2, size=1))
    env_s = time.perf_counter() - start
    emit(
        {
            "system": "floor",
            "algo": "dqn",
            "config": "rl-zoo",
            "steps": args.steps,
            "update_calls": n_calls,
            "gradient_steps": n_calls * config.update_cfg.n_epochs,
            "updates_s": round(updates_s, 3),
            "env_s": round(env_s, 3),
            "floor_s": round(updates_s + env_s, 3),
            "ms_per_gradient_step": round(
                updates_s / (n_calls * config.update_cfg.n_epochs) * 1e3, 4
            ),
        }
    )


if __name__ == "__main__":
    main()
