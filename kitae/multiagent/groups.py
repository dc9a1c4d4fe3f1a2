"""Agent groups: which PettingZoo agents one kitae agent acts for, and their observations.

A group is a tuple of PettingZoo agent names that share one kitae agent (one set of
parameters). Its members must have the same observation and action spaces. Within a group,
agent ``i`` always occupies row ``i`` of the batches the kitae agent sees (``[G, ...]``, ``G`` the
group size), whether it is alive or not.

Observations are encoded for the networks as ``float32``: a Box keeps its shape, any other
gymnasium space (Discrete, MultiDiscrete, Dict, Tuple...) is flattened with
:func:`gymnasium.spaces.flatten`. With ``agent_id``, the one-hot of the agent's row is appended
to its flat observation, so that parameter-shared agents can tell themselves apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

Grouping = str | Mapping[str, Sequence[str]]
"""``"shared"`` (one group of every agent), ``"independent"`` (one group per agent) or an
explicit ``{group_name: [agent names]}``."""


@dataclasses.dataclass(frozen=True)
class AgentGroup:
    """PettingZoo agents driven by one kitae agent.

    Attributes:
        name: the group's name (``"shared"``, an agent's name, or a user-given name).
        agents: the PettingZoo agent names; agent ``agents[i]`` is row ``i`` of every batch.
        observation_space: the env's observation space of each member.
        action_space: the env's action space of each member.
        agent_id: append the one-hot of the member's row to its observation.
    """

    name: str
    agents: tuple[str, ...]
    observation_space: gym.Space
    action_space: gym.Space
    agent_id: bool = False

    @property
    def size(self) -> int:
        """``G``, the number of members."""
        return len(self.agents)

    @property
    def policy_observation_space(self) -> gym.spaces.Box:
        """The space of one encoded observation: what the kitae agent's networks are built for."""
        space = self.observation_space
        if isinstance(space, gym.spaces.Box) and not self.agent_id:
            return gym.spaces.Box(space.low, space.high, space.shape, np.float32)
        flat = gym.spaces.flatten_space(space)
        if not isinstance(flat, gym.spaces.Box):
            raise ValueError(
                f"group {self.name!r}: observation space {space} does not flatten to a Box."
            )
        low, high = flat.low.astype(np.float32), flat.high.astype(np.float32)
        if self.agent_id:
            low = np.concatenate([low, np.zeros(self.size, np.float32)])
            high = np.concatenate([high, np.ones(self.size, np.float32)])
        return gym.spaces.Box(low, high, low.shape, np.float32)

    def encode(self, observation: Any, row: int) -> np.ndarray:
        """One member's observation as the networks see it.

        Args:
            observation: an element of :attr:`observation_space`.
            row: the member's row (its index in :attr:`agents`).

        Returns:
            ``float32[*policy_observation_space.shape]``.
        """
        space = self.observation_space
        if isinstance(space, gym.spaces.Box) and not self.agent_id:
            return np.asarray(observation, np.float32)
        flat = np.asarray(gym.spaces.flatten(space, observation), np.float32)
        if self.agent_id:
            flat = np.concatenate([flat, np.eye(self.size, dtype=np.float32)[row]])
        return flat


def make_groups(
    env: Any, grouping: Grouping = "shared", agent_id: bool = False
) -> list[AgentGroup]:
    """The agent groups of a PettingZoo ``ParallelEnv``.

    Args:
        env: the env; its ``possible_agents`` and per-agent ``observation_space(agent)`` /
            ``action_space(agent)`` are read.
        grouping: ``"shared"``: one kitae agent for all agents (parameter sharing);
            ``"independent"``: one kitae agent per agent (independent learners); or a mapping
            ``{group_name: [agent names]}`` that covers every agent exactly once.
        agent_id: append the agent's one-hot row index to its observation (groups of one agent
            gain a constant 1).

    Returns:
        The groups, in the order of ``grouping`` (``possible_agents`` order for the named modes).

    Raises:
        ValueError: for an unknown grouping mode; a mapping that names an unknown agent, names an
            agent twice, leaves an agent out or has an empty group; members of one group with
            different observation or action spaces; ``agent_id`` with observations that are not
            flat (a Box of rank > 1).
    """
    agents = list(env.possible_agents)
    if isinstance(grouping, str):
        if grouping == "shared":
            members: dict[str, list[str]] = {"shared": agents}
        elif grouping == "independent":
            members = {agent: [agent] for agent in agents}
        else:
            raise ValueError(
                f"grouping={grouping!r} is invalid: use 'shared' (parameter sharing), "
                "'independent' (one learner per agent) or a mapping {group: [agents]}."
            )
    else:
        members = {str(name): list(group) for name, group in grouping.items()}
        _check_partition(members, agents)

    groups = []
    for name, names in members.items():
        obs_space, act_space = env.observation_space(names[0]), env.action_space(names[0])
        for other in names[1:]:
            for kind, first, space in (
                ("observation", obs_space, env.observation_space(other)),
                ("action", act_space, env.action_space(other)),
            ):
                if space != first:
                    raise ValueError(
                        f"group {name!r} shares one network between agents with different "
                        f"{kind} spaces: {names[0]!r} has {first}, {other!r} has {space}. "
                        "Use grouping='independent', or group only agents with equal spaces."
                    )
        if agent_id and isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) > 1:
            raise ValueError(
                f"agent_id=True appends a one-hot to flat observations, but group {name!r} "
                f"observes a Box of shape {obs_space.shape}; set agent_id=False."
            )
        groups.append(AgentGroup(name, tuple(names), obs_space, act_space, agent_id))
    return groups


def _check_partition(members: dict[str, list[str]], agents: list[str]) -> None:
    seen: dict[str, str] = {}
    for name, names in members.items():
        if not names:
            raise ValueError(f"grouping: group {name!r} is empty.")
        for agent in names:
            if agent not in agents:
                raise ValueError(
                    f"grouping: group {name!r} names {agent!r}, which is not one of the env's "
                    f"possible_agents {agents}."
                )
            if agent in seen:
                raise ValueError(
                    f"grouping: agent {agent!r} is in both group {seen[agent]!r} and {name!r}."
                )
            seen[agent] = name
    missing = [agent for agent in agents if agent not in seen]
    if missing:
        raise ValueError(f"grouping: agents {missing} are in no group; every agent needs one.")


__all__ = ["AgentGroup", "Grouping", "make_groups"]
