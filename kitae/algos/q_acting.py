"""Epsilon-greedy acting of the Q-learning agents, with an optional recurrent core state.

One class serves the feed-forward agents (DQN, C51, QR-DQN, IQN: ``explore_fn(state, key,
observations, exploration)``) and the recurrent ones (R2D2, DQN with ``torso="lstm"``:
``explore_fn(state, key, observations, core_state, exploration)`` returning the next core state
too). A recurrent agent carries the ``[N, D]`` core state of its ``N`` envs between calls, stores
with every transition the state it was acted from (``Experience.actor_state``), and zeroes it
where an episode ended and when training starts on a new env; the compiled loop carries it in
``RunnerState.actor_state`` instead (through :attr:`QActingAgent.init_actor_state`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kitae.buffer import Experience
from kitae.off_policy import OffPolicyAgent


class QActingAgent(OffPolicyAgent):
    """An off-policy agent acting epsilon-greedily, recurrent when :attr:`recurrent` says so.

    Subclasses define :meth:`_epsilon` (epsilon at the current step), :attr:`recurrent` and, when
    recurrent, :attr:`core_state_width` (``D``).
    """

    def __init__(self, run_name: str, config: Any, **kwargs: Any):
        super().__init__(run_name, config, **kwargs)
        self._core_state: np.ndarray | None = None
        self._core_before: np.ndarray | None = None
        self._eval_core_state: np.ndarray | None = None
        if self.recurrent:
            self._core_state = np.zeros((config.env_cfg.n_envs, self.core_state_width), np.float32)
            self._core_before = self._core_state

    # ---- what subclasses say ---------------------------------------------------------------
    @property
    def recurrent(self) -> bool:
        """Whether acting carries a recurrent core state."""
        return False

    @property
    def core_state_width(self) -> int:
        """``D``, the width of the packed core state (recurrent agents only)."""
        raise NotImplementedError(f"{type(self).__name__} has no recurrent core.")

    def _epsilon(self) -> float | jax.Array:
        raise NotImplementedError(f"{type(self).__name__} must define _epsilon().")

    # ---- acting state ----------------------------------------------------------------------
    @property
    def init_actor_state(self) -> Callable[[int], jax.Array]:
        """``n_envs -> float32[n_envs, D]`` zero (episode-start) core states of a recurrent
        agent.

        A feed-forward agent has no such attribute (``hasattr`` is false, ``getattr(agent,
        "init_actor_state", None)`` is ``None``), which is how the training loops, evaluation,
        the multi-agent trainer and the models tell that acting carries no state.
        """
        if not self.recurrent:
            raise AttributeError(
                f"{type(self).__name__} is feed-forward: its acting carries no state."
            )
        width = self.core_state_width
        return lambda n_envs: jnp.zeros((n_envs, width), jnp.float32)

    @property
    def core_state(self) -> np.ndarray | None:
        """``[N, D]`` core state the next :meth:`explore` acts from (``None`` if feed-forward)."""
        return self._core_state

    def reset_actor_state(self, mask: np.ndarray | None = None) -> None:
        """Zeroes the training and evaluation core states (of the envs in ``bool[N]`` ``mask``,
        default all), e.g. when episodes start outside the training loop."""
        if not self.recurrent:
            return
        if mask is None:
            self._core_state = np.zeros_like(self._core_state)
            self._eval_core_state = None
            return
        mask = np.asarray(mask, bool)[:, None]
        self._core_state = np.where(mask, 0.0, self._core_state).astype(np.float32)
        if self._eval_core_state is not None:
            self._eval_core_state = np.where(mask, 0.0, self._eval_core_state).astype(np.float32)

    def on_env_reset(self) -> None:
        super().on_env_reset()
        self.reset_actor_state()

    @contextlib.contextmanager
    def preserved_keys(self):
        """As :meth:`BaseAgent.preserved_keys`, and also restores the training core state;
        :meth:`select_action` starts from a fresh core state inside."""
        saved = (self._core_state, self._core_before)
        self._eval_core_state = None
        try:
            with super().preserved_keys():
                yield self
        finally:
            self._core_state, self._core_before = saved
            self._eval_core_state = None

    # ---- acting ------------------------------------------------------------------------------
    def explore(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        keys = self.interact_keys(observation)
        if not self.recurrent:
            return self.explore_fn(
                self.acting_state, keys, observation, exploration=self._epsilon()
            )
        actions, log_probs, core_state = self.explore_fn(
            self.acting_state, keys, observation, self._core_state, exploration=self._epsilon()
        )
        self._core_before, self._core_state = self._core_state, np.asarray(core_state)
        return actions, log_probs

    def select_action(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        keys = self.interact_keys(observation)
        if not self.recurrent:
            return self.explore_fn(self.acting_state, keys, observation, exploration=0.0)
        n = int(np.shape(jax.tree.leaves(observation)[0])[0])
        core = self._eval_core_state
        if core is None or core.shape[0] != n:
            core = np.zeros((n, self.core_state_width), np.float32)
        actions, log_probs, core = self.explore_fn(
            self.acting_state, keys, observation, core, exploration=0.0
        )
        self._eval_core_state = np.asarray(core)
        return actions, log_probs

    def with_actor_state(self, experience: Experience) -> Experience:
        """One vector step (leaves ``[N, ...]``) with the core state each env acted from
        (``actor_state``, ``float32[N, D]``: the state before the last :meth:`explore`); then
        zeroes the core state of the envs whose episode ended with it (``done`` or
        ``truncated``). Loops that store transitions themselves call it once per step, after
        :meth:`explore`. A feed-forward agent returns ``experience`` unchanged."""
        if not self.recurrent:
            return experience
        experience = experience._replace(actor_state=np.asarray(self._core_before))
        ended = np.logical_or(np.asarray(experience.done), np.asarray(experience.truncated))
        if ended.any():
            self._core_state = np.where(ended[:, None], 0.0, self._core_state).astype(np.float32)
        self._core_before = self._core_state
        return experience

    def store_transition(self, experience: Experience) -> None:
        """Stages one vector step; a recurrent agent adds the core state it was acted from and
        zeroes the core state of the envs whose episode ended (see :meth:`with_actor_state`)."""
        super().store_transition(self.with_actor_state(experience))

    def act_fn(self, greedy: bool = False) -> Callable:
        """A pure ``(state, key, observations, env_steps, hyperparams) -> (actions, log_probs)``
        for the compiled loop; a recurrent agent's takes and returns the core state too,
        ``(..., hyperparams, core_state) -> (actions, log_probs, core_state)`` (see
        :class:`~kitae.compiled.RunnerState`)."""
        if not self.recurrent:
            return super().act_fn(greedy)

        def act(state, key, observations, env_steps, hyperparams, core_state):
            with self.tracing(state, key, env_steps, hyperparams):
                epsilon = 0.0 if greedy else self._epsilon()
                return self.explore_fn(
                    self.acting_state,
                    self.interact_keys(observations),
                    observations,
                    core_state,
                    exploration=epsilon,
                )

        return act


__all__ = ["QActingAgent"]
