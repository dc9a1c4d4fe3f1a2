"""The actor-learner loop against its floor and the sequential loop; prints JSON lines.

For the RL-Zoo DQN config (1 env, 50k steps, ``dqn_cartpole.py``) and the RL-Zoo PPO config
(8 envs, 100k steps, ``ppo_cartpole.py``) on gymnasium CartPole-v1, one ``timing`` line times,
in the same process and one after the other:

* ``updates_s``: the run's update calls alone, on data collected beforehand (a filled replay
  buffer for DQN, one rollout for PPO), as ``dqn_floor.py`` does;
* ``env_s``: the run's vector steps alone, with random actions, through the same vector env;
* ``acting_s``: the same steps acted by the agent's jitted ``explore`` (what the actor does);
* ``sequential_s``: ``agent.train`` with the sequential loop;
* ``actor_learner_s``: ``agent.train`` with ``train_cfg.actor_learner`` (``--max-staleness``).

Both loops run after a warm-up run of the same config has filled a temporary persistent
compilation cache, so neither pays for compilation (the updates alone exclude it too). Ratios:
``vs_floor`` = ``actor_learner_s / max(updates_s, env_s)`` (the target is <= 1.1),
``vs_sequential`` = ``actor_learner_s / sequential_s``, and ``sequential_vs_sum`` =
``sequential_s / (updates_s + env_s)``. On a loaded machine wall times say little about overlap;
CPU seconds say more: ``vs_floor_cpu_bound`` is ``max(learner thread + updates, actor thread,
learner thread + actor thread)`` in CPU seconds (the learner's timeline, the actor's, and the
GIL their Python shares) over ``max(updates_cpu_s, env_cpu_s)``: the best ``vs_floor`` that the
measured CPU work allows on two idle cores (``learner_wait_s`` / ``actor_wait_s`` say which side
waited). Then one ``learning`` line per seed (``--seeds``, default
5) trains in actor-learner mode and evaluates the greedy policy (20 episodes, seeds
10000..10019; ``first_solved``-style target 475 on >= 4 of 5 seeds), and a ``summary`` line per
config counts the seeds at 475. Every line carries the load average; timing ratios are only
meaningful on an otherwise idle machine.

Usage::

    python benchmarks/actor_learner.py                       # both configs, timing + 5 seeds
    python benchmarks/actor_learner.py --algo dqn --seeds 0  # timing only
    python benchmarks/actor_learner.py --algo ppo --no-timing --seeds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from common import EVAL_EPISODES, EVAL_SEED, emit, train_kitae
from dqn_cartpole import rl_zoo_config as dqn_rl_zoo_config
from ppo_cartpole import N_ENVS as PPO_N_ENVS
from ppo_cartpole import rl_zoo_config as ppo_rl_zoo_config

from kitae.algos import DQN, PPO
from kitae.base import BaseAgent
from kitae.buffer import Experience
from kitae.compilation_cache import enable_compilation_cache
from kitae.config import AlgoConfig
from kitae.envs.make import make_vec_env

ENV_ID = "CartPole-v1"
THRESHOLD = 475.0


@dataclasses.dataclass(frozen=True)
class Setting:
    """One benchmarked configuration.

    Attributes:
        algo: ``"dqn"`` or ``"ppo"``.
        agent_cls: the agent class.
        n_envs: vector envs.
        steps: env steps of a run.
        config: ``(env, seed, steps) -> AlgoConfig``, the RL-Zoo config.
        warmup_steps: a short run that compiles every program of the loop (at least one
            update).
    """

    algo: str
    agent_cls: type[BaseAgent]
    n_envs: int
    steps: int
    config: Callable[[Any, int, int], AlgoConfig]
    warmup_steps: int


SETTINGS = {
    "dqn": Setting("dqn", DQN, 1, 50_000, dqn_rl_zoo_config, 1_536),
    "ppo": Setting("ppo", PPO, PPO_N_ENVS, 100_000, ppo_rl_zoo_config, 1_024),
}


def make_agent(setting: Setting, seed: int, actor_learner: bool, max_staleness: int) -> tuple:
    """A fresh ``(env, agent)`` of ``setting`` with the loop mode set."""
    env = make_vec_env(ENV_ID, setting.n_envs)
    config = setting.config(env, seed, setting.steps)
    config.train_cfg.progress_bar = False
    config.train_cfg.actor_learner = actor_learner
    config.train_cfg.max_staleness = max_staleness
    mode = "actor-learner" if actor_learner else "sequential"
    return env, setting.agent_cls(f"{setting.algo}-{mode}-{seed}", config)


def random_actions(env: Any, rng: np.random.Generator) -> np.ndarray:
    """Random actions for a Discrete vector env."""
    return rng.integers(0, env.single_action_space.n, size=env.num_envs)


def time_updates(setting: Setting) -> tuple[float, float, int]:
    """Wall and CPU seconds of the run's update calls alone, compilation excluded, and their
    count."""
    env, agent = make_agent(setting, 0, False, 0)
    n_calls = agent.expected_updates(setting.steps)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    n_envs = env.num_envs
    if setting.algo == "dqn":
        for _ in range(2_000):
            actions = random_actions(env, rng)
            next_obs, rewards, terminated, truncated, _ = env.step(actions)
            agent.store_transition(
                Experience(
                    obs,
                    actions,
                    rewards,
                    terminated,
                    next_obs,
                    np.zeros(n_envs, np.float32),
                    truncated,
                )
            )
            obs = next_obs
        agent.flush()
        state, data, key = agent.state, agent.buffer_state, agent._update_key

        def update(state, data, key):
            state, data, key, _ = agent.update_fn(state, data, key)
            return state, data, key

    else:
        while not agent.rollout.full:
            actions, log_probs = agent.explore(obs)
            actions = np.asarray(actions)
            next_obs, rewards, terminated, truncated, _ = env.step(actions)
            agent.rollout.add(
                Experience(
                    obs, actions, rewards, terminated, next_obs, np.asarray(log_probs), truncated
                )
            )
            obs = next_obs
        data, _ = agent.rollout.flush()
        state, key = agent.state, agent._update_key

        def update(state, data, key):
            state, key, _ = agent.update_fn(state, data, key)
            return state, data, key

    state, data, key = update(state, data, key)  # compile
    jax.block_until_ready(state)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n_calls):
        state, data, key = update(state, data, key)
    jax.block_until_ready(state)
    return time.perf_counter() - start, time.process_time() - cpu, n_calls


def time_env(setting: Setting, acting: bool) -> tuple[float, float]:
    """Wall and CPU seconds of the run's vector steps alone: random actions, or (``acting``) the
    untrained agent's ``explore`` with its keys, as the actor does (compilation excluded)."""
    env, agent = make_agent(setting, 0, False, 0)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    if acting:
        agent.explore(obs)  # compile
    n_vector_steps = -(-setting.steps // env.num_envs)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n_vector_steps):
        if acting:
            actions, _ = agent.explore(obs)
            actions = np.asarray(actions)
            agent.env_steps += env.num_envs
        else:
            actions = random_actions(env, rng)
        obs, *_ = env.step(actions)
    return time.perf_counter() - start, time.process_time() - cpu


def time_loop(setting: Setting, actor_learner: bool, max_staleness: int) -> dict[str, Any]:
    """``agent.train`` of seed 0 in one loop mode (its programs already compiled to the cache by
    a warm-up run): wall time, CPU time of the process and of the calling (learner) thread, and
    the train summary."""
    env, agent = make_agent(setting, 0, actor_learner, max_staleness)
    agent.train(env, setting.warmup_steps)  # the same programs, compiled into the cache
    env, agent = make_agent(setting, 0, actor_learner, max_staleness)
    start, cpu, thread_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    summary = agent.train(env, setting.steps)
    return {
        "seconds": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "learner_cpu_s": time.thread_time() - thread_cpu,
        **summary,
    }


def timing(setting: Setting, max_staleness: int) -> None:
    """Prints the ``timing`` line of ``setting``."""
    sequential = time_loop(setting, False, max_staleness)
    overlapped = time_loop(setting, True, max_staleness)
    updates_s, updates_cpu_s, n_calls = time_updates(setting)
    env_s, env_cpu_s = time_env(setting, acting=False)
    acting_s, _ = time_env(setting, acting=True)
    floor = max(updates_s, env_s)
    al_s = overlapped["seconds"]
    learner_cpu, actor_cpu = overlapped["learner_cpu_s"], overlapped["actor_cpu_s"]
    # serial resources: the learner's timeline (its Python, then the updates, computed on XLA's
    # threads while it waits), the actor thread, and the GIL the two threads' Python shares
    critical_cpu = max(learner_cpu + updates_cpu_s, actor_cpu, learner_cpu + actor_cpu)
    emit(
        {
            "benchmark": "actor_learner",
            "kind": "timing",
            "algo": setting.algo,
            "config": "rl-zoo",
            "env": ENV_ID,
            "steps": setting.steps,
            "max_staleness": max_staleness,
            "update_calls": n_calls,
            "updates_s": round(updates_s, 3),
            "env_s": round(env_s, 3),
            "acting_s": round(acting_s, 3),
            "sequential_s": round(sequential["seconds"], 3),
            "actor_learner_s": round(al_s, 3),
            "vs_floor": round(al_s / floor, 3),
            "vs_sequential": round(al_s / sequential["seconds"], 3),
            "sequential_vs_sum": round(sequential["seconds"] / (updates_s + env_s), 3),
            "acting_lag_max": overlapped["acting_lag_max"],
            "acting_lag_mean": round(overlapped["acting_lag_mean"], 3),
            "learner_wait_s": round(overlapped["learner_wait_s"], 3),
            "actor_wait_s": round(overlapped["actor_wait_s"], 3),
            "updates_cpu_s": round(updates_cpu_s, 3),
            "env_cpu_s": round(env_cpu_s, 3),
            "sequential_cpu_s": round(sequential["cpu_s"], 3),
            "actor_learner_cpu_s": round(overlapped["cpu_s"], 3),
            "learner_thread_cpu_s": round(overlapped["learner_cpu_s"], 3),
            "actor_thread_cpu_s": round(overlapped["actor_cpu_s"], 3),
            "vs_floor_cpu_bound": round(critical_cpu / max(updates_cpu_s, env_cpu_s), 3),
        }
    )


def learning(setting: Setting, seeds: list[int], max_staleness: int) -> None:
    """Prints one ``learning`` line per seed (actor-learner mode) and the ``summary`` line."""
    finals = []
    for seed in seeds:
        env, agent = make_agent(setting, seed, True, max_staleness)
        train_s, _, returns = train_kitae(agent, env, ENV_ID, setting.steps)
        finals.append(float(np.mean(returns)))
        emit(
            {
                "benchmark": "actor_learner",
                "kind": "learning",
                "algo": setting.algo,
                "config": "rl-zoo",
                "env": ENV_ID,
                "seed": seed,
                "steps": agent.env_steps,
                "max_staleness": max_staleness,
                "train_s": round(train_s, 3),
                "eval_mean": finals[-1],
                "eval_returns": returns,
                "eval_episodes": EVAL_EPISODES,
                "eval_seed": EVAL_SEED,
                "n_updates": agent.n_updates,
            }
        )
    emit(
        {
            "benchmark": "actor_learner",
            "kind": "summary",
            "algo": setting.algo,
            "config": "rl-zoo",
            "max_staleness": max_staleness,
            "eval_means": finals,
            "seeds_at_threshold": sum(r >= THRESHOLD for r in finals),
            "n_seeds": len(finals),
            "threshold": THRESHOLD,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("dqn", "ppo", "all"), default="all")
    parser.add_argument("--max-staleness", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=5, help="learning runs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="first learning seed")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing line")
    args = parser.parse_args()

    cache = tempfile.mkdtemp(prefix="kitae-actor-learner-")
    enable_compilation_cache(cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        for algo in ("dqn", "ppo") if args.algo == "all" else (args.algo,):
            setting = SETTINGS[algo]
            if not args.no_timing:
                timing(setting, args.max_staleness)
            if args.seeds:
                seeds = list(range(args.seed, args.seed + args.seeds))
                learning(setting, seeds, args.max_staleness)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
