"""SAC and PPO on a MuJoCo task through the gymnasium host loop; prints one JSON line per run.

The agent is ``SAC`` / ``PPO`` ``.default_config`` on the env (``kitae.envs.make.make_vec_env``),
so it takes kitae's tuned entries, RL-Zoo's MuJoCo settings: SAC with 1 env, lr 3e-4, buffer
1M, batch 256, one gradient step per transition, tau 0.005, automatic temperature, 256-256;
PPO with observation and reward normalisation (``normalize_observations``,
``normalize_rewards``), 1 env x 512 steps, batch 64, 20 epochs, RL-Zoo's HalfCheetah
coefficients. ``--learning-starts`` replaces SAC's 10k when given (the SBX peer,
``peers/sbx_mujoco.py``, takes the same option), ``--set SECTION.FIELD=VALUE`` any field.

Fields: ``train_s`` (wall time of ``agent.train``, compilation included), ``sps``,
``cpu_s`` (CPU time of the process during training, all threads: on a shared core, the time
it was given), ``sps_cpu`` (steps per CPU second),
``max_rss_mb``, and the deterministic policy's returns on ``--eval-episodes`` episodes of the
env reset with seeds 10000.. (``kitae.evaluation.evaluate``; not timed).

Usage::

    python benchmarks/mujoco_halfcheetah.py --algo sac --env HalfCheetah-v5 --steps 100000
    python benchmarks/mujoco_halfcheetah.py --algo ppo --env HalfCheetah-v5 --steps 100000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from common import EVAL_SEED, emit
from learning import apply_settings, parse_assignments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("sac", "ppo"), required=True)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--learning-starts", type=int, default=None, help="SAC's start_step")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args()
    if args.steps < 1 or args.eval_episodes < 1:
        raise SystemExit("--steps and --eval-episodes must be >= 1.")

    from kitae.algos import PPO, SAC
    from kitae.envs.make import make_vec_env
    from kitae.evaluation import evaluate

    agent_cls = SAC if args.algo == "sac" else PPO
    env = make_vec_env(args.env, 1)
    config = agent_cls.default_config(env, seed=args.seed, n_env_steps=args.steps)
    if args.learning_starts is not None:
        if args.algo != "sac":
            raise SystemExit("--learning-starts applies to --algo sac only.")
        config.algo_params.start_step = args.learning_starts
    apply_settings(config, parse_assignments(args.set))
    config.train_cfg.progress_bar = False
    try:
        agent = agent_cls(f"{args.algo}-{args.env}", config)
    except ValueError as err:
        raise SystemExit(f"invalid configuration: {err}") from None
    start, cpu_start = time.perf_counter(), time.process_time()
    agent.train(env, args.steps)
    train_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    returns = [float(r) for r in evaluate(agent, args.env, args.eval_episodes, EVAL_SEED)]
    p = config.algo_params
    emit(
        {
            "benchmark": "mujoco",
            "system": "kitae",
            "algo": args.algo,
            "env": args.env,
            "seed": args.seed,
            "steps": agent.env_steps,
            "learning_starts": getattr(p, "start_step", None),
            "normalize": [
                getattr(p, "normalize_observations", None),
                getattr(p, "normalize_rewards", None),
            ],
            "train_s": round(train_s, 3),
            "cpu_s": round(cpu_s, 3),
            "sps_cpu": round(agent.env_steps / cpu_s, 1),
            "sps": round(agent.env_steps / train_s, 1),
            "max_rss_mb": round(rss_mb, 1),
            "n_updates": agent.n_updates,
            "gradient_steps": int(agent.state.step) if hasattr(agent.state, "step") else None,
            "eval_mean": float(np.mean(returns)),
            "eval_returns": returns,
            "overrides": args.set,
        }
    )


if __name__ == "__main__":
    main()
