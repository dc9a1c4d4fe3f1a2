"""PQN on gymnax CartPole-v1, fully compiled, many seeds at once; prints one JSON line.

``--config rejax`` (the speed comparison with ``peers/rejax_pqn.py``): rejax's PQN CartPole
setting (``configs/gymnax/cartpole.yaml`` of keraJLi/rejax): 16 envs x 128 steps, 5 epochs of 16
minibatches (128), lr 3e-4 constant, gradient norm 10, gamma 0.99, lambda 0.9, epsilon 1 -> 0.05
over the first half of the run, rewards unscaled, 64-64 ReLU with LayerNorm (rejax's PQN
network), 524,288 steps. rejax clips each gradient entry at 10 where kitae clips the global norm
at 10, and rejax reports time limits as terminations where kitae bootstraps them.
``--config purejaxql``: ``PQN``'s defaults, purejaxql's CartPole setting (see
``kitae.algos.pqn.PQNParams``), 500k steps.

``compile_s`` is ``jit(vmap(train)).lower(keys).compile()``; ``train_s`` the best of ``--repeats``
executions of the compiled program; ``sps`` counts all seeds together. ``eval_per_seed`` is each
seed's greedy return over 128 episodes of gymnax CartPole-v1 (``eval_mean`` their mean);
``train_return_tail_per_seed`` the mean return of the training episodes (epsilon-greedy) that
ended in the last 2% of the run. ``--set SECTION.FIELD=VALUE`` overrides a config field (as in
``learning.py``).

Usage::

    python benchmarks/pqn_cartpole.py --config rejax --seeds 5
    python benchmarks/pqn_cartpole.py --config purejaxql --seeds 5 --steps 200000
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
from common import emit, run_vmapped_seeds
from learning import apply_settings, parse_assignments

import kitae.config as cfg
from kitae.algos import PQN, PQNParams
from kitae.compiled import config_for_jax_env, make_agent_train
from kitae.envs.jax_env import make_jax_env

DEFAULT_STEPS = {"rejax": 524_288, "purejaxql": 500_000}
EVAL_EPISODES = 128


def build_agent(config_name: str, steps: int, overrides: dict[str, Any] | None = None):
    """The PQN agent configured as the named peer configuration, then ``overrides``
    (``section.field -> value``); returns ``(agent, env)``."""
    template = gym.make("CartPole-v1")
    if config_name == "rejax":
        n_envs = 16
        params = PQNParams(
            gamma=0.99,
            q_lambda=0.9,
            exploration_start=1.0,
            exploration_end=0.05,
            exploration_fraction=0.5,
            reward_scale=1.0,
            hidden_sizes=(64, 64),
            activation="relu",
            layer_norm=True,
        )
        update = cfg.UpdateConfig(
            learning_rate=3e-4,
            learning_rate_annealing=False,
            max_grad_norm=10.0,
            max_buffer_size=n_envs * 128,
            batch_size=n_envs * 128 // 16,
            n_epochs=5,
        )
        config = PQN.default_config(
            template, n_env_steps=steps, algo_params=params, update_cfg=update
        )
    else:
        n_envs = PQN.default_n_envs
        config = PQN.default_config(template, n_env_steps=steps, tuned=False)
    config.train_cfg.progress_bar = False
    env = make_jax_env("CartPole-v1")
    config = config_for_jax_env(config, env, n_envs)
    apply_settings(config, overrides or {})
    return PQN(f"pqn-{config_name}", config), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=tuple(DEFAULT_STEPS), default="rejax")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="config override, e.g. algo_params.q_lambda=0.65 (repeatable)",
    )
    args = parser.parse_args()
    steps = args.steps or DEFAULT_STEPS[args.config]

    agent, env = build_agent(args.config, steps, parse_assignments(args.set))
    train = make_agent_train(agent, env, steps)
    run = run_vmapped_seeds(agent, env, train, args.seed, args.seeds, args.repeats, EVAL_EPISODES)
    emit(
        {
            "system": "kitae",
            "algo": "pqn",
            "config": args.config,
            "seeds": args.seeds,
            **run,
            "overrides": args.set,
        }
    )


if __name__ == "__main__":
    main()
