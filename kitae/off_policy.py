"""The agent that learns from a replay buffer: transitions staged on the host, written to the
buffer in place, and one compiled update (:func:`kitae.updates.make_off_policy_update`) every
``skip_steps`` transitions."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from kitae.agent import BaseAgent
from kitae.buffer import Experience, ReplayBuffer, RolloutBuffer
from kitae.config import AlgoConfig
from kitae.frame_replay import check_frame_stacks
from kitae.schedules import off_policy_min_transitions, off_policy_update_count
from kitae.updates import (
    make_off_policy_update,
    replay_buffer_from_config,
    sequence_length_from_config,
)


class OffPolicyAgent(BaseAgent):
    """An agent that learns from a replay buffer.

    Schedule (from ``algo_params``): after ``start_step`` transitions (``-1``: as soon as the
    buffer holds ``batch_size``), one update every ``skip_steps`` transitions; an update takes
    ``update_cfg.n_epochs`` gradient steps, each on a fresh sample of ``batch_size``.

    Replay options, also read from ``algo_params`` when present (see
    :func:`replay_buffer_from_config`): ``n_step > 1`` makes every sample a window of ``n_step``
    consecutive transitions of one env (leaves ``[B, n_step, ...]``; reduce it with
    :func:`kitae.timesteps.compute_n_step_return`); ``prioritized`` uses proportional
    prioritized replay, in which case ``process_experience_fn`` must return a ``NamedTuple`` with
    a ``weight`` field (filled with the importance weights, ``[B]``, for the update step to weight
    its per-sample losses) and ``update_step_fn``'s info must hold ``"td_error"`` (``[B]``, written
    back as the new priorities). Frame-stacked observations are stored one frame per step
    (``update_cfg.frame_stack_replay``, see :mod:`kitae.frame_replay`); the sampled transitions
    are the same.
    """

    algo_type = "off_policy"
    update_donate_argnums = (1,)
    """The buffer state is donated to the update: priorities change in place, storage passes
    through without a copy."""
    STAGING_STEPS = 64
    """Vector steps staged on the host before one in-place write to the replay buffer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer_state = None
        self._staging = RolloutBuffer(min(self.STAGING_STEPS, self.replay_buffer.slots_per_env))
        staged = self._staging.n_steps
        buffer = self.replay_buffer

        def add_staged(buffer_state, experience, count):
            valid = jnp.broadcast_to((jnp.arange(staged) < count)[:, None], (staged, buffer.n_envs))
            return buffer.add_batch(buffer_state, experience, valid)

        self._add_staged = jax.jit(add_staged, donate_argnums=0)
        self._end_episodes = jax.jit(buffer.end_episodes, donate_argnums=0)
        self._ticks = 0

    @functools.cached_property
    def replay_buffer(self) -> ReplayBuffer:
        """The :class:`~kitae.buffer.ReplayBuffer` (its state is :attr:`buffer_state`)."""
        n_updates = off_policy_update_count(
            self.config.train_cfg.n_env_steps,
            self.config.env_cfg.n_envs,
            self.skip_steps,
            self.start_step,
            off_policy_min_transitions(self.config),
        )
        return replay_buffer_from_config(self.config, n_updates)

    @property
    def sequence_length(self) -> int | None:
        """Transitions per sample (``algo_params.n_step``), ``None`` for single transitions."""
        return sequence_length_from_config(self.config)

    def run_update(self, data: Any) -> None:
        self.state, self.buffer_state, self._update_key, info = self.update_fn(
            self.state, data, self._update_key
        )
        self.record_update(info)

    @property
    def skip_steps(self) -> int:
        return int(getattr(self.config.algo_params, "skip_steps", 1))

    @property
    def start_step(self) -> int:
        return int(getattr(self.config.algo_params, "start_step", -1))

    def validate_config(self, config: AlgoConfig) -> None:
        u, e = config.update_cfg, config.env_cfg
        for name, default in (("skip_steps", 1), ("start_step", -1)):
            if not hasattr(config.algo_params, name):
                warnings.warn(
                    f"algo_params ({type(config.algo_params).__name__}) has no field {name!r}: "
                    f"the update schedule uses {name}={default}.",
                    stacklevel=3,
                )
        if u.batch_size > u.max_buffer_size:
            raise ValueError(
                f"update_cfg.batch_size={u.batch_size} is larger than update_cfg.max_buffer_size="
                f"{u.max_buffer_size}: the replay buffer can never hold one batch, so the agent "
                "would never update. Use batch_size <= max_buffer_size."
            )
        if u.max_buffer_size < e.n_envs:
            raise ValueError(
                f"update_cfg.max_buffer_size={u.max_buffer_size} is smaller than env_cfg.n_envs="
                f"{e.n_envs}: the buffer needs one slot per env; raise max_buffer_size."
            )

    def expected_updates(self, n_env_steps: int) -> int:
        def count(steps: int) -> int:
            return off_policy_update_count(
                steps,
                self.config.env_cfg.n_envs,
                self.skip_steps,
                self.start_step,
                off_policy_min_transitions(self.config),
            )

        return count(self.env_steps + n_env_steps) - count(self.env_steps)

    def zero_update_message(self, n_env_steps: int) -> str:
        u, p = self.config.update_cfg, self.config.algo_params
        return (
            f"train(n_env_steps={n_env_steps}) would perform zero updates: learning starts after "
            f"max(start_step={getattr(p, 'start_step', -1)}, batch_size={u.batch_size}, "
            f"n_envs * n_step={off_policy_min_transitions(self.config)}) "
            f"transitions and updates every skip_steps={self.skip_steps}. Collect more steps, "
            "or lower start_step / batch_size / skip_steps."
        )

    def make_update_fn(self) -> Callable:
        """``update(state, buffer_state, key) -> (state, buffer_state, key, info)``, see
        :func:`make_off_policy_update`."""
        return make_off_policy_update(
            self.replay_buffer,
            self.process_experience_fn,
            self.update_step_fn,
            self.config.update_cfg.batch_size,
            self.config.update_cfg.n_epochs,
            sequence_length=self.sequence_length,
        )

    def flush(self) -> None:
        """Writes the staged transitions into the replay buffer (one in-place jitted call)."""
        if self._staging.count == 0:
            return
        storage, count = self._staging.flush()
        if self.buffer_state is None:
            example = jax.tree.map(lambda x: jnp.asarray(x[0]), storage)
            self.buffer_state = self.replay_buffer.init(example)
        self.buffer_state = self._add_staged(self.buffer_state, storage, count)
        # The staging storage is reused: make sure the copy into the buffer is done.
        jax.block_until_ready(self.buffer_state)
        check_frame_stacks(self.buffer_state)

    def on_env_reset(self) -> None:
        """Stores the staged transitions of the previous env, then ends its episodes in the
        replay buffer (see ``end_episodes``): nothing stored continues into the new ones."""
        self.flush()
        if self.buffer_state is not None:
            self.buffer_state = self._end_episodes(self.buffer_state)

    def store_transition(self, experience: Experience) -> None:
        """Stages one vector step (leaves ``[N, ...]``) for the replay buffer, without updating."""
        self._staging.add(experience)
        if self._staging.full:
            self.flush()

    def _store(self, experience: Experience) -> None:
        self.store_transition(experience)
        ticks = self.env_steps // self.skip_steps
        due, self._ticks = ticks - self._ticks, ticks
        if due <= 0:
            return
        first = max(self.start_step, off_policy_min_transitions(self.config), 1)
        if self.env_steps < first:
            return
        self.flush()
        for _ in range(due):
            self.run_update(self.buffer_state)


__all__ = ["OffPolicyAgent"]
