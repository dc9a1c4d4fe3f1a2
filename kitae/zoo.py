"""Tuned hyperparameters per (algorithm, environment), as Python data.

:data:`TUNED` maps ``(algorithm name, env id)`` to a :class:`Tuned` entry: the fields of
``algo_params``, ``update_cfg`` and ``train_cfg`` that differ from the agent's defaults on that
env, and the number of envs they were measured with. ``Agent.default_config(env)`` applies the
entry of its own class (not of a subclass) and of ``EnvConfig.task_name`` (the env's registered
id); ``kitae train ALGO --env ENV`` starts from it too, and its flags and ``--config`` file
override it field by field. The run directory's ``config.yaml`` holds the resolved values.

Each entry's :attr:`Tuned.benchmark` names the measurement that justifies it (the command of
``benchmarks/learning.py`` and its per-seed final greedy returns); ``benchmarks/README.md``
has the learning table. Pairs absent from the table run the agent's defaults, which were
measured on the agent's reference env (see the learning table).

Names are those of ``kitae train`` (:data:`AGENTS` maps them to the agent classes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

AGENTS: dict[str, str] = {
    "dqn": "kitae.algos.dqn:DQN",
    "c51": "kitae.algos.c51:C51",
    "qrdqn": "kitae.algos.qrdqn:QRDQN",
    "iqn": "kitae.algos.iqn:IQN",
    "ppo": "kitae.algos.ppo:PPO",
    "sac": "kitae.algos.sac:SAC",
    "td3": "kitae.algos.td3:TD3",
    "ddpg": "kitae.algos.td3:DDPG",
    "r2d2": "kitae.algos.r2d2:R2D2",
    "alphazero": "kitae.algos.alphazero:AlphaZero",
}
"""Algorithm name -> ``"module:qualname"`` of its agent class."""

SECTIONS = ("algo_params", "update_cfg", "train_cfg")


@dataclass(frozen=True)
class Tuned:
    """The tuned settings of one (algorithm, env) pair.

    Attributes:
        algo_params: ``algo_params`` fields that differ from the params dataclass's defaults.
        update_cfg: ``update_cfg`` fields that differ from the agent's ``default_update_cfg``.
        train_cfg: ``train_cfg`` fields that differ from ``TrainConfig()`` (``n_env_steps``:
            the budget the entry was measured with).
        n_envs: the number of envs the entry was measured with (``kitae train`` uses it unless
            ``--n-envs`` is given; ``default_config`` takes the env it is given); ``None``: the
            agent's ``default_n_envs``.
        benchmark: the command and per-seed results that justify the entry.
    """

    algo_params: Mapping[str, Any] = field(default_factory=dict)
    update_cfg: Mapping[str, Any] = field(default_factory=dict)
    train_cfg: Mapping[str, Any] = field(default_factory=dict)
    n_envs: int | None = None
    benchmark: str = ""

    def overrides(self, section: str) -> dict[str, Any]:
        """A copy of the overrides of ``section`` (one of :data:`SECTIONS`)."""
        if section not in SECTIONS:
            raise ValueError(f"section={section!r} is invalid: use one of {', '.join(SECTIONS)}.")
        return dict(getattr(self, section))

    def apply(self, section: str, value: Any) -> Any:
        """A copy of the dataclass ``value`` of ``section`` with this entry's overrides.

        Raises:
            ValueError: naming the field, if ``value`` has no field of that name.
        """
        overrides = self.overrides(section)
        names = {f.name for f in dataclasses.fields(value)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"tuned {section} field(s) {', '.join(unknown)} do not exist on "
                f"{type(value).__name__}; its fields are {', '.join(sorted(names))}."
            )
        return dataclasses.replace(value, **overrides)


# RL-Zoo, hyperparams/dqn.yml, Acrobot-v1: lr 6.3e-4, batch 128, buffer 50k, learning_starts 0,
# gamma 0.99, target_update_interval 250, train_freq 4, gradient_steps -1, exploration_fraction
# 0.12, exploration_final_eps 0.1, net_arch [256, 256]; SB3's DQN defaults for the rest (1 env,
# Huber loss, gradient norm 10, epsilon from 1, hard target copy). In kitae's units: one update of
# 4 gradient steps every 4 transitions, a hard target copy every 250 gradient steps.
_ACROBOT_Q_LEARNING = {
    "algo_params": {
        "gamma": 0.99,
        "skip_steps": 4,
        "start_step": 0,
        "tau": 1.0,
        "target_update_period": 250,
        "exploration_start": 1.0,
        "exploration_end": 0.1,
        "exploration_fraction": 0.12,
        "hidden_sizes": (256, 256),
        "activation": "relu",
    },
    "update_cfg": {
        "learning_rate": 6.3e-4,
        "learning_rate_annealing": False,
        "max_grad_norm": 10.0,
        "max_buffer_size": 50_000,
        "batch_size": 128,
        "n_epochs": 4,
    },
    "train_cfg": {"n_env_steps": 100_000},
}

TUNED: dict[tuple[str, str], Tuned] = {
    ("dqn", "CartPole-v1"): Tuned(
        algo_params={"n_step": 3},
        train_cfg={"n_env_steps": 100_000},
        benchmark="benchmarks/learning.py TBD",
    ),
    ("dqn", "Acrobot-v1"): Tuned(
        algo_params={**_ACROBOT_Q_LEARNING["algo_params"], "loss": "huber"},
        update_cfg=_ACROBOT_Q_LEARNING["update_cfg"],
        train_cfg=_ACROBOT_Q_LEARNING["train_cfg"],
        n_envs=1,
        benchmark="benchmarks/learning.py TBD",
    ),
    ("c51", "Acrobot-v1"): Tuned(
        algo_params=_ACROBOT_Q_LEARNING["algo_params"],
        update_cfg=_ACROBOT_Q_LEARNING["update_cfg"],
        train_cfg=_ACROBOT_Q_LEARNING["train_cfg"],
        n_envs=1,
        benchmark="benchmarks/learning.py TBD",
    ),
    # RL-Zoo, hyperparams/qrdqn.yml, Acrobot-v1: DQN's Acrobot-v1 settings with 25 quantiles.
    ("qrdqn", "Acrobot-v1"): Tuned(
        algo_params={**_ACROBOT_Q_LEARNING["algo_params"], "n_quantiles": 25},
        update_cfg=_ACROBOT_Q_LEARNING["update_cfg"],
        train_cfg=_ACROBOT_Q_LEARNING["train_cfg"],
        n_envs=1,
        benchmark="benchmarks/learning.py TBD",
    ),
    ("iqn", "Acrobot-v1"): Tuned(
        algo_params={"n_step": 3},
        update_cfg={"learning_rate_annealing": True},
        train_cfg={"n_env_steps": 100_000},
        benchmark="benchmarks/learning.py TBD",
    ),
    ("ppo", "Acrobot-v1"): Tuned(
        update_cfg={"learning_rate": 1e-3},
        train_cfg={"n_env_steps": 100_000},
        benchmark="benchmarks/learning.py TBD",
    ),
    # RL-Zoo, hyperparams/ppo.yml, CartPole-v1: 8 envs x 32 steps, batch 256, 20 epochs, gamma
    # 0.98, GAE lambda 0.8, lr 1e-3 and clip 0.2 both decayed linearly to 0, entropy 0; SB3's
    # defaults for the rest (value coefficient 0.5, gradient norm 0.5, 64-64 tanh).
    ("ppo", "CartPole-v1"): Tuned(
        algo_params={
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "clip_eps": 0.2,
            "clip_eps_annealing": True,
            "entropy_coef": 0.0,
            "value_coef": 0.5,
        },
        update_cfg={
            "learning_rate": 1e-3,
            "learning_rate_annealing": True,
            "max_grad_norm": 0.5,
            "max_buffer_size": 256,
            "batch_size": 256,
            "n_epochs": 20,
        },
        train_cfg={"n_env_steps": 100_000},
        n_envs=8,
        benchmark="benchmarks/learning.py TBD",
    ),
    # RL-Zoo, hyperparams/ppo.yml, Pendulum-v1, without gSDE (kitae has none): 4 envs x 1024
    # steps, batch 64, 10 epochs, gamma 0.9, GAE lambda 0.95, lr 1e-3 constant, clip 0.2,
    # entropy 0; SB3's defaults for the rest (value coefficient 0.5, no value clipping, gradient
    # norm 0.5, 64-64 tanh, log-std 0). RL-Zoo trains 1e5 steps with gSDE; 5e5 without.
    ("ppo", "Pendulum-v1"): Tuned(
        algo_params={
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "clip_eps": 0.2,
            "entropy_coef": 0.0,
            "value_coef": 0.5,
            "value_clip_eps": None,
            "log_std_init": 0.0,
        },
        update_cfg={
            "learning_rate": 1e-3,
            "learning_rate_annealing": False,
            "max_grad_norm": 0.5,
            "max_buffer_size": 4096,
            "batch_size": 64,
            "n_epochs": 10,
        },
        train_cfg={"n_env_steps": 500_000},
        n_envs=4,
        benchmark="benchmarks/learning.py TBD",
    ),
}
"""``(algorithm name, env id) -> Tuned``."""


def agent_name(agent_cls: type) -> str | None:
    """The name of ``agent_cls`` in :data:`AGENTS` (the exact class, not a subclass), or
    ``None``."""
    path = f"{agent_cls.__module__}:{agent_cls.__qualname__}"
    return next((name for name, target in AGENTS.items() if target == path), None)


def find_tuned(agent: type | str, env_id: str) -> Tuned | None:
    """The entry of ``agent`` (an agent class or an algorithm name) on ``env_id``, or ``None``.

    Args:
        agent: an agent class (matched exactly, see :func:`agent_name`) or a name of
            :data:`AGENTS`.
        env_id: the env's id, e.g. ``"Acrobot-v1"``.
    """
    name = agent if isinstance(agent, str) else agent_name(agent)
    if name is None:
        return None
    return TUNED.get((name, env_id))


__all__ = ["AGENTS", "SECTIONS", "TUNED", "Tuned", "agent_name", "find_tuned"]
