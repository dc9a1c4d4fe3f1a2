"""PPO on gymnasium CartPole-v1 through kitae's gymnasium loop; prints one JSON line.

RL-Zoo CartPole hyperparameters (the speed comparison with SBX): 8 envs x 32 steps, one
minibatch of 256, 20 epochs, gamma 0.98, GAE lambda 0.8, lr 1e-3 and clip 0.2 both decayed
linearly to 0, entropy 0, value coefficient 0.5, gradient norm 0.5, 64-64 tanh actor and critic
(SB3 defaults for the rest).

``train_s`` is the wall time of ``agent.train`` (compilation included); evaluations are not timed.

Usage::

    python benchmarks/ppo_cartpole.py --seed 0 --steps 100000
"""

from __future__ import annotations

import argparse

from common import train_and_report

import kitae.config as cfg
from kitae.algos import PPO, PPOParams
from kitae.envs.make import make_vec_env

ENV_ID = "CartPole-v1"
N_ENVS = 8


def rl_zoo_config(env, seed: int, steps: int) -> cfg.AlgoConfig:
    """The RL-Zoo CartPole-v1 PPO hyperparameters, expressed in kitae's config."""
    params = PPOParams(
        gamma=0.98,
        gae_lambda=0.8,
        clip_eps=0.2,
        clip_eps_annealing=True,
        entropy_coef=0.0,
        value_coef=0.5,
        normalize_advantages=True,
        hidden_sizes=(64, 64),
        activation="tanh",
    )
    update = cfg.UpdateConfig(
        learning_rate=1e-3,
        learning_rate_annealing=True,
        max_grad_norm=0.5,
        max_buffer_size=32 * N_ENVS,
        batch_size=256,
        n_epochs=20,
    )
    return PPO.default_config(
        env, seed=seed, n_env_steps=steps, algo_params=params, update_cfg=update
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate every this many steps (0: only at the end)",
    )
    parser.add_argument("--progress", action="store_true", help="show the progress bar")
    args = parser.parse_args()

    env = make_vec_env(ENV_ID, N_ENVS)
    config = rl_zoo_config(env, args.seed, args.steps)
    config.train_cfg.progress_bar = args.progress
    agent = PPO(f"ppo-rl-zoo-{args.seed}", config)
    train_and_report(agent, env, "ppo", "rl-zoo", args.seed, args.eval_every)


if __name__ == "__main__":
    main()
