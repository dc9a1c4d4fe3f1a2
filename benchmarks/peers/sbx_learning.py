"""Peer learning benchmark: SBX with RL-Zoo settings; prints one JSON line per seed.

The same protocol and fields as ``benchmarks/learning.py`` (system ``"sbx"``): ``--steps`` env
steps (default: the reference target's budget), a greedy checkpoint every ``--eval-every``
steps (default steps / 10) from a callback whose time is excluded from ``train_s``, 20
deterministic-action episodes of the gymnasium env reset with seeds 10000..10019,
``first_step_over_threshold`` the first checkpoint whose mean return is ``>= threshold``.
``train_s`` is the wall time of ``model.learn`` (SBX's compilation included) minus the
checkpoints'; ``steps`` counts the transitions collected (``learn`` rounds up to whole rollouts).

Algorithms and settings (``sbx_common.RL_ZOO``, from the RL Baselines3 Zoo): ``dqn`` on
CartPole-v1 and Acrobot-v1, ``ppo`` on CartPole-v1, ``ppo-continuous`` (PPO with gSDE) on
Pendulum-v1, ``sac``, ``td3`` and ``ddpg`` on Pendulum-v1.

Usage::

    python benchmarks/peers/sbx_learning.py --algo dqn --env Acrobot-v1 --seeds 5
    python benchmarks/peers/sbx_learning.py --algo sac --seeds 5

Run it from the peers virtualenv (see ``benchmarks/peers/requirements.txt``).
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import gymnasium
import jax
import sbx
import stable_baselines3
import torch
from sbx_common import RL_ZOO, evaluate, make_model
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py

from common import (  # noqa: E402
    EVAL_EPISODES,
    EVAL_SEED,
    Checkpoints,
    emit,
    learning_parser,
    learning_record,
    resolve_learning_run,
)


class CheckpointCallback(BaseCallback):
    """Runs ``checkpoints`` each time the step count passes a multiple of ``every``."""

    def __init__(self, checkpoints: Checkpoints, every: int):
        super().__init__()
        self.checkpoints = checkpoints
        self.every = every
        self.done = 0

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps // self.every > self.done:
            self.done = self.num_timesteps // self.every
            self.checkpoints(self.num_timesteps)
        return True


def main() -> None:
    parser = learning_parser(__doc__.splitlines()[0], sorted({algo for algo, _ in RL_ZOO}))
    run = resolve_learning_run(parser.parse_args())
    if (run.algo, run.env_id) not in RL_ZOO:
        pairs = ", ".join(f"{algo} on {env}" for algo, env in RL_ZOO)
        raise SystemExit(f"no RL-Zoo settings for {run.algo} on {run.env_id}; known: {pairs}.")
    settings = RL_ZOO[(run.algo, run.env_id)]
    package_versions = {
        "sbx": sbx.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "jax": jax.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
    }
    for seed in run.seeds:
        model = make_model(run.algo, run.env_id, seed)
        checkpoints = Checkpoints(partial(evaluate, model, run.env_id, EVAL_EPISODES, EVAL_SEED))
        start = time.perf_counter()
        model.learn(
            total_timesteps=run.steps, callback=CheckpointCallback(checkpoints, run.eval_every)
        )
        train_s = time.perf_counter() - start - checkpoints.eval_s
        returns = checkpoints.final(model.num_timesteps)
        model.get_env().close()
        emit(
            learning_record(
                run,
                system="sbx",
                variant=settings.variant,
                config="rl-zoo",
                seed=seed,
                steps=int(model.num_timesteps),
                train_s=train_s,
                returns=returns,
                checkpoints=checkpoints,
                n_envs=settings.n_envs,
                hyperparams=settings.kwargs,
            ),
            package_versions,
        )


if __name__ == "__main__":
    main()
