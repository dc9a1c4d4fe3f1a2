"""What the command line runs: the algorithms it knows, one run's full specification, env ids.

A *run spec* is a dataclass generated per algorithm: the run options of :class:`RunOptions`
(``env``, ``seed``, ``n_envs``, ``run_name``...) plus the algorithm's ``algo_params``,
``update_cfg`` and ``train_cfg``. :func:`parse_spec` fills it from the command line with tyro
(every field is a flag, e.g. ``--update-cfg.learning-rate 3e-4``, and ``--help`` lists them with
their defaults and docstrings), optionally on top of a YAML file (``--config FILE.yaml``, the
same fields nested as in :func:`spec_to_dict`). The run directory keeps the resolved spec as
``config.yaml``, which ``--config`` reads back to the same spec. The defaults of a spec depend on
its env: :func:`default_spec` applies the tuned settings of :mod:`kitae.zoo` for the pair, under
the file and the flags.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib
import inspect
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import yaml

from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig

if TYPE_CHECKING:
    from kitae.agent import BaseAgent


class Algorithm(NamedTuple):
    """A built-in agent as the command line knows it."""

    agent_class: str
    """``"module:qualname"`` of the agent class (looked up among kitae's own agents when used,
    see :func:`kitae.config.import_class`)."""
    env: str
    """default env id."""
    n_env_steps: int
    """default training length in transitions."""
    jax_envs_only: bool = False
    """whether it trains on JAX envs only (it searches over the env's own dynamics)."""


ALGORITHMS: dict[str, Algorithm] = {
    "dqn": Algorithm("kitae.algos.dqn:DQN", "CartPole-v1", 50_000),
    "c51": Algorithm("kitae.algos.c51:C51", "CartPole-v1", 100_000),
    "qrdqn": Algorithm("kitae.algos.qrdqn:QRDQN", "CartPole-v1", 100_000),
    "iqn": Algorithm("kitae.algos.iqn:IQN", "CartPole-v1", 100_000),
    "ppo": Algorithm("kitae.algos.ppo:PPO", "CartPole-v1", 200_000),
    "pqn": Algorithm("kitae.algos.pqn:PQN", "CartPole-v1", 100_000),
    "sac": Algorithm("kitae.algos.sac:SAC", "Pendulum-v1", 20_000),
    "td3": Algorithm("kitae.algos.td3:TD3", "Pendulum-v1", 20_000),
    "ddpg": Algorithm("kitae.algos.td3:DDPG", "Pendulum-v1", 20_000),
    "r2d2": Algorithm("kitae.algos.r2d2:R2D2", "gymnax:MemoryChain-bsuite", 20_000),
    "alphazero": Algorithm(
        "kitae.algos.alphazero:AlphaZero", "gymnax:Catch-bsuite", 16_384, jax_envs_only=True
    ),
}
"""The algorithms of ``kitae train``: name -> agent class, default env and training length."""

GYMNAX_PREFIX = "gymnax:"


@dataclass
class RunOptions:
    """Options of one run that are not part of the agent's config.

    Attributes:
        env: env id: a gymnasium id such as CartPole-v1 (ALE/<Game>-v5 Atari ids get the
            standard DQN preprocessing, see kitae.envs.atari), or a gymnax id written as
            gymnax:<id> (gymnax:CartPole-v1, gymnax:Breakout-MinAtar), or bare when gymnasium
            does not know it (Catch-bsuite), or brax:<name>[:<backend>] (brax:halfcheetah) or
            playground:<name> (playground:CartpoleBalance), or a PettingZoo parallel env written
            as pettingzoo:<module> (pettingzoo:mpe2.simple_spread_v3, whose parallel_env() is
            called). gymnax, Brax and Playground envs train on the compiled path, PettingZoo
            envs with kitae.multiagent.
        seed: the run's one seed (params, exploration, minibatches, env resets).
        n_envs: vectorized envs (default: the agent's own).
        run_name: name of the run directory <runs_dir>/<run_name> (default:
            <algo>_<env>_s<seed>_<date-time>); an existing one is refused: continue it with
            kitae resume.
        runs_dir: parent directory of run directories.
        eval_episodes: greedy evaluation episodes at the end of training (0: none).
        video: record evaluation episodes as mp4 files in <run>/videos/ (gymnasium envs with an
            rgb_array render mode; needs pip install 'kitae[video]').
        video_episodes: how many evaluation episodes the video records.
        quiet: no progress bars.
        grouping: PettingZoo envs: shared (one network for all agents) or independent (one
            per agent).
        agent_id: PettingZoo envs: append a one-hot agent id to each observation.
        vectorization: gymnasium envs: sync (one process), async (a process per env), or for
            ALE/ ids ale or envpool (ALE's or EnvPool's C++ vector env, the same preprocessing;
            envpool needs pip install 'kitae[envpool]').
    """

    env: str = "CartPole-v1"
    seed: int = 0
    n_envs: int | None = None
    run_name: str | None = None
    runs_dir: str = "runs"
    eval_episodes: int = 20
    video: bool = False
    video_episodes: int = 1
    quiet: bool = False
    grouping: Literal["shared", "independent"] = "shared"
    agent_id: bool = False
    vectorization: Literal["sync", "async", "ale", "envpool"] = "sync"


RUN_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(RunOptions))
CONFIG_SECTIONS = ("algo_params", "update_cfg", "train_cfg")


def algorithm(name: str) -> Algorithm:
    """The entry of ``name`` in :data:`ALGORITHMS`.

    Raises:
        ValueError: naming the known algorithms.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}: choose from {', '.join(ALGORITHMS)}.")
    return ALGORITHMS[name]


def agent_class(name: str) -> type[BaseAgent]:
    """The agent class of algorithm ``name`` (one of kitae's own agents: no module is imported
    by name)."""
    from kitae.config import import_class

    return cast("type[BaseAgent]", import_class(algorithm(name).agent_class))


def _params_type(name: str) -> type:
    params_type = agent_class(name).params_type
    if params_type is None:
        raise ValueError(f"the agent of {name!r} declares no params_type.")
    return params_type


@functools.cache
def spec_type(name: str) -> type:
    """The run-spec dataclass of algorithm ``name`` (see the module docstring)."""
    cls = agent_class(name)
    params_type = _params_type(name)
    spec = dataclasses.make_dataclass(
        f"{cls.__name__}Run",
        [
            ("algo_params", params_type, field(default_factory=params_type)),
            ("update_cfg", UpdateConfig, field(default_factory=UpdateConfig)),
            ("train_cfg", TrainConfig, field(default_factory=TrainConfig)),
        ],
        bases=(RunOptions,),
    )
    spec.__module__ = __name__
    spec.__doc__ = (
        f"Train {cls.__name__} ({cls.__module__}). Every field of its config is a flag; "
        "``--config FILE.yaml`` gives any of them from a file (flags override it).\n\n"
        + inspect.cleandoc(RunOptions.__doc__ or "").split("\n", 1)[1]
    )
    return spec


def default_spec(name: str, env: str | None = None) -> Any:
    """The run spec of algorithm ``name`` with all its defaults on ``env``.

    The defaults are the agent's (its params dataclass, ``default_update_cfg``,
    ``default_n_envs``, the training length of :data:`ALGORITHMS`) with the overrides of
    :data:`kitae.zoo.TUNED` for ``(name, env)`` when the table has the pair.

    Args:
        name: the algorithm name.
        env: the env id (default: the algorithm's default env).
    """
    from kitae.zoo import find_tuned

    entry, cls = algorithm(name), agent_class(name)
    env = entry.env if env is None else env
    spec = spec_type(name)(
        env=env,
        n_envs=cls.default_n_envs,
        algo_params=_params_type(name)(),
        update_cfg=dataclasses.replace(cls.default_update_cfg),
        train_cfg=TrainConfig(n_env_steps=entry.n_env_steps),
    )
    tuned = find_tuned(name, env)
    if tuned is not None:
        for section in CONFIG_SECTIONS:
            setattr(spec, section, tuned.apply(section, getattr(spec, section)))
        if tuned.n_envs is not None:
            spec.n_envs = tuned.n_envs
    return spec


def env_option(args: Sequence[str], data: dict[str, Any] | None = None) -> str | None:
    """The env id that command-line ``args`` give (``--env ID`` or ``--env=ID``, the last one
    wins), else the ``env`` of a spec file's ``data``, else ``None``."""
    env = None
    for i, token in enumerate(args):
        if token == "--env" and i + 1 < len(args):
            env = args[i + 1]
        elif token.startswith("--env="):
            env = token.split("=", 1)[1]
    if env is None and data is not None and data.get("env") is not None:
        env = str(data["env"])
    return env


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def spec_to_dict(algo: str, spec: Any) -> dict[str, Any]:
    """The spec as plain data (YAML/JSON): ``{"algo", <run options>, "algo_params": {...},
    "update_cfg": {...}, "train_cfg": {...}}``."""
    out: dict[str, Any] = {"algo": algo}
    for name in RUN_OPTION_NAMES:
        out[name] = _plain(getattr(spec, name))
    for section in CONFIG_SECTIONS:
        part = getattr(spec, section)
        out[section] = {f.name: _plain(getattr(part, f.name)) for f in dataclasses.fields(part)}
    return out


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _value_args(path: str, value: Any, default: Any) -> list[str]:
    """The command-line tokens that set field ``path`` to ``value`` (as tyro parses them)."""
    if isinstance(default, bool) and isinstance(value, bool):
        head, _, leaf = path.rpartition(".")
        return [_flag(path) if value else _flag(f"{head}.no_{leaf}" if head else f"no_{leaf}")]
    if value is None:
        return [_flag(path), "None"]
    if isinstance(value, (list, tuple)):
        return [_flag(path), *(str(v) for v in value)]
    return [_flag(path), str(value)]


def dict_to_args(algo: str, data: dict[str, Any], source: str) -> list[str]:
    """Command-line tokens equivalent to a spec dict (e.g. from YAML) for algorithm ``algo``.

    Raises:
        ValueError: naming ``source`` and the field, for a field the spec does not have.
    """
    default = default_spec(algo, env_option([], data))
    args: list[str] = []
    for key, value in data.items():
        if key == "algo":
            continue
        if key in CONFIG_SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: {key} must be a mapping of its fields, got {value!r}.")
            section = getattr(default, key)
            names = {f.name for f in dataclasses.fields(section)}
            for name, sub in value.items():
                if name not in names:
                    raise ValueError(
                        f"{source}: unknown field {key}.{name} for {algo}; its fields are "
                        f"{', '.join(sorted(names))}."
                    )
                args += _value_args(f"{key}.{name}", sub, getattr(section, name))
        elif key in RUN_OPTION_NAMES:
            args += _value_args(key, value, getattr(default, key))
        else:
            raise ValueError(
                f"{source}: unknown field {key!r}; the top level holds algo, "
                f"{', '.join(RUN_OPTION_NAMES)}, {', '.join(CONFIG_SECTIONS)}."
            )
    return args


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A spec file's contents (a mapping).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not valid YAML (naming the file and line) or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{where}: invalid YAML: {problem}; fix the file's syntax.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of fields, got {type(data).__name__}.")
    return data


def parse_spec(
    algo: str | None,
    args: Sequence[str],
    *,
    config_file: str | Path | None = None,
    prog: str = "kitae train",
) -> tuple[str, Any]:
    """Parses a run spec from command-line ``args`` (over ``config_file`` when given).

    Args:
        algo: the algorithm name, or ``None`` to take it from the config file's ``algo``.
        args: the remaining command-line tokens (field flags).
        config_file: a YAML spec file whose values the flags override.
        prog: program name shown in usage and errors.

    Returns:
        ``(algo, spec)``.

    Raises:
        ValueError: for an unknown algorithm or field, or an algorithm missing or conflicting.
        SystemExit: (from tyro) for a flag that does not parse, naming it; or after ``--help``.
    """
    import tyro

    file_args: list[str] = []
    data: dict[str, Any] | None = None
    if config_file is not None:
        data = read_yaml(config_file)
        file_algo = data.get("algo")
        if algo is None:
            if file_algo is None:
                raise ValueError(
                    f"{config_file}: no 'algo' field; name the algorithm: kitae train ALGO "
                    f"--config {config_file}."
                )
            algo = str(file_algo)
        elif file_algo is not None and file_algo != algo:
            raise ValueError(f"{config_file} is a {file_algo!r} config, not {algo!r}.")
        algorithm(algo)
        file_args = dict_to_args(algo, data, str(config_file))
    if algo is None:
        raise ValueError(f"name an algorithm ({', '.join(ALGORITHMS)}) or give --config FILE.")
    algorithm(algo)
    spec = tyro.cli(
        spec_type(algo),
        default=default_spec(algo, env_option(args, data)),
        args=[*file_args, *args],
        prog=f"{prog} {algo}",
    )
    return algo, normalize_spec(spec)


def normalize_spec(spec: Any) -> Any:
    """The spec with sequences of its config sections as tuples (as the dataclasses' defaults)."""
    for section in CONFIG_SECTIONS:
        part = getattr(spec, section)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if isinstance(value, list):
                setattr(part, f.name, tuple(value))
    return spec


# ---- envs ------------------------------------------------------------------------------------


def gymnax_id(env_id: str) -> str | None:
    """The JAX-native env id that ``env_id`` names (for
    :func:`~kitae.envs.jax_env.make_jax_env`), or ``None`` for a gymnasium id.

    ``gymnax:<id>`` always names gymnax; a bare id names gymnax only when gymnasium does not
    register it and gymnax does; ``brax:<name>`` and ``playground:<name>`` ids name themselves.
    """
    if env_id.startswith(GYMNAX_PREFIX):
        return env_id[len(GYMNAX_PREFIX) :]
    from kitae.envs.brax import is_brax_id

    if is_brax_id(env_id):
        return env_id
    import gymnasium as gym

    if env_id in gym.registry:
        return None
    try:
        import gymnax
    except ImportError:
        return None
    return env_id if env_id in gymnax.registered_envs else None


PETTINGZOO_PREFIX = "pettingzoo:"


def pettingzoo_env(env_id: str) -> Any:
    """The PettingZoo ``ParallelEnv`` of ``pettingzoo:<module>`` (``<module>.parallel_env()``),
    or ``None`` for another id.

    Raises:
        ValueError: if the module cannot be imported or has no ``parallel_env``.
    """
    if not env_id.startswith(PETTINGZOO_PREFIX):
        return None
    module_name = env_id[len(PETTINGZOO_PREFIX) :]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"env={env_id!r}: cannot import {module_name}: {err}") from err
    if not hasattr(module, "parallel_env"):
        raise ValueError(f"env={env_id!r}: {module_name} has no parallel_env().")
    return module.parallel_env()


def make_env(env_id: str, n_envs: int, vectorization: str = "sync") -> Any:
    """The training env of a run: a gymnasium vector env (built with ``vectorization``, see
    :func:`kitae.envs.make.make_vec_env`), a :class:`~kitae.envs.jax_env.JaxEnv` or a PettingZoo
    ``ParallelEnv``.

    Raises:
        ValueError: if the id is registered neither in gymnasium nor in gymnax, nor an importable
            PettingZoo env; or for a ``vectorization`` other than ``"sync"`` on an env that is not
            a gymnasium one.
    """
    parallel = pettingzoo_env(env_id)
    jax_id = gymnax_id(env_id) if parallel is None else None
    if vectorization != "sync" and (parallel is not None or jax_id is not None):
        raise ValueError(
            f"vectorization={vectorization!r} is for gymnasium envs; env={env_id!r} is not one: "
            "drop --vectorization."
        )
    if parallel is not None:
        return parallel
    if jax_id is not None:
        from kitae.envs.jax_env import make_jax_env

        return make_jax_env(jax_id)
    import gymnasium as gym

    from kitae.envs.atari import is_atari_id, register_atari_envs

    if is_atari_id(env_id):
        register_atari_envs()
    if env_id not in gym.registry:
        raise ValueError(
            f"env={env_id!r} is not a registered gymnasium env (nor a gymnax one): check the id, "
            "or write gymnax:<id> for a JAX-native env."
        )
    from kitae.envs.make import make_vec_env

    return make_vec_env(env_id, n_envs, vectorization=vectorization)


def build_config(spec: Any, env: Any) -> AlgoConfig:
    """The agent config of ``spec`` on ``env`` (a gymnasium vector env or a JaxEnv)."""
    from kitae.envs.jax_env import is_jax_env

    if is_jax_env(env):
        env_cfg = EnvConfig(
            env.name, env.observation_space, env.action_space, n_envs=int(spec.n_envs)
        )
    else:
        env_cfg = EnvConfig.from_env(env)
    return AlgoConfig(
        seed=spec.seed,
        algo_params=spec.algo_params,
        update_cfg=spec.update_cfg,
        train_cfg=spec.train_cfg,
        env_cfg=env_cfg,
    )


# ---- run directories -------------------------------------------------------------------------

SPEC_FILE = "config.yaml"


def default_run_name(algo: str, spec: Any) -> str:
    """``<algo>_<env>_s<seed>_<YYYYmmdd-HHMMSS>`` (characters outside ``[A-Za-z0-9._-]`` become
    ``-``)."""
    env = re.sub(r"[^A-Za-z0-9._-]", "-", spec.env)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{algo}_{env}_s{spec.seed}_{stamp}"


def check_run_name(run_name: str | None) -> None:
    """Refuses a run name that is not a single path component (so a run directory never lands
    outside its runs directory).

    Raises:
        ValueError: naming ``run_name``, for an empty name, ``.``/``..``, a name containing a
            path separator or a NUL character, or an absolute path.
    """
    if run_name is None:
        return
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if (
        not run_name
        or run_name in (".", "..")
        or any(sep in run_name for sep in separators)
        or "\0" in run_name
        or Path(run_name).is_absolute()
    ):
        raise ValueError(
            f"run_name={run_name!r} is invalid: it must be a single directory name such as "
            "'cartpole-lr3e-4' (no path separators, not '.' or '..'); choose where runs go "
            "with --runs-dir."
        )


def run_directory(algo: str, spec: Any) -> Path:
    """The run directory ``<runs_dir>/<run_name>`` of a new run.

    A default name gets a ``-2``, ``-3``... suffix when taken; an explicit ``run_name`` that is
    taken is refused.

    Raises:
        ValueError: if ``spec.run_name`` is not a single directory name (:func:`check_run_name`).
        FileExistsError: if ``spec.run_name`` names an existing, non-empty directory or a file,
            or ``spec.runs_dir`` is a file.
    """
    root = Path(spec.runs_dir)
    if root.exists() and not root.is_dir():
        raise FileExistsError(
            f"runs_dir={str(root)!r} is a file, not a directory: choose another --runs-dir."
        )
    if spec.run_name is not None:
        check_run_name(spec.run_name)
        path = root / spec.run_name
        if path.exists() and not path.is_dir():
            raise FileExistsError(
                f"{path} is a file, not a run directory: choose another --run-name."
            )
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(
                f"run directory {path} already exists: continue it with `kitae resume {path}`, "
                "or choose another --run-name."
            )
        return path
    base = default_run_name(algo, spec)
    path, k = root / base, 1
    while path.exists():
        k += 1
        path = root / f"{base}-{k}"
    return path


def write_spec(run_dir: Path, algo: str, spec: Any) -> Path:
    """Writes the resolved spec to ``<run_dir>/config.yaml`` (readable by ``--config``; a
    default ``run_name`` stays unset there, so the file starts a new run of its own)."""
    path = run_dir / SPEC_FILE
    data = spec_to_dict(algo, spec)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def read_spec(run_dir: str | Path) -> tuple[str, Any]:
    """``(algo, spec)`` of a run directory written by ``kitae train``.

    Raises:
        FileNotFoundError: if the directory has no ``config.yaml``.
    """
    run_dir = Path(run_dir)
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a run directory of `kitae train` (no {SPEC_FILE})."
        )
    return parse_spec(None, [], config_file=path)


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "RunOptions",
    "agent_class",
    "algorithm",
    "build_config",
    "default_spec",
    "dict_to_args",
    "env_option",
    "gymnax_id",
    "make_env",
    "parse_spec",
    "read_spec",
    "run_directory",
    "spec_to_dict",
    "spec_type",
    "write_spec",
]
