"""Fully compiled training on gymnax CartPole-v1, many seeds at once; prints one JSON line.

``--algo ppo --config purejaxrl``: 4 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4
annealed, gamma 0.99, GAE lambda 0.95, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5, 64-64
tanh, 500k steps. ``--algo ppo --config rejax``: 5 envs x 100 steps, 5 epochs x 5 minibatches,
lr 7.5e-4, gamma 0.99, lambda 0.95, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5, 100k steps.
``--algo dqn --config purejaxrl``: 10 envs, buffer 10k, batch 128, one gradient step per vector
step, learning starts at 10k, hard target copy every 500 env steps (50 gradient steps), epsilon
1 -> 0.05 over 250k steps, lr 2.5e-4, MSE loss, 120-84 ReLU, 500k steps. With a shorter
``--steps``, the schedules given in env steps are clipped to the run (``common.schedule_fraction``,
``common.learning_start``, ``common.update_period``): epsilon reaches 0.05 at the end of a run
shorter than 250k steps, learning starts at ``min(10k, steps / 2)``, and the target is copied at
least once.

``compile_s`` is ``jit(vmap(train)).lower(keys).compile()``; ``train_s`` the best of ``--repeats``
executions of the compiled program (steady state); ``sps`` counts all seeds together.
``eval_mean`` is the greedy return over 128 episodes of gymnax CartPole-v1, mean over seeds;
``train_return_tail_per_seed`` the mean return of the training episodes (exploring policy) that
ended in the last 2% of the run, the metric PureJaxRL and rejax plot. ``--set
SECTION.FIELD=VALUE`` overrides a config field (as in ``learning.py``).

Usage::

    python benchmarks/compiled.py --algo ppo --config purejaxrl --seeds 1
    python benchmarks/compiled.py --algo dqn --config purejaxrl --seeds 1 --buffer 100000
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import jax.numpy as jnp
from common import emit, learning_start, run_vmapped_seeds, schedule_fraction, update_period
from learning import apply_settings, parse_assignments

import kitae.config as cfg
from kitae.algos import DQN, PPO, DQNParams, PPOParams
from kitae.compiled import config_for_jax_env, make_agent_train
from kitae.envs.jax_env import JaxEnv, make_jax_env
from kitae.schedules import off_policy_gradient_steps

DEFAULT_STEPS = {
    ("ppo", "purejaxrl"): 500_000,
    ("ppo", "rejax"): 100_000,
    ("dqn", "purejaxrl"): 500_000,
}


class TimeLimitAsTermination(JaxEnv):
    """A JAX env whose time-limit truncations are reported as terminations (no bootstrap), as
    gymnax before 1.0 did and PureJaxRL's DQN therefore does."""

    def transition(self, key, state, action):
        observation, state, reward, terminated, truncated = super().transition(key, state, action)
        return observation, state, reward, terminated | truncated, jnp.zeros_like(truncated)


def build_agent(
    algo: str,
    config_name: str,
    steps: int,
    buffer: int | None,
    overrides: dict[str, Any] | None = None,
    time_limit_terminal: bool = False,
):
    """The kitae agent configured as the named peer configuration, then ``overrides``
    (``section.field -> value``, as ``learning.py --set``); with ``time_limit_terminal`` the
    env reports CartPole's 500-step limit as a termination."""
    template = gym.make("CartPole-v1")
    if algo == "ppo":
        if config_name == "purejaxrl":
            n_envs, n_steps, epochs, minibatches, lr, anneal = 4, 128, 4, 4, 2.5e-4, True
        else:
            n_envs, n_steps, epochs, minibatches, lr, anneal = 5, 100, 5, 5, 7.5e-4, False
        params = PPOParams(
            gamma=0.99,
            gae_lambda=0.95,
            clip_eps=0.2,
            value_clip_eps=0.2,  # both peers clip the value loss with the policy's clip range
            entropy_coef=0.01,
            value_coef=0.5,
            hidden_sizes=(64, 64),
            activation="tanh",
        )
        update = cfg.UpdateConfig(
            learning_rate=lr,
            learning_rate_annealing=anneal,
            max_grad_norm=0.5,
            max_buffer_size=n_envs * n_steps,
            batch_size=n_envs * n_steps // minibatches,
            n_epochs=epochs,
        )
        agent_cls = PPO
    else:
        if config_name != "purejaxrl":
            raise SystemExit("--algo dqn supports --config purejaxrl")
        n_envs = 10
        params = DQNParams(
            gamma=0.99,
            exploration_start=1.0,
            exploration_end=0.05,
            exploration_fraction=schedule_fraction(250_000, steps),
            double_q=False,
            loss="mse",
            tau=1.0,
            target_update_period=50,
            skip_steps=10,
            start_step=learning_start(10_000, steps),
            hidden_sizes=(120, 84),
        )
        update = cfg.UpdateConfig(
            learning_rate=2.5e-4, max_buffer_size=buffer or 10_000, batch_size=128, n_epochs=1
        )
        agent_cls = DQN
    config = agent_cls.default_config(
        template, n_env_steps=steps, algo_params=params, update_cfg=update
    )
    config.train_cfg.progress_bar = False
    env = make_jax_env("CartPole-v1")
    if time_limit_terminal:
        env = TimeLimitAsTermination(env.env, env.params, env.name)
    config = config_for_jax_env(config, env, n_envs)
    if algo == "dqn":
        config.algo_params.target_update_period = update_period(
            50, off_policy_gradient_steps(config)
        )
    apply_settings(config, overrides or {})
    return agent_cls(f"{algo}-{config_name}", config), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("dqn", "ppo"), default="ppo")
    parser.add_argument("--config", choices=("rejax", "purejaxrl"), default="purejaxrl")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--buffer", type=int, default=None, help="DQN replay capacity")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="config override, e.g. algo_params.double_q=True (repeatable)",
    )
    parser.add_argument(
        "--time-limit-terminal",
        action="store_true",
        help="train with CartPole's time limit reported as a termination (as PureJaxRL's DQN)",
    )
    args = parser.parse_args()
    steps = args.steps or DEFAULT_STEPS[(args.algo, args.config)]

    overrides = parse_assignments(args.set)
    agent, env = build_agent(
        args.algo, args.config, steps, args.buffer, overrides, args.time_limit_terminal
    )
    train = make_agent_train(agent, env, steps)
    run = run_vmapped_seeds(agent, env, train, args.seed, args.seeds, args.repeats, 128)
    emit(
        {
            "system": "kitae",
            "algo": args.algo,
            "config": args.config,
            "seeds": args.seeds,
            "buffer": agent.config.update_cfg.max_buffer_size if args.algo == "dqn" else None,
            **run,
            "overrides": args.set,
            "time_limit_terminal": args.time_limit_terminal,
        }
    )


if __name__ == "__main__":
    main()
