"""Shared pieces of the benchmark scripts: machine description, the JSON line, the greedy
evaluation protocol and the reference targets of the learning benchmark.

Importing this module needs only numpy (the functions that use kitae import it
themselves), so the peer scripts under ``peers/`` use it too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

EVAL_EPISODES = 20
EVAL_SEED = 10_000
"""Greedy evaluation: 20 episodes of the gymnasium env reset with seeds 10000..10019."""


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU model, core count and JAX backend of this machine."""
    import jax

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def versions() -> dict[str, str]:
    import flax
    import gymnasium
    import jax
    import optax

    import kitae

    return {
        "kitae": kitae.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "gymnasium": gymnasium.__version__,
    }


def emit(record: dict[str, Any], package_versions: dict[str, str] | None = None) -> None:
    """Prints one JSON line with the machine, versions and load average appended (values that
    JSON cannot hold are written as their ``repr``).

    Args:
        record: the run's fields.
        package_versions: the versions to record (default: kitae's stack, :func:`versions`).
    """
    record = dict(record)
    record["loadavg"] = list(os.getloadavg())
    record["machine"] = machine()
    record["versions"] = versions() if package_versions is None else package_versions
    print(json.dumps(record, default=repr), flush=True)


# ---- schedules given in env steps ---------------------------------------------------------
def schedule_fraction(schedule_steps: int, run_steps: int) -> float:
    """A schedule that a peer configuration gives in env steps, as the fraction of a run of
    ``run_steps`` that it spans, clipped to 1: in a shorter run the schedule is compressed into
    the run and reaches its end value at the run's last step.

    Args:
        schedule_steps: the schedule's length in env steps (e.g. PureJaxRL's epsilon decay of
            250k steps).
        run_steps: the run's length in env steps.
    """
    if run_steps < 1:
        raise SystemExit(f"--steps={run_steps} is invalid: it must be >= 1.")
    return min(1.0, schedule_steps / run_steps)


def learning_start(start_step: int, run_steps: int) -> int:
    """A peer's ``learning_starts`` (env steps), clipped to half the run so that a run shorter
    than the peer's still learns (a run twice as long or longer keeps the peer's value)."""
    return min(start_step, run_steps // 2)


def update_period(period: int, n_gradient_steps: int) -> int:
    """A target update period in gradient steps, clipped to the run's gradient steps so that the
    target is updated at least once in a short run (``>= 1``)."""
    return max(1, min(period, n_gradient_steps))


# ---- greedy checkpoints ---------------------------------------------------------------------
class Checkpoints:
    """Greedy evaluations during and after training, their time kept apart from training time.

    Args:
        evaluate: runs the greedy evaluation of the current policy and returns the episode
            returns (``[EVAL_EPISODES]``).
    """

    def __init__(self, evaluate: Callable[[], Any]):
        self.evaluate = evaluate
        self.points: list[tuple[int, float]] = []
        self.eval_s = 0.0
        self._last_returns: list[float] = []

    def __call__(self, step: int) -> list[float]:
        """Evaluates at env step ``step`` and records ``(step, mean return)``."""
        start = time.perf_counter()
        returns = [float(r) for r in self.evaluate()]
        self.eval_s += time.perf_counter() - start
        self.points.append((int(step), float(np.mean(returns))))
        self._last_returns = returns
        return returns

    def final(self, step: int) -> list[float]:
        """The returns at the end of training: those of the last checkpoint when it was taken
        at ``step``, else a new evaluation."""
        if self.points and self.points[-1][0] == step:
            return self._last_returns
        return self(step)

    def first_over(self, threshold: float | None) -> int | None:
        """The step of the first checkpoint whose mean return is ``>= threshold``."""
        if threshold is None:
            return None
        return next((step for step, value in self.points if value >= threshold), None)


# ---- the learning benchmark ---------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A reference result: greedy mean return ``>= threshold`` within ``steps`` env steps."""

    threshold: float | None
    steps: int


LEARNING_TARGETS: dict[tuple[str, str], Target] = {
    ("dqn", "CartPole-v1"): Target(475.0, 100_000),
    ("plain-dqn", "CartPole-v1"): Target(475.0, 100_000),
    ("double-dueling-dqn", "CartPole-v1"): Target(475.0, 100_000),
    ("rainbow-dqn", "CartPole-v1"): Target(475.0, 100_000),
    ("c51", "CartPole-v1"): Target(475.0, 100_000),
    ("qrdqn", "CartPole-v1"): Target(475.0, 100_000),
    ("iqn", "CartPole-v1"): Target(475.0, 100_000),
    ("ppo", "CartPole-v1"): Target(475.0, 100_000),
    ("double-dueling-dqn", "Acrobot-v1"): Target(-100.0, 100_000),
    ("dqn", "Acrobot-v1"): Target(-100.0, 100_000),
    ("plain-dqn", "Acrobot-v1"): Target(-100.0, 100_000),
    ("c51", "Acrobot-v1"): Target(-100.0, 100_000),
    ("qrdqn", "Acrobot-v1"): Target(-100.0, 100_000),
    ("iqn", "Acrobot-v1"): Target(-100.0, 100_000),
    ("ppo", "Acrobot-v1"): Target(-100.0, 100_000),
    ("sac", "Pendulum-v1"): Target(-200.0, 20_000),
    ("td3", "Pendulum-v1"): Target(-200.0, 20_000),
    ("ddpg", "Pendulum-v1"): Target(-250.0, 20_000),
    ("ppo", "Pendulum-v1"): Target(-250.0, 500_000),
    ("ppo-continuous", "Pendulum-v1"): Target(-250.0, 500_000),
}
"""``(algo, env) -> Target``; the first env listed for an algo is its default env."""

DEFAULT_LEARNING_STEPS = 100_000


def learning_target(algo: str, env_id: str) -> Target:
    """The reference target of ``(algo, env_id)``; for another pair, the threshold of the env's
    first target (``None`` if the env has none) and :data:`DEFAULT_LEARNING_STEPS`."""
    if (algo, env_id) in LEARNING_TARGETS:
        return LEARNING_TARGETS[(algo, env_id)]
    thresholds = [t.threshold for (_, env), t in LEARNING_TARGETS.items() if env == env_id]
    return Target(thresholds[0] if thresholds else None, DEFAULT_LEARNING_STEPS)


def default_env(algo: str) -> str:
    """The first env of ``algo`` in :data:`LEARNING_TARGETS` (CartPole-v1 if none)."""
    return next((env for a, env in LEARNING_TARGETS if a == algo), "CartPole-v1")


@dataclass(frozen=True)
class LearningRun:
    """What the command line of a learning script resolves to."""

    algo: str
    env_id: str
    seeds: list[int]
    steps: int
    eval_every: int
    threshold: float | None


def learning_parser(description: str, algos: Iterable[str]) -> argparse.ArgumentParser:
    """The options shared by the learning scripts (kitae's and the peers')."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--algo", choices=list(algos), required=True)
    parser.add_argument("--env", default=None, help="gymnasium id (default: the algo's first)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds, one run each")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--steps", type=int, default=None, help="env steps per run (default: the target's)"
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="greedy checkpoint every this many steps (default: steps / 10; 0: only at the end)",
    )
    return parser


def resolve_learning_run(args: argparse.Namespace) -> LearningRun:
    """Fills in the defaults of :func:`learning_parser`'s options."""
    env_id = args.env or default_env(args.algo)
    target = learning_target(args.algo, env_id)
    steps = target.steps if args.steps is None else args.steps
    eval_every = max(steps // 10, 1) if args.eval_every is None else args.eval_every
    if steps < 1 or args.seeds < 1 or eval_every < 0:
        raise SystemExit("--steps and --seeds must be >= 1 and --eval-every >= 0.")
    seeds = list(range(args.seed, args.seed + args.seeds))
    return LearningRun(args.algo, env_id, seeds, steps, eval_every, target.threshold)


def learning_record(
    run: LearningRun,
    *,
    system: str,
    variant: str,
    config: str,
    seed: int,
    steps: int,
    train_s: float,
    returns: list[float],
    checkpoints: Checkpoints,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON fields of one learning run (``extra`` appended)."""
    return {
        "benchmark": "learning",
        "system": system,
        "algo": run.algo,
        "variant": variant,
        "config": config,
        "env": run.env_id,
        "seed": seed,
        "steps": steps,
        "train_s": round(train_s, 3),
        "sps": round(steps / train_s, 1),
        "eval_mean": float(np.mean(returns)),
        "eval_std": float(np.std(returns)),
        "eval_returns": returns,
        "budget_steps": run.steps,
        "threshold": run.threshold,
        "first_step_over_threshold": checkpoints.first_over(run.threshold),
        "eval_every": run.eval_every,
        "checkpoints": checkpoints.points,
        **extra,
    }


# ---- kitae training with checkpoints --------------------------------------------------------
def _segment_end(agent: Any, end: int, eval_every: int) -> int:
    """The end of the next compiled training call: the next checkpoint, or a later one when an
    off-policy agent would not update before it (a compiled call must update)."""
    if not eval_every:
        return end
    stop = min(end, (agent.env_steps // eval_every + 1) * eval_every)
    while (
        stop < end
        and agent.algo_type == "off_policy"
        and agent.expected_updates(stop - agent.env_steps) == 0
    ):
        stop = min(end, stop + eval_every)
    return stop


def train_kitae(
    agent: Any, env: Any, env_id: str, n_env_steps: int, eval_every: int = 0
) -> tuple[float, Checkpoints, list[float]]:
    """Trains ``agent`` for ``n_env_steps``, evaluating it greedily every ``eval_every`` steps.

    On a gymnasium env the evaluations run from ``agent.train``'s callback; on a JAX env (the
    compiled path, which takes no callback) training runs in segments that end at the
    checkpoints (off-policy, the first segment runs until learning starts; on-policy, segments
    round up to whole rollouts). Evaluations use ``kitae.evaluation.evaluate`` on the gymnasium
    env ``env_id``.

    Returns:
        ``train_s`` (wall time of ``agent.train``, compilation included, evaluations excluded),
        the checkpoints and the final greedy returns.
    """
    from kitae.envs.jax_env import is_jax_env
    from kitae.evaluation import evaluate

    checkpoints = Checkpoints(lambda: evaluate(agent, env_id, EVAL_EPISODES, EVAL_SEED))
    start = time.perf_counter()
    if is_jax_env(env):
        end = agent.env_steps + n_env_steps
        while agent.env_steps < end:
            agent.train(env, _segment_end(agent, end, eval_every) - agent.env_steps)
            if eval_every:
                checkpoints(agent.env_steps)
    else:
        agent.train(
            env,
            n_env_steps,
            callback=(lambda a: checkpoints(a.env_steps)) if eval_every else None,
            callback_every=eval_every or n_env_steps,
        )
    train_s = time.perf_counter() - start - checkpoints.eval_s
    return train_s, checkpoints, checkpoints.final(agent.env_steps)


def train_and_report(
    agent: Any,
    env: Any,
    algo: str,
    config: str,
    seed: int,
    eval_every: int = 0,
    env_id: str = "CartPole-v1",
) -> None:
    """Trains ``agent`` on ``env``, evaluates it greedily and prints the JSON line.

    ``train_s`` is the wall time of ``agent.train`` (compilation included) minus the time spent
    in the checkpoint evaluations that ``eval_every`` asks for; ``checkpoints`` lists
    ``(env_steps, greedy mean return)`` and ``first_solved`` the first step reaching 475.
    """
    train_s, checkpoints, returns = train_kitae(
        agent, env, env_id, agent.config.train_cfg.n_env_steps, eval_every
    )
    emit(
        {
            "system": "kitae",
            "algo": algo,
            "config": config,
            "seed": seed,
            "steps": agent.env_steps,
            "train_s": round(train_s, 3),
            "sps": round(agent.env_steps / train_s, 1),
            "eval_mean": float(np.mean(returns)),
            "eval_std": float(np.std(returns)),
            "eval_returns": returns,
            "n_updates": agent.n_updates,
            "gradient_steps": int(agent.state.step),
            "checkpoints": checkpoints.points,
            "first_solved": checkpoints.first_over(475),
        }
    )


def run_vmapped_seeds(
    agent: Any, env: Any, train: Any, seed: int, seeds: int, repeats: int, eval_episodes: int
) -> dict[str, Any]:
    """Compiles ``jit(vmap(train))`` over ``seeds`` keys, runs it ``repeats`` times and evaluates
    each seed's final agent greedily on ``eval_episodes`` episodes of the JAX env.

    Returns:
        The JSON fields of the run: ``steps``, ``compile_s``, ``train_s`` (best of the repeats),
        ``train_s_all``, ``sps``, ``eval_mean``, ``eval_per_seed`` and
        ``train_return_tail_per_seed`` (the training episodes that ended in the last 2% of the
        run, as PureJaxRL and rejax report).
    """
    import jax

    from kitae.compiled import evaluate_compiled

    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seed, seed + seeds))
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        runner, metrics = compiled(keys)
        jax.block_until_ready(runner)
        times.append(time.perf_counter() - start)
    train_s = min(times)

    greedy = agent.act_fn(greedy=True)

    def act(state, key, obs):
        return greedy(state, key, obs, jax.numpy.zeros((), jax.numpy.int32), {})[0]

    def evaluate_one(state, key):
        return evaluate_compiled(
            act, state, env, key, eval_episodes, to_env_action=agent.to_env_action
        )

    eval_keys = jax.vmap(jax.random.PRNGKey)(np.arange(seeds) + 777)
    per_seed = np.asarray(jax.jit(jax.vmap(evaluate_one))(runner.agent_state, eval_keys))
    per_seed = per_seed.mean(axis=1)
    train_returns = np.asarray(metrics.episode_return)
    tail = max(1, train_returns.shape[1] // 50)
    train_tail = np.nanmean(train_returns[:, -tail:], axis=1)
    steps = int(train.n_iterations * train.steps_per_iteration)
    return {
        "steps": steps,
        "compile_s": round(compile_s, 3),
        "train_s": round(train_s, 3),
        "train_s_all": [round(t, 3) for t in times],
        "sps": round(seeds * steps / train_s, 1),
        "eval_mean": float(per_seed.mean()),
        "eval_per_seed": [round(float(r), 2) for r in per_seed],
        "train_return_tail_per_seed": [round(float(r), 2) for r in train_tail],
    }
