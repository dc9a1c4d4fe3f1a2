"""Group learners: feed one group's live transitions to its kitae agent's own buffers and update.

Every env step, a group's kitae agent acts once for all its members (``[G, ...]`` batch, one
jitted ``explore`` call; rows of dead members hold zeros and their actions are dropped), then the
learner receives the step's transitions ``[G, ...]`` with a ``live`` mask ``bool[G]`` (the
members that acted). Only live rows become training data:

* :class:`OffPolicyLearner`: each member owns one env slot of the agent's
  :class:`~kitae.buffer.ReplayBuffer` (``env_cfg.n_envs = G``). Steps are staged on the host and
  written in one jitted ``add_batch`` whose ``valid`` mask is ``live``, so a slot holds only its
  member's own transitions, in order; updates are the agent's ``update_fn``, on the
  agent's schedule (``start_step``, ``skip_steps``) counted in stored transitions.
* :class:`OnPolicyLearner`: live transitions are queued; once ``max_buffer_size`` of them are
  there, they are sorted by member (stable, so each member's transitions stay in time order),
  cut into a ``[T, N]`` rollout (``N = env_cfg.n_envs`` lanes of ``T`` consecutive transitions)
  and given to the agent's ``update_fn``. Where a lane passes from one member's transitions to
  another's, the earlier transition is marked ``truncated`` (unless it terminated), so GAE
  bootstraps from its true next observation instead of running into another agent's
  trajectory; a lane's last transition bootstraps as at the end of any rollout. The at most
  ``G - 1`` transitions beyond the rollout size open the next rollout.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import numpy as np

from kitae.base import BaseAgent, OffPolicyAgent, OnPolicyAgent
from kitae.buffer import Experience, RolloutBuffer
from kitae.schedules import off_policy_min_transitions


class GroupLearner(abc.ABC):
    """Drives one kitae agent for one group of ``G`` PettingZoo agents.

    Args:
        agent: the kitae agent, built with ``env_cfg.n_envs`` slots for the group.
    """

    def __init__(self, agent: BaseAgent):
        self.agent = agent

    def act(self, observations: np.ndarray, greedy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One jitted call of the agent's ``explore`` (``select_action`` when ``greedy``).

        Args:
            observations: ``float32[G, ...]`` encoded observations (zeros for dead members).
            greedy: act greedily (evaluation).

        Returns:
            ``(actions [G, ...], log_probs [G])`` as numpy arrays, actions as the agent stores
            them (see :meth:`~kitae.base.BaseAgent.to_env_action` for what the env receives).
        """
        act = self.agent.select_action if greedy else self.agent.explore
        actions, log_probs = act(observations)
        return np.asarray(actions), np.asarray(log_probs)

    @abc.abstractmethod
    def store(self, experience: Experience, live: np.ndarray) -> None:
        """Takes one env step of the group (leaves ``[G, ...]``), keeps the rows where ``live``
        (``bool[G]``) and runs the updates that became due."""


class OffPolicyLearner(GroupLearner):
    """Masked replay storage for an :class:`~kitae.base.OffPolicyAgent` (see the module doc)."""

    STAGING_STEPS = 64
    """Env steps staged on the host before one jitted write into the replay buffer."""

    agent: OffPolicyAgent

    def __init__(self, agent: OffPolicyAgent):
        super().__init__(agent)
        buffer = agent.replay_buffer
        self._staging = RolloutBuffer(min(self.STAGING_STEPS, buffer.slots_per_env))
        self._valid = np.zeros((self._staging.n_steps, buffer.n_envs), bool)
        self._add = jax.jit(buffer.add_batch, donate_argnums=0)
        self._ticks = agent.env_steps // agent.skip_steps
        self._first_update = max(agent.start_step, off_policy_min_transitions(agent.config), 1)

    def flush(self) -> None:
        """Writes the staged live transitions into the agent's replay buffer (one jitted call)."""
        count = self._staging.count
        if count == 0:
            return
        storage, _ = self._staging.flush()
        self._valid[count:] = False
        agent = self.agent
        if agent.buffer_state is None:
            example = jax.tree.map(lambda x: x[0], storage)
            agent.buffer_state = agent.replay_buffer.init(example)
        agent.buffer_state = self._add(agent.buffer_state, storage, self._valid)
        # The staging storage is reused: the copy into the buffer must be done.
        jax.block_until_ready(agent.buffer_state)

    def store(self, experience: Experience, live: np.ndarray) -> None:
        self._valid[self._staging.count] = live
        self._staging.add(experience)
        if self._staging.full:
            self.flush()
        agent = self.agent
        agent.env_steps += int(live.sum())
        ticks = agent.env_steps // agent.skip_steps
        due, self._ticks = ticks - self._ticks, ticks
        if due <= 0 or agent.env_steps < self._first_update:
            return
        self.flush()
        for _ in range(due):
            agent.run_update(agent.buffer_state)


class OnPolicyLearner(GroupLearner):
    """Rollouts of live transitions for an :class:`~kitae.base.OnPolicyAgent` (see the module
    doc)."""

    agent: OnPolicyAgent

    def __init__(self, agent: OnPolicyAgent):
        super().__init__(agent)
        self.rollout_size = agent.config.update_cfg.max_buffer_size
        self.n_lanes = agent.config.env_cfg.n_envs
        self._pending: list[tuple[int, tuple[Any, ...]]] = []
        self.last_rollout: Experience | None = None
        """The last rollout handed to the update (leaves ``[T, N, ...]``), for inspection."""

    def store(self, experience: Experience, live: np.ndarray) -> None:
        rows = [None if x is None else np.asarray(x) for x in experience]
        for member in np.flatnonzero(live):
            row = tuple(None if x is None else x[member] for x in rows)
            self._pending.append((int(member), row))
        self.agent.env_steps += int(live.sum())
        if len(self._pending) >= self.rollout_size:
            self._update()

    def _update(self) -> None:
        ordered = sorted(self._pending, key=lambda item: item[0])  # stable: time order kept
        used, self._pending = ordered[: self.rollout_size], ordered[self.rollout_size :]
        members = np.array([member for member, _ in used])
        columns = zip(*(row for _, row in used), strict=True)
        fields = [None if column[0] is None else np.stack(column) for column in columns]
        experience = Experience(*fields)
        # A lane must not run from one member's trajectory into another's: cut (bootstrap) there.
        switch = np.append(members[1:] != members[:-1], False)
        truncated = experience.truncated | (switch & ~experience.done)
        experience = experience._replace(truncated=truncated)
        steps = self.rollout_size // self.n_lanes
        rollout = jax.tree.map(
            lambda x: np.ascontiguousarray(
                x.reshape(self.n_lanes, steps, *x.shape[1:]).swapaxes(0, 1)
            ),
            experience,
        )
        self.last_rollout = rollout
        self.agent.run_update(rollout)


def make_learner(agent: BaseAgent) -> GroupLearner:
    """The learner for ``agent``'s kind.

    Raises:
        TypeError: for an agent that is neither an ``OffPolicyAgent`` nor an ``OnPolicyAgent``.
    """
    if isinstance(agent, OffPolicyAgent):
        return OffPolicyLearner(agent)
    if isinstance(agent, OnPolicyAgent):
        return OnPolicyLearner(agent)
    raise TypeError(
        f"{type(agent).__name__} is neither an OffPolicyAgent nor an OnPolicyAgent: the "
        "multi-agent trainer only knows how to feed those."
    )


__all__ = ["GroupLearner", "OffPolicyLearner", "OnPolicyLearner", "make_learner"]
