"""Agents: the four factories wired to buffers and a vectorized gymnasium training loop.

The public module of agents, re-exporting the names custom agents build on (see the custom-agent
tutorial). Each concept has its own module:

* :mod:`kitae.agent`: :class:`IAgent`, :class:`BaseAgent` (factories, jitting, acting,
  save/restore);
* :mod:`kitae.off_policy`: :class:`OffPolicyAgent` (replay buffer, update schedule);
* :mod:`kitae.on_policy`: :class:`OnPolicyAgent` (rollouts);
* :mod:`kitae.updates`: the compiled update builders both training loops share
  (:func:`make_off_policy_update`, :func:`make_on_policy_update`...);
* :mod:`kitae.host_loop`: the gymnasium training loop :class:`BaseAgent` inherits;
* :mod:`kitae.envs.vector`: the vector-env helpers of that loop (:func:`as_vector_env`,
  :func:`true_next_observation`, :class:`EpisodeTracker`).

:class:`OffPolicyAgent` stores transitions in a :class:`~kitae.buffer.ReplayBuffer`; each update
samples ``n_epochs`` fresh batches, processes them and takes one gradient step on each, all in
one compiled call (``lax.scan``). :class:`OnPolicyAgent` collects a rollout ``[T, N, ...]``,
processes it per env (``process_experience_fn`` sees one env's ``[T, ...]`` trajectory and is
vmapped over envs, e.g. for GAE), then runs ``n_epochs`` shuffled passes of minibatches, also in
one compiled call.
"""

from __future__ import annotations

from kitae.agent import KEY_POOL_SIZE, BaseAgent, IAgent, config_to_dict
from kitae.envs.vector import EpisodeTracker, as_vector_env, true_next_observation
from kitae.off_policy import OffPolicyAgent
from kitae.on_policy import OnPolicyAgent
from kitae.updates import (
    make_off_policy_update,
    make_on_policy_update,
    replay_buffer_from_config,
    sequence_length_from_config,
)

__all__ = [
    "IAgent",
    "BaseAgent",
    "OffPolicyAgent",
    "OnPolicyAgent",
    "EpisodeTracker",
    "as_vector_env",
    "make_off_policy_update",
    "replay_buffer_from_config",
    "sequence_length_from_config",
    "make_on_policy_update",
    "true_next_observation",
    "config_to_dict",
    "KEY_POOL_SIZE",
]
