"""MinAtar through gymnax, fully compiled, many seeds vmapped; prints one JSON line per run.

One run trains ``--algo`` on ``--env`` for ``--steps`` env steps per seed, ``--seeds`` seeds
in one ``jit(vmap(train))`` program (``kitae.compiled.make_agent_train``), then evaluates each
seed's greedy policy on ``--eval-episodes`` episodes of the same gymnax env
(``kitae.compiled.evaluate_compiled``). Both agents use ``encoder="auto"``, which picks the
MinAtar network's convolution (16 3x3 filters, stride 1) for the 10x10xC grids, followed by
one 128-unit ReLU layer, as in "MinAtar: An Atari-Inspired Testbed for Thorough and
Reproducible Reinforcement Learning Experiments", Young and Tian, 2019.

Configurations (PureJaxRL's MinAtar PPO and the MinAtar paper's DQN, scaled to this machine):

* ``ppo``: 64 envs x 128 steps, 4 epochs x 8 minibatches, lr 5e-4 annealed to 0, gamma 0.99,
  GAE lambda 0.95, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5.
* ``dqn``: 16 envs, replay ``--buffer`` (default 100k, the paper's), batch 32, one gradient
  step every 16 transitions (one per vector step), lr 2.5e-4, Huber loss, hard target copy
  every 1,000 gradient steps (clipped to the run), epsilon 1 -> 0.1 over the first 10% of the
  run, learning starts at ``min(5k, steps / 2)``, no double-Q, no dueling head.

``compile_s`` is ``jit(vmap(train)).lower(keys).compile()``, ``train_s`` the wall time of one
execution of the compiled program, ``sps`` counts all seeds together. ``eval_per_seed`` is the
greedy mean return of each seed, ``train_return_tail_per_seed`` the mean return of the training
episodes (exploring policy) that ended in the last 5% of the run.

Usage::

    python benchmarks/minatar.py --algo ppo --env Breakout-MinAtar --seeds 5 --steps 500000
    python benchmarks/minatar.py --algo dqn --env Asterix-MinAtar --seeds 5 --steps 200000
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import emit, learning_start, update_period

import kitae.config as cfg
from kitae.algos import DQN, PPO, DQNParams, PPOParams
from kitae.compiled import config_for_jax_env, evaluate_compiled, make_agent_train
from kitae.envs.jax_env import make_jax_env
from kitae.schedules import off_policy_gradient_steps

GAMES = ("Breakout-MinAtar", "Asterix-MinAtar", "SpaceInvaders-MinAtar", "Freeway-MinAtar")


def build_agent(algo: str, env_id: str, steps: int, buffer: int):
    """The kitae agent of ``algo`` on the gymnax MinAtar game ``env_id`` and the JAX env."""
    env = make_jax_env(env_id)
    if algo == "ppo":
        n_envs, n_steps, minibatches = 64, 128, 8
        params = PPOParams(
            gamma=0.99,
            gae_lambda=0.95,
            clip_eps=0.2,
            entropy_coef=0.01,
            value_coef=0.5,
            hidden_sizes=(128,),
            activation="relu",
            encoder="auto",
        )
        update = cfg.UpdateConfig(
            learning_rate=5e-4,
            learning_rate_annealing=True,
            max_grad_norm=0.5,
            max_buffer_size=n_envs * n_steps,
            batch_size=n_envs * n_steps // minibatches,
            n_epochs=4,
        )
        agent_cls = PPO
    else:
        n_envs = 16
        params = DQNParams(
            gamma=0.99,
            exploration_start=1.0,
            exploration_end=0.1,
            exploration_fraction=0.1,
            double_q=False,
            loss="huber",
            tau=1.0,
            target_update_period=1_000,
            skip_steps=n_envs,
            start_step=learning_start(5_000, steps),
            hidden_sizes=(128,),
            activation="relu",
            encoder="auto",
        )
        update = cfg.UpdateConfig(
            learning_rate=2.5e-4, max_buffer_size=buffer, batch_size=32, n_epochs=1
        )
        agent_cls = DQN
    config = agent_cls.default_config(
        env, n_env_steps=steps, algo_params=params, update_cfg=update, tuned=False
    )
    config.train_cfg.progress_bar = False
    config = config_for_jax_env(config, env, n_envs)
    if algo == "dqn":
        config.algo_params.target_update_period = update_period(
            1_000, off_policy_gradient_steps(config)
        )
    try:
        agent = agent_cls(f"{algo}-{env_id}", config)
    except ValueError as err:
        raise SystemExit(f"invalid configuration: {err}") from None
    return agent, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("dqn", "ppo"), required=True)
    parser.add_argument("--env", choices=GAMES, default=GAMES[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=500_000, help="env steps per seed")
    parser.add_argument("--buffer", type=int, default=100_000, help="DQN replay capacity")
    parser.add_argument("--eval-episodes", type=int, default=32)
    args = parser.parse_args()
    if args.steps < 1 or args.seeds < 1 or args.eval_episodes < 1:
        raise SystemExit("--steps, --seeds and --eval-episodes must be >= 1.")

    agent, env = build_agent(args.algo, args.env, args.steps, args.buffer)
    train = make_agent_train(agent, env, args.steps)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(args.seed, args.seed + args.seeds))
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    runner, metrics = compiled(keys)
    jax.block_until_ready(runner)
    train_s = time.perf_counter() - start
    steps = int(train.n_iterations * train.steps_per_iteration)

    greedy = agent.act_fn(greedy=True)

    def act(state, key, obs):
        return greedy(state, key, obs, jnp.zeros((), jnp.int32), {})[0]

    eval_keys = jax.vmap(jax.random.PRNGKey)(np.arange(args.seeds) + 777)
    returns = jax.jit(
        jax.vmap(
            lambda s, k: evaluate_compiled(
                act, s, env, k, args.eval_episodes, to_env_action=agent.to_env_action
            )
        )
    )(runner.agent_state, eval_keys)
    per_seed = np.asarray(returns).mean(axis=1)
    train_returns = np.asarray(metrics.episode_return)
    tail = max(1, train_returns.shape[1] // 20)
    train_tail = np.nanmean(train_returns[:, -tail:], axis=1)
    emit(
        {
            "benchmark": "minatar",
            "system": "kitae",
            "algo": args.algo,
            "env": args.env,
            "seeds": args.seeds,
            "steps": steps,
            "n_envs": agent.config.env_cfg.n_envs,
            "buffer": args.buffer if args.algo == "dqn" else None,
            "compile_s": round(compile_s, 3),
            "train_s": round(train_s, 3),
            "sps": round(args.seeds * steps / train_s, 1),
            "eval_episodes": args.eval_episodes,
            "eval_per_seed": [round(float(r), 2) for r in per_seed],
            "eval_median": float(np.median(per_seed)),
            "train_return_tail_per_seed": [round(float(r), 2) for r in train_tail],
        }
    )


if __name__ == "__main__":
    main()
