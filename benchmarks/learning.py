"""Learning benchmark of kitae's algorithm family; prints one JSON line per seed.

Each run trains one agent for ``--steps`` env steps (default: the tuned entry's
``train_cfg.n_env_steps`` when ``kitae.zoo.TUNED`` has the pair, else the reference target's
budget, ``common.LEARNING_TARGETS``), evaluates the greedy policy every ``--eval-every`` steps
(default steps / 10) on 20 episodes of the gymnasium env reset with seeds 10000..10019, and prints
``eval_mean`` / ``eval_std`` of the final policy, the reference ``threshold`` and
``first_step_over_threshold``, the first checkpoint whose mean return is ``>= threshold``
(``null`` if none). ``train_s`` is the wall time of ``agent.train``, compilation included,
evaluations excluded. With ``--compiled`` the agent trains on the JAX env
(``make_jax_env(env)``, gymnax) through the compiled path, in segments that end at the
checkpoints; it is still evaluated on the gymnasium env.

Algorithms (``ALGOS``; resolved from ``kitae.algos`` when a run starts, so that the script works
while the family grows): ``dqn``, ``c51``, ``qrdqn``, ``iqn``, ``ppo``, ``sac``, ``td3``, ``ddpg``
(each the agent of ``kitae train`` of that name, with its defaults), ``plain-dqn`` (DQN without
double-Q nor dueling head), ``double-dueling-dqn``, ``rainbow-dqn`` (Rainbow's DQN options:
double-Q, dueling, 3-step returns, prioritized replay; no distributional head, no noisy nets),
``ppo-continuous`` (PPO, named apart for its Pendulum-v1 rows).

Configuration: what ``kitae train ALGO --env ENV`` uses: ``Agent.default_config`` on the env,
which applies the tuned settings of ``kitae.zoo.TUNED`` for the pair, with the entry's number
of envs (else ``Agent.default_n_envs``); then the registry's options; then ``--set
SECTION.FIELD=VALUE`` (repeatable; the value is read with ``ast.literal_eval``, else kept as a
string; ``env_cfg.n_envs=N`` sets the number of envs). The run's ``config`` field is ``tuned``
when the table has the pair, else ``default``.

Units when translating Stable-Baselines3 / RL-Zoo settings: kitae's ``skip_steps`` counts
transitions between two updates summed over envs (``train_freq * n_envs``), ``n_epochs`` is the
number of gradient steps per update (``gradient_steps``; -1 means one per transition collected),
``target_update_period`` counts gradient steps (RL-Zoo's ``target_update_interval`` counts env
steps) and ``tau=1.0`` is a hard copy.

Usage::

    python benchmarks/learning.py --algo double-dueling-dqn --env Acrobot-v1 --seeds 5
    python benchmarks/learning.py --algo ppo-continuous --compiled --seeds 5
    python benchmarks/learning.py --algo dqn --steps 50000 --set algo_params.n_step=3
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common import (
    LearningRun,
    emit,
    learning_parser,
    learning_record,
    resolve_learning_run,
    train_kitae,
)


@dataclass
class AlgoSpec:
    """A benchmarked algorithm: a class of ``kitae.algos`` (by name) and the ``algo_params``
    fields it sets over the class defaults."""

    agent: str
    options: dict[str, Any] = field(default_factory=dict)

    def agent_class(self) -> Any:
        import kitae.algos

        try:
            return getattr(kitae.algos, self.agent)
        except AttributeError:
            raise SystemExit(f"kitae.algos has no {self.agent} in this version.") from None


ALGOS: dict[str, AlgoSpec] = {
    "dqn": AlgoSpec("DQN"),
    "plain-dqn": AlgoSpec("DQN", {"double_q": False, "dueling": False}),
    "double-dueling-dqn": AlgoSpec("DQN", {"double_q": True, "dueling": True}),
    "rainbow-dqn": AlgoSpec(
        "DQN", {"double_q": True, "dueling": True, "n_step": 3, "prioritized": True}
    ),
    "c51": AlgoSpec("C51"),
    "qrdqn": AlgoSpec("QRDQN"),
    "iqn": AlgoSpec("IQN"),
    "ppo": AlgoSpec("PPO"),
    "ppo-continuous": AlgoSpec("PPO"),
    "sac": AlgoSpec("SAC"),
    "td3": AlgoSpec("TD3"),
    "ddpg": AlgoSpec("DDPG"),
}


SECTIONS = ("algo_params", "update_cfg", "train_cfg")


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["algo_params.n_step=3", ...] -> {"algo_params.n_step": 3, ...}``."""
    values = {}
    for item in items:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise SystemExit(f"--set {item!r}: use SECTION.FIELD=VALUE, e.g. algo_params.n_step=3")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        values[path.strip()] = value
    return values


def apply_settings(config: Any, values: dict[str, Any]) -> None:
    """Writes ``section.field`` values into the config's dataclasses; exits naming a bad field."""
    for path, value in values.items():
        section, _, name = path.partition(".")
        if section not in SECTIONS or not name:
            raise SystemExit(
                f"setting {path!r}: use SECTION.FIELD with SECTION one of {', '.join(SECTIONS)} "
                "(or env_cfg.n_envs)."
            )
        if section == "train_cfg" and name == "n_env_steps":
            raise SystemExit(f"setting {path!r}: use --steps.")
        target = getattr(config, section)
        names = [f.name for f in dataclasses.fields(target)]
        if name not in names:
            raise SystemExit(
                f"setting {path!r}: {type(target).__name__} has no field {name!r}; its fields "
                f"are {', '.join(names)}."
            )
        setattr(target, name, value)


def variant_of(params: Any) -> str:
    """The options of a DQN-family or PPO params object, e.g. ``"double+dueling"``."""
    flags = [
        ("double", getattr(params, "double_q", False)),
        ("dueling", getattr(params, "dueling", False)),
        (f"{getattr(params, 'n_step', 1)}-step", getattr(params, "n_step", 1) > 1),
        ("prioritized", getattr(params, "prioritized", False)),
        ("squashed", getattr(params, "squash_actions", False)),
    ]
    return "+".join(name for name, on in flags if on) or "base"


def build_agent(
    spec: AlgoSpec, run: LearningRun, seed: int, values: dict[str, Any], compiled: bool
) -> tuple[Any, Any]:
    """The agent of one seed and the env it trains on."""
    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env
    from kitae.envs.make import make_vec_env
    from kitae.zoo import find_tuned

    agent_cls = spec.agent_class()
    values = dict(values)
    tuned = find_tuned(agent_cls, run.env_id)
    n_envs = values.pop("env_cfg.n_envs", (tuned and tuned.n_envs) or agent_cls.default_n_envs)
    env = make_vec_env(run.env_id, n_envs)
    config = agent_cls.default_config(env, seed=seed, n_env_steps=run.steps)
    apply_settings(config, values)
    config.env_cfg.task_name = run.env_id
    config.train_cfg.progress_bar = False
    if compiled:
        env.close()
        env = make_jax_env(run.env_id)
        config = config_for_jax_env(config, env, n_envs)
    try:
        agent = agent_cls(f"{run.algo}-{run.env_id}-{seed}", config)
    except ValueError as err:
        raise SystemExit(f"invalid configuration: {err}") from None
    return agent, env


def main() -> None:
    parser = learning_parser(__doc__.splitlines()[0], ALGOS)
    parser.add_argument(
        "--compiled", action="store_true", help="train on the JAX env (gymnax), compiled"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="config override, e.g. algo_params.n_step=3 (repeatable)",
    )
    args: argparse.Namespace = parser.parse_args()
    run = resolve_learning_run(args)
    spec = ALGOS[run.algo]
    values = {f"algo_params.{name}": value for name, value in spec.options.items()}
    values.update(parse_assignments(args.set))
    from kitae.zoo import find_tuned

    tuned = find_tuned(spec.agent_class(), run.env_id)
    source = "tuned" if tuned else "default"
    if args.steps is None and tuned and "n_env_steps" in tuned.train_cfg:
        steps = tuned.train_cfg["n_env_steps"]  # the length of ``kitae train ALGO --env ENV``
        every = max(steps // 10, 1) if args.eval_every is None else args.eval_every
        run = dataclasses.replace(run, steps=steps, eval_every=every)

    from kitae.base import config_to_dict

    for seed in run.seeds:
        agent, env = build_agent(spec, run, seed, values, args.compiled)
        try:
            train_s, checkpoints, returns = train_kitae(
                agent, env, run.env_id, run.steps, run.eval_every
            )
        except ValueError as err:  # e.g. a run too short for one update
            raise SystemExit(f"{run.algo} on {run.env_id}: {err}") from None
        if not args.compiled:
            env.close()
        emit(
            learning_record(
                run,
                system="kitae",
                variant=variant_of(agent.config.algo_params),
                config=source,
                seed=seed,
                steps=agent.env_steps,
                train_s=train_s,
                returns=returns,
                checkpoints=checkpoints,
                overrides=args.set,
                compiled=args.compiled,
                n_envs=agent.config.env_cfg.n_envs,
                n_updates=agent.n_updates,
                hyperparams=config_to_dict(agent.config),
            )
        )


if __name__ == "__main__":
    main()
