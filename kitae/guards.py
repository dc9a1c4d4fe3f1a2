"""Guards of the training loops: divergence, non-finite env data, env shapes and interruption.

* **Divergence.** The compiled update of both update builders ends with
  :func:`with_nonfinite_flags`: ``info[NONFINITE_KEY]`` is a ``float32`` vector with one flag
  per quantity named by :func:`flag_names` (each info entry, such as ``loss``; ``params``,
  every float leaf of the state outside the optimizer states; ``optimizer_state``, the
  optimizer moments, which any non-finite gradient reaches), ``1.0`` where it is not finite.
  Nothing is read on the host per update: the gymnasium loop queues the flags
  (:func:`record_update`) and reads them at log intervals, before every checkpoint and at the
  end (:func:`check_divergence`); the compiled loop keeps the first
  flagged step in its chunk carry (:func:`first_divergence`) and reads it with the chunk's
  metrics (:func:`raise_if_diverged`). Either raises :class:`DivergenceError` naming the env step
  and the quantities, before any checkpoint of the non-finite parameters is written.
* **Env data.** :func:`skip_non_finite` checks each vector step's rewards and observations with
  vectorized numpy; a non-finite value raises :class:`NonFiniteEnvDataError` naming the env id,
  the env step and the quantity, or, with ``train_cfg.non_finite="skip"``, the vector step is
  dropped. :func:`check_observations` compares observations with the declared space at reset and
  on the first step; :func:`explain_env_errors` turns a later broadcast error into an
  :class:`EnvShapeError` naming the env, the step and the shapes.
* **Interruption.** :func:`interruptible` (the command line's ``train`` / ``resume``) turns
  SIGINT and SIGTERM into a request that the loops read between vector steps or chunks
  (:func:`stop_requested`); the run saves a checkpoint and :func:`exit_if_stopped` exits with
  ``128 + signal`` after printing how to resume. A second signal aborts at once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from kitae.config import NON_FINITE_MODES, check_non_finite_mode
from kitae.modules.train_state import TrainState

NONFINITE_KEY = "nonfinite"
"""The ``info`` entry holding the update's non-finite flags (``float32[Q]``, see
:func:`flag_names`)."""
MAX_PENDING_UPDATES = 1024
"""Updates whose flags the gymnasium loop queues before reading them (one transfer)."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss, gradient (optimizer state) or parameter."""


class NonFiniteEnvDataError(ValueError):
    """An env returned a non-finite observation or reward."""


class EnvShapeError(ValueError):
    """An env returned observations that do not match its declared observation space."""


# ---- divergence ------------------------------------------------------------------------------
def _is_train_state(x: Any) -> bool:
    return isinstance(x, TrainState)


def _all_finite(tree: Any) -> jax.Array:
    """``bool[]``: every floating leaf of ``tree`` is finite (``True`` for no leaf)."""
    checks = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.ones((), bool)


def flag_names(info: Mapping[str, Any]) -> list[str]:
    """The quantities flagged for an update with diagnostics ``info``, in the order of the
    flags: the sorted ``info`` keys (without :data:`NONFINITE_KEY`), ``params`` and
    ``optimizer_state``."""
    return sorted(str(k) for k in info if k != NONFINITE_KEY) + ["params", "optimizer_state"]


def nonfinite_flags(state: Any, info: Mapping[str, Any]) -> jax.Array:
    """Which quantities of an update are not finite.

    Args:
        state: the agent state after the update (a pytree holding TrainStates).
        info: the update's diagnostics (scalars or arrays).

    Returns:
        ``float32[Q]``, ``1.0`` where some value of the quantity is NaN or infinite, for the
        ``Q`` quantities of :func:`flag_names`: each ``info`` entry, ``params`` (every float leaf
        of the state outside optimizer states: parameters, target parameters, statistics) and
        ``optimizer_state`` (which a non-finite gradient reaches). One array, so that reading
        the flags of an update is one transfer.
    """
    nodes = jax.tree.leaves(state, is_leaf=_is_train_state)
    train_states = [s for s in nodes if _is_train_state(s)]
    others = [s for s in nodes if not _is_train_state(s)]
    params = [s.replace(opt_state=None, tx=None) for s in train_states] + others
    values = {str(k): v for k, v in info.items() if k != NONFINITE_KEY}
    quantities = [values[name] for name in sorted(values)]
    quantities += [params, [s.opt_state for s in train_states]]
    return jnp.stack([~_all_finite(q) for q in quantities]).astype(jnp.float32)


def with_nonfinite_flags(state: Any, info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` with :data:`NONFINITE_KEY` set to :func:`nonfinite_flags` (traceable)."""
    return {**info, NONFINITE_KEY: nonfinite_flags(state, info)}


def without_flags(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` without its :data:`NONFINITE_KEY` entry."""
    return {k: v for k, v in info.items() if k != NONFINITE_KEY}


def _flagged(names: list[str], flags: np.ndarray) -> list[str]:
    return [name for name, value in zip(names, np.asarray(flags), strict=True) if value > 0]


def _divergence_message(agent: Any, env_steps: int, names: list[str]) -> str:
    from kitae.checkpoint import find_checkpoint

    last = "no checkpoint was written before"
    run_dir = agent.logger.run_dir
    if run_dir is not None:
        with contextlib.suppress(FileNotFoundError):
            last = f"the last checkpoint, {find_checkpoint(run_dir)}, stays the latest"
    return (
        f"training diverged: non-finite {', '.join(names)} after the update at env step "
        f"{env_steps}; no checkpoint is written with these parameters ({last}). Lower "
        f"update_cfg.learning_rate (now {agent.config.update_cfg.learning_rate}) or set "
        "update_cfg.max_grad_norm."
    )


@struct.dataclass
class DivergenceRecord:
    """The first update of a compiled chunk with a non-finite quantity.

    Attributes:
        env_steps: ``int32[]`` transitions collected at that update; ``-1`` if none.
        flags: ``float32[Q]`` its non-finite flags (see :func:`nonfinite_flags`).
    """

    env_steps: jax.Array
    flags: jax.Array


def no_divergence(info: Mapping[str, Any]) -> DivergenceRecord:
    """The empty :class:`DivergenceRecord` for updates whose info looks like ``info``."""
    return DivergenceRecord(
        env_steps=-jnp.ones((), jnp.int32),
        flags=jnp.zeros_like(info[NONFINITE_KEY]),
    )


def first_divergence(
    record: DivergenceRecord, info: Mapping[str, Any], env_steps: jax.Array
) -> DivergenceRecord:
    """``record``, or the flags of ``info`` at ``env_steps`` if they are the first raised."""
    flags = info[NONFINITE_KEY]
    first = (record.env_steps < 0) & jnp.any(flags > 0)
    return DivergenceRecord(
        env_steps=jnp.where(first, env_steps.astype(jnp.int32), record.env_steps),
        flags=jnp.where(first, flags, record.flags),
    )


def raise_if_diverged(agent: Any, metrics: Any) -> None:
    """Raises :class:`DivergenceError` if a compiled chunk's (host) metrics row holds a
    divergence (``metrics.divergence``, a :class:`DivergenceRecord`; ``metrics.info`` gives the
    flags' names).

    Raises:
        DivergenceError: naming the env step and the non-finite quantities.
    """
    record = metrics.divergence
    if record is not None and int(record.env_steps) >= 0:
        names = _flagged(flag_names(metrics.info), record.flags)
        raise DivergenceError(_divergence_message(agent, int(record.env_steps), names))


class DivergenceMonitor:
    """The gymnasium loop's queue of update flags, read at log intervals and checkpoints."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, jax.Array]] = []
        self.names: list[str] = []


def monitor(agent: Any) -> DivergenceMonitor:
    """The agent's :class:`DivergenceMonitor` (created on first use)."""
    return agent.__dict__.setdefault("_divergence_monitor", DivergenceMonitor())


def record_update(agent: Any, info: Mapping[str, Any]) -> dict[str, Any]:
    """Queues the flags of an update's ``info`` (no host transfer); returns ``info`` without
    them. Every :data:`MAX_PENDING_UPDATES` updates the queue is read (:func:`check_divergence`).
    """
    flags = info.get(NONFINITE_KEY)
    if flags is None:
        return dict(info)
    queue = monitor(agent)
    if not queue.names:
        queue.names = flag_names(info)
    queue.pending.append((int(agent.env_steps), flags))
    if len(queue.pending) >= MAX_PENDING_UPDATES:
        check_divergence(agent)
    return without_flags(info)


def check_divergence(agent: Any) -> None:
    """Reads the queued update flags (one transfer) and raises at the first non-finite one.

    Raises:
        DivergenceError: naming the first update's env step and its non-finite quantities.
    """
    queue = monitor(agent)
    if not queue.pending:
        return
    pending, queue.pending = queue.pending, []
    values = np.stack(jax.device_get([flags for _, flags in pending]))
    bad = np.flatnonzero(values.max(axis=1) > 0)
    if bad.size:
        names = _flagged(queue.names, values[bad[0]])
        raise DivergenceError(_divergence_message(agent, pending[bad[0]][0], names))


def check_before_saving(agent: Any, state: Any = None) -> None:
    """Refuses to checkpoint non-finite parameters: reads the queued flags, then checks the
    state itself (``agent.state`` by default) on the host.

    Raises:
        DivergenceError: if an update or the state is not finite.
    """
    check_divergence(agent)
    state = agent.state if state is None else state
    for leaf in jax.tree.leaves(jax.device_get(state)):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.inexact) and not np.isfinite(leaf).all():
            raise DivergenceError(_divergence_message(agent, int(agent.env_steps), ["state"]))


# ---- env data ----------------------------------------------------------------------------------
def _observation_leaves(obs: Any) -> list[tuple[str, np.ndarray]]:
    if isinstance(obs, Mapping):
        return [
            (f"observation[{k!r}]" + name[len("observation") :], leaf)
            for k, v in obs.items()
            for name, leaf in _observation_leaves(v)
        ]
    return [("observation", np.asarray(obs))]


def _first_non_finite(name: str, values: np.ndarray) -> str | None:
    if not np.issubdtype(values.dtype, np.inexact) or np.isfinite(values).all():
        return None
    index = np.argwhere(~np.isfinite(values))[0]
    return f"{name} ({values[tuple(index)]} for env {index[0]})"


def find_non_finite(
    observation: Any, rewards: np.ndarray | None = None, final_observations: Any = None
) -> str | None:
    """Names the first non-finite quantity of a vector step, or ``None``.

    Args:
        observation: ``[N, ...]`` observations (an array or a dict of them).
        rewards: ``[N]`` rewards.
        final_observations: the ``infos["final_obs"]`` entries of the envs that ended.

    Returns:
        e.g. ``"reward (nan for env 2)"``.
    """
    if rewards is not None:
        rewards = np.asarray(rewards)
        if rewards.dtype == object:
            rewards = rewards.astype(np.float64)
        found = _first_non_finite("reward", rewards)
        if found is not None:
            return found
    for name, leaf in _observation_leaves(observation):
        found = _first_non_finite(name, leaf)
        if found is not None:
            return found
    for obs in final_observations or ():
        for name, leaf in _observation_leaves(obs):
            found = _first_non_finite(f"final {name}", leaf[None])
            if found is not None:
                return found
    return None


def _plainly_finite(step: Any) -> bool:
    """``True`` if no episode ended in ``step`` (no ``final_obs``, which same-step autoreset
    reports only then) and its rewards and (array) next observations sum to finite values, which
    no NaN or infinity allows: the per-step fast path."""
    obs, rewards = step.next_observation, step.reward
    if not isinstance(obs, np.ndarray) or not isinstance(rewards, np.ndarray):
        return False
    if rewards.dtype.kind != "f" or "final_obs" in step.infos:
        return False
    return math.isfinite(rewards.sum()) and (obs.dtype.kind != "f" or math.isfinite(obs.sum()))


def skip_non_finite(agent: Any, step: Any, index: int) -> bool:
    """Checks one vector step of the gymnasium loop; ``True`` if it must be skipped.

    On the first step (``index == 1``) the observations are also checked against the declared
    space (:func:`check_observations`). With ``train_cfg.non_finite="skip"``, a step holding a
    non-finite reward or observation is dropped: nothing is stored or counted, the agent's
    unfinished trajectories end there (:meth:`~kitae.base.BaseAgent.on_env_reset`: off-policy,
    no n-step window crosses the gap; on-policy, the unfinished rollout is dropped), and a warning
    is issued once per agent.

    Args:
        agent: the training agent.
        step: the :class:`~kitae.actor_learner.VectorStep`.
        index: the loop's step number (from 1).

    Raises:
        NonFiniteEnvDataError: naming the env id, the env step and the quantity (mode "raise").
    """
    if index > 1 and _plainly_finite(step) and not agent.__dict__.get("_skipped_last"):
        return False  # the common case: one sum per array, no episode ended
    space, n_envs = agent.config.env_cfg.observation_space, agent.config.env_cfg.n_envs
    if index == 1:
        where = f"at env step {agent.env_steps + n_envs}"
        check_observations(agent, step.next_observation, space, n_envs, where)
    ended = np.logical_or(step.terminated, step.truncated)
    finals = None
    if ended.any() and "final_obs" in step.infos:
        finals = [step.infos["final_obs"][i] for i in np.flatnonzero(ended)]
        where = f"at env step {agent.env_steps + n_envs} (final observation)"
        for final in finals:  # not stacked by the vector env: the loop copies them into a batch
            batch = jax.tree.map(lambda x: np.asarray(x)[None], final)
            check_observations(agent, batch, space, 1, where)
    found = find_non_finite(step.next_observation, step.reward, finals)
    if found is None and (index == 1 or agent.__dict__.get("_skipped_last")):
        found = find_non_finite(step.observation)  # else it was checked as a next observation
    agent._skipped_last = found is not None
    if found is None:
        return False
    env_steps = agent.env_steps + n_envs
    if agent.config.train_cfg.non_finite == "raise":
        raise NonFiniteEnvDataError(
            f"env {agent.config.env_cfg.task_name!r} returned a non-finite {found} at env step "
            f"{env_steps}; fix the env, or set train_cfg.non_finite='skip' to drop such steps."
        )
    if not agent.__dict__.get("_warned_non_finite"):
        agent._warned_non_finite = True
        warnings.warn(
            f"env {agent.config.env_cfg.task_name!r} returned a non-finite {found} at env step "
            f"{env_steps}: train_cfg.non_finite='skip' drops this vector step and any such later "
            "one (this warning is issued once).",
            stacklevel=3,
        )
    agent.tracker.returns[ended] = 0.0
    agent.tracker.lengths[ended] = 0
    agent.on_env_reset()
    return True


def _space_leaves(space: gym.Space) -> list[tuple[str, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return [
            (f"observation[{k!r}]" + name[len("observation") :], leaf)
            for k, sub in space.spaces.items()
            for name, leaf in _space_leaves(sub)
        ]
    return [("observation", space)]


def check_observations(agent: Any, obs: Any, space: gym.Space, n_envs: int, where: str) -> None:
    """Checks a batch of observations against one env's observation ``space``.

    Args:
        agent: the training agent (for the env id).
        obs: ``[n_envs, ...]`` observations (an array or a dict of them).
        space: the declared observation space of one env.
        n_envs: the number of envs.
        where: when they were returned, e.g. ``"at reset"`` or ``"at env step 8"``.

    Raises:
        EnvShapeError: naming the env, the step and the expected vs actual shape or dtype.
    """
    env_id = agent.config.env_cfg.task_name
    for name, sub in _space_leaves(space):
        if sub.shape is None or sub.dtype is None:
            continue
        leaf = obs
        for key in re.findall(r"\['([^']*)'\]", name):
            if not isinstance(leaf, Mapping) or key not in leaf:
                raise EnvShapeError(
                    f"env {env_id!r} returned observations without the key {key!r} {where}; its "
                    f"observation space is {space}."
                )
            leaf = leaf[key]
        leaf = np.asarray(leaf)
        expected = (n_envs, *sub.shape)
        if leaf.shape != expected:
            raise EnvShapeError(
                f"env {env_id!r} returned {name} of shape {leaf.shape[1:]} (batch {leaf.shape}) "
                f"{where}, but its observation space declares {sub.shape} (batch {expected}); "
                "make the env's observations match its observation_space."
            )
        if not np.can_cast(leaf.dtype, sub.dtype, casting="same_kind"):
            raise EnvShapeError(
                f"env {env_id!r} returned {name} of dtype {leaf.dtype} {where}, but its "
                f"observation space declares {sub.dtype}; make the env's observations match "
                "its observation_space."
            )


@contextlib.contextmanager
def explain_env_errors(agent: Any) -> Iterator[None]:
    """Turns the errors that an observation of another shape raises once it reaches a
    preallocated array (numpy's broadcast error; a gymnasium vector env's "Output array is the
    wrong shape") into an :class:`EnvShapeError` naming the env, the step and the shapes."""
    try:
        yield
    except ValueError as error:
        text = str(error)
        shapes = re.search(
            r"could not broadcast input array from shape (\(.*?\)) into shape "
            r"(\(.*?\))",
            text,
        )
        if isinstance(error, EnvShapeError) or (
            shapes is None and "Output array is the wrong shape" not in text
        ):
            raise
        cfg = agent.config.env_cfg
        found = (
            f"data of shape {shapes.group(1)} where shape {shapes.group(2)} was expected"
            if shapes is not None
            else f"an observation that does not fit its observation space (shape "
            f"{cfg.observation_space.shape})"
        )
        raise EnvShapeError(
            f"env {cfg.task_name!r} returned {found}, at env step {agent.env_steps + cfg.n_envs} "
            f"(observation space {cfg.observation_space}, action space {cfg.action_space}); make "
            "the env's observations match its observation_space."
        ) from error


# ---- interruption ------------------------------------------------------------------------------
_stop_signal = 0


def stop_requested() -> int:
    """The signal number that asked the training loops to stop, ``0`` if none."""
    return _stop_signal


def request_stop(signum: int) -> None:
    """Asks the training loops to stop at their next consistent point (what a signal does)."""
    global _stop_signal
    _stop_signal = int(signum)


def _handle(signum: int, frame: Any) -> None:
    del frame
    if stop_requested():
        return
    request_stop(signum)
    name = signal.Signals(signum).name
    os.write(
        2,
        f"\nkitae: {name} received: stopping at the next consistent point to save a checkpoint "
        f"(send {name} again to abort at once, without saving)\n".encode(),
    )
    # A second signal takes the system's default action at once, even inside compiled code.
    signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the context, ``signals`` ask the loops to stop (:func:`stop_requested`) instead of
    interrupting them; a second one aborts. Handlers are installed from the main thread only and
    the previous ones restored on exit, with the request cleared."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    request_stop(0)
    try:
        for s in signals:
            signal.signal(s, _handle)
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        request_stop(0)


def exit_if_stopped(agent: Any, run_dir: str | Path) -> None:
    """After an interrupted run saved its checkpoint: prints how to resume it and exits with
    ``128 + signal`` (130 for SIGINT, 143 for SIGTERM)."""
    signum = stop_requested()
    if not signum:
        return
    print(
        f"kitae: {signal.Signals(signum).name}: training stopped at env step {agent.env_steps}, "
        f"checkpoint saved; continue with: kitae resume {run_dir}",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(128 + signum)


def interruptible(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorates a command-line command: SIGINT / SIGTERM stop its training at a consistent
    point (:func:`stop_on_signals`; not for ``distributed=`` runs, whose processes stop together
    only at the end; a signal received after the run's checkpoint was saved still sets the exit
    status) and a :class:`DivergenceError` exits with a one-line error (status 1)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            distributed = kwargs.get("distributed") is not None
            signals = contextlib.nullcontext() if distributed else stop_on_signals()
            try:
                with signals:
                    result = fn(*args, **kwargs)
                    if stop_requested():  # a signal that came after the checkpoint was saved
                        raise SystemExit(128 + stop_requested())
                    return result
            except DivergenceError as error:
                raise SystemExit(f"kitae {command}: error: {error}") from None

        return run

    return decorate


__all__ = [
    "NONFINITE_KEY",
    "NON_FINITE_MODES",
    "DivergenceError",
    "NonFiniteEnvDataError",
    "EnvShapeError",
    "DivergenceRecord",
    "flag_names",
    "nonfinite_flags",
    "with_nonfinite_flags",
    "without_flags",
    "no_divergence",
    "first_divergence",
    "raise_if_diverged",
    "record_update",
    "check_divergence",
    "check_before_saving",
    "check_non_finite_mode",
    "find_non_finite",
    "skip_non_finite",
    "check_observations",
    "explain_env_errors",
    "stop_requested",
    "request_stop",
    "stop_on_signals",
    "exit_if_stopped",
    "interruptible",
]
