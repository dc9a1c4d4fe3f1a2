"""The agent that learns from fresh rollouts: one compiled update
(:func:`kitae.updates.make_on_policy_update`) per rollout of ``max_buffer_size`` transitions."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax

from kitae.agent import BaseAgent
from kitae.buffer import Experience, RolloutBuffer
from kitae.config import AlgoConfig
from kitae.schedules import on_policy_update_count
from kitae.updates import make_on_policy_update


class OnPolicyAgent(BaseAgent):
    """An agent that learns from fresh rollouts of ``max_buffer_size`` transitions
    (``max_buffer_size // n_envs`` steps of every env), once per rollout."""

    algo_type = "on_policy"
    prepare_rollout_fn: Callable | None = None
    """``(state, rollout [T, N, ...]) -> (state, rollout)`` run at the start of each update on
    both paths (see :func:`make_on_policy_update`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollout = RolloutBuffer(self.n_steps)

    @property
    def n_steps(self) -> int:
        """Rollout length per env."""
        return self.config.update_cfg.max_buffer_size // self.config.env_cfg.n_envs

    def validate_config(self, config: AlgoConfig) -> None:
        u, e = config.update_cfg, config.env_cfg
        if u.max_buffer_size % e.n_envs:
            raise ValueError(
                f"update_cfg.max_buffer_size={u.max_buffer_size} (the rollout size) is not a "
                f"multiple of env_cfg.n_envs={e.n_envs}; use n_steps * n_envs."
            )
        if u.batch_size > u.max_buffer_size or u.max_buffer_size % u.batch_size:
            raise ValueError(
                f"update_cfg.batch_size={u.batch_size} must divide the rollout size "
                f"update_cfg.max_buffer_size={u.max_buffer_size} so that every transition is "
                "used; pick a divisor."
            )

    def expected_updates(self, n_env_steps: int) -> int:
        n_envs = self.config.env_cfg.n_envs
        collected = math.ceil(n_env_steps / n_envs) * n_envs
        pending = self.rollout.count * n_envs  # the unfinished rollout of a previous call
        return on_policy_update_count(pending + collected, self.config.update_cfg.max_buffer_size)

    def on_env_reset(self) -> None:
        self.rollout.count = 0  # a rollout never spans two envs

    def zero_update_message(self, n_env_steps: int) -> str:
        return (
            f"train(n_env_steps={n_env_steps}) would perform zero updates: one update needs a "
            f"rollout of update_cfg.max_buffer_size={self.config.update_cfg.max_buffer_size} "
            "transitions. Collect more steps or shorten the rollout."
        )

    def make_update_fn(self) -> Callable:
        """``update(state, rollout, key) -> (state, key, info)``, see
        :func:`make_on_policy_update`."""
        return make_on_policy_update(
            self.process_experience_fn,
            self.update_step_fn,
            self.config.update_cfg.batch_size,
            self.config.update_cfg.n_epochs,
            self.prepare_rollout_fn,
        )

    def _store(self, experience: Experience) -> None:
        self.rollout.add(experience)
        if self.rollout.full:
            storage, _ = self.rollout.flush()
            self.run_update(storage)
            # The rollout storage is reused: the update must have read it.
            jax.block_until_ready(self.state)


__all__ = ["OnPolicyAgent"]
