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

A member whose episode ends without a transition to store (the env dropped it with no final
observation) has its latest stored transition marked ``truncated`` (:meth:`GroupLearner.
truncate_last`), so neither n-step windows nor GAE run from it into its next episode.

Agents with an acting state (``init_actor_state``, e.g. the recurrent core of
:class:`~kitae.algos.r2d2.R2D2`) carry one row of it per member: it is zeroed for every member at
each env reset (:meth:`GroupLearner.reset_acting_state`), every stored transition keeps the state
its member acted from (the agent's ``with_actor_state``), and a member's row is zeroed when its
episode ends. Only off-policy agents may have one.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

from kitae.agent import BaseAgent
from kitae.buffer import Experience, ReplayBufferState, RolloutBuffer
from kitae.off_policy import OffPolicyAgent
from kitae.on_policy import OnPolicyAgent
from kitae.schedules import off_policy_min_transitions


class GroupLearner(abc.ABC):
    """Drives one kitae agent for one group of ``G`` PettingZoo agents.

    Args:
        agent: the kitae agent, built with ``env_cfg.n_envs`` slots for the group.
    """

    def __init__(self, agent: BaseAgent):
        self.agent = agent
        self.has_acting_state = hasattr(agent, "init_actor_state")
        """Whether the agent carries an acting state between steps (one row per member)."""
        if self.has_acting_state:
            missing = [
                name
                for name in ("reset_actor_state", "with_actor_state")
                if not callable(getattr(agent, name, None))
            ]
            if missing:
                raise ValueError(
                    f"{type(agent).__name__} acts from a state carried between steps "
                    f"(init_actor_state) but has no {' / '.join(missing)}: the multi-agent "
                    "trainer could neither reset it at episode starts nor store it with the "
                    "transitions. Define them (see kitae.algos.r2d2.R2D2) or use a feed-forward "
                    "agent."
                )

    def reset_acting_state(self) -> None:
        """Zeroes the acting state of every member (all episodes start over); nothing for agents
        without one."""
        if self.has_acting_state:
            self.agent.reset_actor_state()

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

    @abc.abstractmethod
    def truncate_last(self, members: np.ndarray) -> None:
        """Marks the latest stored transition of each member in ``members`` (``bool[G]``)
        ``truncated``, unless it already ends an episode: their episode ended after it, with no
        final observation to store the step that followed."""


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
        self._truncate = jax.jit(
            lambda state, members: truncate_latest(state, members, buffer.slots_per_env),
            donate_argnums=0,
        )
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

    def truncate_last(self, members: np.ndarray) -> None:
        members = np.asarray(members, bool)
        if not members.any():
            return
        self.flush()
        agent = self.agent
        if agent.buffer_state is not None:
            agent.buffer_state = self._truncate(agent.buffer_state, members)

    def store(self, experience: Experience, live: np.ndarray) -> None:
        if self.has_acting_state:
            experience = self.agent.with_actor_state(experience)
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
        if self.has_acting_state:
            raise ValueError(
                f"{type(agent).__name__} is an on-policy agent with an acting state "
                "(init_actor_state): the multi-agent rollouts regroup each member's transitions "
                "into lanes and store no acting state, so its updates would not see the states "
                "it acted from. Use a feed-forward on-policy agent (e.g. PPO)."
            )
        self.rollout_size = agent.config.update_cfg.max_buffer_size
        self.n_lanes = agent.config.env_cfg.n_envs
        self._pending: list[tuple[int, Experience]] = []
        self.last_rollout: Experience | None = None
        """The last rollout handed to the update (leaves ``[T, N, ...]``), for inspection."""

    def store(self, experience: Experience, live: np.ndarray) -> None:
        rows = [None if x is None else np.asarray(x) for x in experience]
        for member in np.flatnonzero(live):
            row = Experience(*(None if x is None else x[member] for x in rows))
            self._pending.append((int(member), row))
        self.agent.env_steps += int(live.sum())
        if len(self._pending) >= self.rollout_size:
            self._update()

    def truncate_last(self, members: np.ndarray) -> None:
        # A member's transitions already handed to an update were cut there (at the switch to
        # another member or at the lane's end): only its pending ones can run on.
        for member in np.flatnonzero(members):
            for k in range(len(self._pending) - 1, -1, -1):
                owner, row = self._pending[k]
                if owner == member:
                    if not (row.done or row.truncated):
                        self._pending[k] = (owner, row._replace(truncated=np.True_))
                    break

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


def truncate_latest(
    state: ReplayBufferState, members: jax.Array, slots_per_env: int
) -> ReplayBufferState:
    """Marks the latest transition stored in each env slot of ``members`` (``bool[N]``)
    ``truncated``, unless it is ``done``; slots that hold nothing are left alone.

    Args:
        state: a replay buffer state whose ``data`` is an :class:`~kitae.buffer.Experience`
            with ``done`` and ``truncated`` (``bool[T, N]``).
        members: ``bool[N]``.
        slots_per_env: ``T``.
    """
    data = state.data
    envs = jnp.arange(members.shape[0])
    latest = (state.position - 1) % slots_per_env
    cut = members & (state.size > 0) & ~data.done[latest, envs].astype(bool)
    truncated = data.truncated.at[latest, envs].set(data.truncated[latest, envs] | cut)
    return state.replace(data=data._replace(truncated=truncated))


def make_learner(agent: BaseAgent) -> GroupLearner:
    """The learner for ``agent``'s kind.

    Raises:
        TypeError: for an agent that is neither an ``OffPolicyAgent`` nor an ``OnPolicyAgent``.
        ValueError: for an agent with an acting state (``init_actor_state``) that is on-policy,
            or lacks ``reset_actor_state`` / ``with_actor_state``.
    """
    if isinstance(agent, OffPolicyAgent):
        return OffPolicyLearner(agent)
    if isinstance(agent, OnPolicyAgent):
        return OnPolicyLearner(agent)
    raise TypeError(
        f"{type(agent).__name__} is neither an OffPolicyAgent nor an OnPolicyAgent: the "
        "multi-agent trainer only knows how to feed those."
    )


__all__ = [
    "GroupLearner",
    "OffPolicyLearner",
    "OnPolicyLearner",
    "make_learner",
    "truncate_latest",
]
