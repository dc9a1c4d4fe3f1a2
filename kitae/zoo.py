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
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

AGENTS: dict[str, str] = {
    "dqn": "kitae.algos.dqn:DQN",
    "c51": "kitae.algos.c51:C51",
    "qrdqn": "kitae.algos.qrdqn:QRDQN",
    "iqn": "kitae.algos.iqn:IQN",
    "ppo": "kitae.algos.ppo:PPO",
    "pqn": "kitae.algos.pqn:PQN",
    "sac": "kitae.algos.sac:SAC",
    "td3": "kitae.algos.td3:TD3",
    "ddpg": "kitae.algos.td3:DDPG",
    "r2d2": "kitae.algos.r2d2:R2D2",
    "alphazero": "kitae.algos.alphazero:AlphaZero",
}
"""Algorithm name -> ``"module:qualname"`` of its agent class."""

SECTIONS = ("algo_params", "update_cfg", "train_cfg")
GYMNAX_PREFIX = "gymnax:"


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
        benchmark=(
            "benchmarks/learning.py --algo dqn --env CartPole-v1 --seeds 5 --seed 0 "
            "(and --seed 5): 500 on 10/10 seeds (seeds 0-9: 500 each)"
        ),
    ),
    ("dqn", "Acrobot-v1"): Tuned(
        algo_params={**_ACROBOT_Q_LEARNING["algo_params"], "loss": "huber"},
        update_cfg=_ACROBOT_Q_LEARNING["update_cfg"],
        train_cfg=_ACROBOT_Q_LEARNING["train_cfg"],
        n_envs=1,
        benchmark=(
            "benchmarks/learning.py --algo dqn --env Acrobot-v1 --seeds 5: "
            "-82.0, -70.5, -72.3, -71.8, -76.2 (5/5 >= -100)"
        ),
    ),
    ("c51", "Acrobot-v1"): Tuned(
        algo_params=_ACROBOT_Q_LEARNING["algo_params"],
        update_cfg=_ACROBOT_Q_LEARNING["update_cfg"],
        train_cfg=_ACROBOT_Q_LEARNING["train_cfg"],
        n_envs=1,
        benchmark=(
            "benchmarks/learning.py --algo c51 --env Acrobot-v1 --seeds 5: "
            "-76.8, -74.8, -77.7, -68.1, -63.5 (5/5 >= -100)"
        ),
    ),
    # RL-Zoo, hyperparams/qrdqn.yml, Acrobot-v1: DQN's Acrobot-v1 settings with 25 quantiles.
    ("qrdqn", "Acrobot-v1"): Tuned(
        algo_params={**_ACROBOT_Q_LEARNING["algo_params"], "n_quantiles": 25},
        update_cfg=_ACROBOT_Q_LEARNING["update_cfg"],
        train_cfg=_ACROBOT_Q_LEARNING["train_cfg"],
        n_envs=1,
        benchmark=(
            "benchmarks/learning.py --algo qrdqn --env Acrobot-v1 --seeds 5: "
            "-74.5, -74.0, -70.3, -68.7, -73.6 (5/5 >= -100)"
        ),
    ),
    ("iqn", "CartPole-v1"): Tuned(
        algo_params={"n_step": 3},
        update_cfg={"learning_rate_annealing": True},
        train_cfg={"n_env_steps": 150_000},
        benchmark=(
            "benchmarks/learning.py --algo iqn --env CartPole-v1 --seeds 5 --steps 150000 "
            "--set algo_params.n_step=3 --set update_cfg.learning_rate_annealing=True: "
            "500.0, 500.0, 500.0, 500.0, 500.0 (5/5 >= 475)"
        ),
    ),
    ("iqn", "Acrobot-v1"): Tuned(
        algo_params={"n_step": 3},
        update_cfg={"learning_rate_annealing": True},
        train_cfg={"n_env_steps": 100_000},
        benchmark=(
            "benchmarks/learning.py --algo iqn --env Acrobot-v1 --seeds 5: "
            "-95.1, -102.8, -83.8, -82.7, -91.8 (4/5 >= -100)"
        ),
    ),
    ("ppo", "Acrobot-v1"): Tuned(
        update_cfg={"learning_rate": 1e-3},
        train_cfg={"n_env_steps": 100_000},
        benchmark=(
            "benchmarks/learning.py --algo ppo --env Acrobot-v1 --seeds 5 --seed 0 "
            "(and --seed 5): -88.0, -87.7, -82.0, -88.7, -82.6, -81.3, -91.1, -79.8, -78.5, "
            "-82.0 (10/10 >= -100)"
        ),
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
        benchmark=(
            "benchmarks/learning.py --algo ppo --env CartPole-v1 --seeds 5: "
            "500.0, 500.0, 418.1, 500.0, 500.0 (4/5 >= 475)"
        ),
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
        benchmark=(
            "benchmarks/learning.py --algo ppo --env Pendulum-v1 --seeds 5: "
            "-145.5, -138.2, -236.8, -138.8, -137.4 (5/5 >= -250)"
        ),
    ),
    # RL-Zoo, hyperparams/sac.yml, HalfCheetah-v3 / Hopper-v3 (the MuJoCo defaults): 1e6 steps,
    # learning_starts 10000; SB3's SAC defaults for the rest (1 env, lr 3e-4, buffer 1e6, batch
    # 256, gamma 0.99, tau 0.005, one gradient step per transition, automatic temperature from 1
    # toward -|A|, 256-256 ReLU).
    **{
        ("sac", env_id): Tuned(
            algo_params={
                "gamma": 0.99,
                "tau": 0.005,
                "init_alpha": 1.0,
                "learn_alpha": True,
                "start_step": 10_000,
                "skip_steps": 1,
                "hidden_sizes": (256, 256),
                "activation": "relu",
            },
            update_cfg={
                "learning_rate": 3e-4,
                "learning_rate_annealing": False,
                "max_buffer_size": 1_000_000,
                "batch_size": 256,
                "n_epochs": 1,
            },
            train_cfg={"n_env_steps": 1_000_000},
            n_envs=1,
            benchmark=f"benchmarks/learning.py --algo sac --env {env_id}: not measured yet",
        )
        for env_id in ("HalfCheetah-v5", "Hopper-v5")
    },
    # RL-Zoo, hyperparams/ppo.yml, HalfCheetah-v3: normalize (observations and rewards), 1 env x
    # 512 steps, batch 64, 20 epochs, gamma 0.98, GAE lambda 0.92, lr 2.0633e-5 constant, clip
    # 0.1, entropy 4.01762e-4, value coefficient 0.58096, gradient norm 0.8, log-std -2, 256-256
    # ReLU, 1e6 steps.
    ("ppo", "HalfCheetah-v5"): Tuned(
        algo_params={
            "gamma": 0.98,
            "gae_lambda": 0.92,
            "clip_eps": 0.1,
            "entropy_coef": 0.000401762,
            "value_coef": 0.58096,
            "value_clip_eps": None,
            "log_std_init": -2.0,
            "hidden_sizes": (256, 256),
            "activation": "relu",
            "normalize_observations": True,
            "normalize_rewards": True,
        },
        update_cfg={
            "learning_rate": 2.0633e-5,
            "learning_rate_annealing": False,
            "max_grad_norm": 0.8,
            "max_buffer_size": 512,
            "batch_size": 64,
            "n_epochs": 20,
        },
        train_cfg={"n_env_steps": 1_000_000},
        n_envs=1,
        benchmark=(
            "benchmarks/learning.py --algo ppo --env HalfCheetah-v5: not measured at 1M; "
            "benchmarks/mujoco_halfcheetah.py --algo ppo --steps 100000: 2,625 (seed 0; SBX 1,869)"
        ),
    ),
    # RL-Zoo, hyperparams/ppo.yml, Hopper-v3: normalize, 1 env x 512 steps, batch 32, 5 epochs,
    # gamma 0.999, GAE lambda 0.99, lr 9.80828e-5 constant, clip 0.2, entropy 2.29519e-3, value
    # coefficient 0.835671, gradient norm 0.7, log-std -2, 256-256 ReLU, 1e6 steps.
    ("ppo", "Hopper-v5"): Tuned(
        algo_params={
            "gamma": 0.999,
            "gae_lambda": 0.99,
            "clip_eps": 0.2,
            "entropy_coef": 0.00229519,
            "value_coef": 0.835671,
            "value_clip_eps": None,
            "log_std_init": -2.0,
            "hidden_sizes": (256, 256),
            "activation": "relu",
            "normalize_observations": True,
            "normalize_rewards": True,
        },
        update_cfg={
            "learning_rate": 9.80828e-5,
            "learning_rate_annealing": False,
            "max_grad_norm": 0.7,
            "max_buffer_size": 512,
            "batch_size": 32,
            "n_epochs": 5,
        },
        train_cfg={"n_env_steps": 1_000_000},
        n_envs=1,
        benchmark="benchmarks/learning.py --algo ppo --env Hopper-v5: not measured yet",
    ),
}
"""``(algorithm name, env id) -> Tuned``."""

TUNED_PATTERNS: dict[tuple[str, str], Tuned] = {
    # RL-Zoo, hyperparams/dqn.yml, atari (AtariWrapper, 4 frames): 1e7 steps, 1 env, lr 1e-4,
    # buffer 100k, learning_starts 100k, batch 32, target_update_interval 1000 transitions,
    # train_freq 4, one gradient step, exploration_fraction 0.1, exploration_final_eps 0.01;
    # SB3's DQN defaults for the rest (gamma 0.99, Huber loss, gradient norm 10, hard target
    # copy, no double Q) and its CnnPolicy: the Nature CNN and a 512-unit layer. In kitae's
    # units: one gradient step every 4 transitions, a target copy every 250 gradient steps.
    ("dqn", "ALE/*"): Tuned(
        algo_params={
            "gamma": 0.99,
            "exploration_start": 1.0,
            "exploration_end": 0.01,
            "exploration_fraction": 0.1,
            "double_q": False,
            "tau": 1.0,
            "target_update_period": 250,
            "skip_steps": 4,
            "start_step": 100_000,
            "hidden_sizes": (512,),
            "activation": "relu",
            "loss": "huber",
            "encoder": "nature_cnn",
        },
        update_cfg={
            "learning_rate": 1e-4,
            "learning_rate_annealing": False,
            "max_grad_norm": 10.0,
            "max_buffer_size": 100_000,
            "batch_size": 32,
            "n_epochs": 1,
        },
        train_cfg={"n_env_steps": 10_000_000},
        n_envs=1,
        benchmark="benchmarks/learning.py --algo dqn --env ALE/<Game>-v5: not measured yet",
    ),
    # MinAtar's own DQN (Young & Tian, 2019, kenjyoung/MinAtar examples/dqn.py): 5e6 frames, 1
    # env, batch 32, buffer 100k, replay start 5000, target copy every 1000 updates, one update
    # per frame, epsilon 1 -> 0.1 over the first 100k frames, gamma 0.99, Huber loss, lr 2.5e-4
    # (RMSprop there, Adam here), the MinAtar CNN and a 128-unit layer.
    ("dqn", "*-MinAtar"): Tuned(
        algo_params={
            "gamma": 0.99,
            "exploration_start": 1.0,
            "exploration_end": 0.1,
            "exploration_fraction": 0.02,
            "double_q": False,
            "tau": 1.0,
            "target_update_period": 1000,
            "skip_steps": 1,
            "start_step": 5000,
            "hidden_sizes": (128,),
            "activation": "relu",
            "loss": "huber",
            "encoder": "minatar_cnn",
        },
        update_cfg={
            "learning_rate": 2.5e-4,
            "learning_rate_annealing": False,
            "max_grad_norm": None,
            "max_buffer_size": 100_000,
            "batch_size": 32,
            "n_epochs": 1,
        },
        train_cfg={"n_env_steps": 5_000_000},
        n_envs=1,
        benchmark="benchmarks/learning.py --algo dqn --env gymnax:<Game>-MinAtar: not measured yet",
    ),
    # purejaxql, purejaxql/config/alg/ppo_minatar.yaml: 1e7 steps, 64 envs x 128 steps, 4 epochs
    # of 8 minibatches (1024), lr 5e-3 annealed linearly, gamma 0.99, GAE lambda 0.95, clip 0.2,
    # entropy 1e-4, value coefficient 0.5, gradient norm 0.5, ReLU; kitae's MinAtar CNN.
    ("ppo", "*-MinAtar"): Tuned(
        algo_params={
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "clip_eps": 0.2,
            "entropy_coef": 1e-4,
            "value_coef": 0.5,
            "activation": "relu",
            "encoder": "minatar_cnn",
        },
        update_cfg={
            "learning_rate": 5e-3,
            "learning_rate_annealing": True,
            "max_grad_norm": 0.5,
            "max_buffer_size": 64 * 128,
            "batch_size": 1024,
            "n_epochs": 4,
        },
        train_cfg={"n_env_steps": 10_000_000},
        n_envs=64,
        benchmark="benchmarks/learning.py --algo ppo --env gymnax:<Game>-MinAtar: not measured yet",
    ),
    # purejaxql, purejaxql/config/alg/pqn_minatar.yaml: 1e7 steps, 128 envs x 32 steps, 2 epochs
    # of 32 minibatches (128), lr 5e-4 annealed linearly, gradient norm 10, gamma 0.99, lambda
    # 0.65, epsilon 1 -> 0.05 over the first 10%, LayerNorm; kitae's MinAtar CNN (no LayerNorm
    # after its convolution, which purejaxql's CNN has) and a 128-unit layer.
    ("pqn", "*-MinAtar"): Tuned(
        algo_params={
            "gamma": 0.99,
            "q_lambda": 0.65,
            "exploration_start": 1.0,
            "exploration_end": 0.05,
            "exploration_fraction": 0.1,
            "reward_scale": 1.0,
            "hidden_sizes": (128,),
            "activation": "relu",
            "layer_norm": True,
            "encoder": "minatar_cnn",
        },
        update_cfg={
            "learning_rate": 5e-4,
            "learning_rate_annealing": True,
            "max_grad_norm": 10.0,
            "max_buffer_size": 128 * 32,
            "batch_size": 128,
            "n_epochs": 2,
        },
        train_cfg={"n_env_steps": 10_000_000},
        n_envs=128,
        benchmark=(
            "not measured at 1e7; kitae train pqn --env gymnax:Breakout-MinAtar "
            "--train-cfg.n-env-steps 1000000: greedy 17.2 (seed 0, benchmarks/README.md)"
        ),
    ),
}
"""``(algorithm name, env id pattern) -> Tuned`` for families of envs (``fnmatch`` patterns:
``ALE/*`` every Atari game, ``*-MinAtar`` every MinAtar game), used for the pairs that
:data:`TUNED` does not list."""


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
        env_id: the env's id, e.g. ``"Acrobot-v1"`` (a gymnax id with or without its
            ``gymnax:`` prefix); matched exactly in :data:`TUNED`, else by pattern in
            :data:`TUNED_PATTERNS`.
    """
    name = agent if isinstance(agent, str) else agent_name(agent)
    if name is None:
        return None
    env_id = env_id.removeprefix(GYMNAX_PREFIX)
    if (name, env_id) in TUNED:
        return TUNED[(name, env_id)]
    return next(
        (
            entry
            for (algo, pattern), entry in TUNED_PATTERNS.items()
            if algo == name and fnmatch.fnmatchcase(env_id, pattern)
        ),
        None,
    )


__all__ = ["AGENTS", "SECTIONS", "TUNED", "TUNED_PATTERNS", "Tuned", "agent_name", "find_tuned"]
