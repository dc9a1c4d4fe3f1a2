"""DQN on gymnasium CartPole-v1 through kitae's gymnasium loop; prints one JSON line.

``--config rl-zoo`` uses the RL-Zoo CartPole hyperparameters (the speed comparison with SBX):
1 env, Adam lr 2.3e-3, batch 64, buffer 100k, learning starts at 1000
(``common.learning_start``: at most half the run), gamma 0.99, train every 256
steps with 128 gradient steps, epsilon 1.0 -> 0.04 over the first 16% of 50k steps, 256-256 ReLU,
Huber loss, no gradient clipping, hard target copy. RL-Zoo syncs the target every 10 env steps,
i.e. once between two 128-step bursts; kitae counts ``target_update_period`` in gradient steps, so
128 gives the same schedule (the target is constant during a burst and equals the online net after
it). ``--config default`` uses ``DQN.default_config`` with ``DQN.default_n_envs`` envs (kitae's
own settings).

``train_s`` is the wall time of ``agent.train`` (compilation included); evaluations are not
timed: the final one, and with ``--eval-every K`` one every K steps (``checkpoints``, and
``first_solved``, the first of them whose mean greedy return is >= 475).

Usage::

    python benchmarks/dqn_cartpole.py --seed 0 --config rl-zoo
    python benchmarks/dqn_cartpole.py --seed 0 --config default --steps 50000
"""

from __future__ import annotations

import argparse

from common import learning_start, train_and_report

import kitae.config as cfg
from kitae.algos import DQN, DQNParams
from kitae.envs.make import make_vec_env

ENV_ID = "CartPole-v1"


def rl_zoo_config(env, seed: int, steps: int) -> cfg.AlgoConfig:
    """The RL-Zoo CartPole-v1 DQN hyperparameters, expressed in kitae's config."""
    params = DQNParams(
        gamma=0.99,
        exploration_start=1.0,
        exploration_end=0.04,
        exploration_fraction=0.16,
        double_q=False,
        dueling=False,
        loss="huber",
        tau=1.0,
        target_update_period=128,
        skip_steps=256,
        start_step=learning_start(1000, steps),
        hidden_sizes=(256, 256),
        activation="relu",
    )
    update = cfg.UpdateConfig(
        learning_rate=2.3e-3,
        learning_rate_annealing=False,
        max_grad_norm=None,
        max_buffer_size=100_000,
        batch_size=64,
        n_epochs=128,
    )
    return DQN.default_config(
        env, seed=seed, n_env_steps=steps, algo_params=params, update_cfg=update
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--config", choices=("rl-zoo", "default"), default="rl-zoo")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate every this many steps (0: only at the end)",
    )
    parser.add_argument("--progress", action="store_true", help="show the progress bar")
    args = parser.parse_args()

    if args.config == "rl-zoo":
        env = make_vec_env(ENV_ID, 1)
        config = rl_zoo_config(env, args.seed, args.steps)
    else:
        env = make_vec_env(ENV_ID, DQN.default_n_envs)
        config = DQN.default_config(env, seed=args.seed, n_env_steps=args.steps)
    config.train_cfg.progress_bar = args.progress
    agent = DQN(f"dqn-{args.config}-{args.seed}", config)
    train_and_report(agent, env, "dqn", args.config, args.seed, args.eval_every)


if __name__ == "__main__":
    main()
