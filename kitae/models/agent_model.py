"""Any kitae agent as a model: act with the agent, train it from the model's frame-stacking
memory with invalid samples masked out of the loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from kitae.agent import BaseAgent
from kitae.buffer import Experience
from kitae.config import check_int
from kitae.models.base import BaseModel
from kitae.models.memory import MemoryBatch
from kitae.models.weights import tree_arrays, tree_from_arrays
from kitae.off_policy import OffPolicyAgent

ACTING = "acting/"
"""Prefix of the names of an :class:`AgentModel`'s acting keys in its saved arrays."""


def masked_weights(valid: jax.Array) -> jax.Array:
    """Per-sample loss weights ``[B]`` such that ``mean(weights * losses)`` is the mean loss
    over the valid samples: ``valid * B / max(sum(valid), 1)`` (all zeros when none is valid).

    Args:
        valid: ``[B]`` mask of 0/1 (float).
    """
    valid = valid.astype(jnp.float32)
    n_valid = jnp.maximum(valid.sum(), 1.0)
    return valid * (valid.shape[0] / n_valid)


def make_masked_update(
    process_experience_fn: Callable,
    update_step_fn: Callable,
    observation_shape: tuple[int, ...],
) -> Callable:
    """``masked_update_fn(state, key, batch: MemoryBatch) -> (state, info)``: one gradient step
    of a Q-learning agent on a memory batch, invalid samples masked out of the loss.

    The batch is turned into an :class:`~kitae.buffer.Experience` (stacked states reshaped to
    ``observation_shape``), processed by the agent's ``process_experience_fn``, and its
    ``weight`` field (see :class:`~kitae.algos.dqn.DQNBatch`) replaced by
    :func:`masked_weights`, so the step minimises the mean loss of the valid samples.

    Args:
        process_experience_fn: the agent's ``(state, key, experience) -> batch``; the batch
            must be a ``NamedTuple`` with a ``weight`` field.
        update_step_fn: the agent's ``(state, key, batch) -> (state, info)``.
        observation_shape: the agent's observation shape (of one stacked state).
    """

    def masked_update_fn(state: Any, key: jax.Array, batch: MemoryBatch) -> tuple[Any, dict]:
        batch_size = batch.states.shape[0]
        k_process, k_update = jax.random.split(key)
        experience = Experience(
            observation=batch.states.reshape(batch_size, *observation_shape),
            action=batch.actions,
            reward=batch.rewards,
            done=batch.dones,
            next_observation=batch.next_states.reshape(batch_size, *observation_shape),
        )
        processed = process_experience_fn(state, k_process, experience)
        if "weight" not in getattr(processed, "_fields", ()):
            raise TypeError(
                f"{type(processed).__name__} has no `weight` field: a model can only train agents "
                "whose processed batch weights its per-sample losses (the Q-learning agents)."
            )
        processed = processed._replace(weight=masked_weights(batch.valid))
        return update_step_fn(state, k_update, processed)

    return masked_update_fn


def check_feed_forward(agent: BaseAgent) -> None:
    """Raises ``ValueError`` for an agent with an acting state (``init_actor_state``, e.g. the
    recurrent :class:`~kitae.algos.r2d2.R2D2`), which a model can neither act nor train with."""
    if hasattr(agent, "init_actor_state"):
        raise ValueError(
            f"AgentModel cannot drive {type(agent).__name__}: it is a recurrent agent (it acts "
            "from a core state carried between steps, init_actor_state) and learns from "
            "replayed sequences with the core state stored at each step, while a model's memory "
            "holds single frame-stacked transitions without core states. Train it with its own "
            "loop (agent.train(env)), or wrap a feed-forward agent such as DQN."
        )


def check_one_step_uniform_replay(algo_params: Any) -> None:
    """Raises ``ValueError`` for ``algo_params`` asking for n-step windows (``n_step != 1``) or
    prioritized replay: a model's memory samples one-step transitions uniformly, so the agent's
    targets would silently be one-step ones, or its batch would lack importance weights."""
    n_step = getattr(algo_params, "n_step", 1)
    if n_step != 1:
        raise ValueError(
            f"algo_params.n_step={n_step!r} is invalid for a model: its memory samples one-step "
            "transitions, use n_step=1."
        )
    if getattr(algo_params, "prioritized", False):
        raise ValueError(
            "algo_params.prioritized=True is invalid for a model: its memory samples uniformly."
        )


def to_device_batch(batch: MemoryBatch) -> MemoryBatch:
    """The batch with the dtypes JAX uses (``int32`` actions, ``float32`` elsewhere)."""
    return batch._replace(actions=batch.actions.astype(np.int32))


class AgentModel(BaseModel):
    """A kitae agent (e.g. :class:`~kitae.algos.DQN`, :class:`~kitae.algos.IQN`) as a model.

    ``take_action`` stacks the observation with the memory and acts greedily with the agent's
    ``select_action``, epsilon-greedy with :attr:`epsilon` (or with the agent's own ``explore``
    when ``agent_exploration``). ``train_step`` (off-policy Q-learning agents) takes
    ``n_updates`` gradient steps, each on ``batch_size`` samples of the memory, through the
    agent's own ``process_experience_fn`` and ``update_step_fn`` (targets, double-Q, target
    updates are the agent's), with the samples that are not ``valid`` masked out of the loss.
    Other agents act only (``train_step`` returns 0).

    Args:
        agent: the agent; its observation space must hold ``n_frames * prod(obs_shape)``
            values and its action space must be discrete.
        obs_shape: shape of one frame.
        memory_size: frames held by the memory.
        n_frames: frames per stacked input (keyword-only).
        batch_size: samples per gradient step (default: the agent's ``update_cfg.batch_size``).
        n_updates: gradient steps per ``train_step``.
        min_transitions: ``train_step`` does nothing until the memory can sample this many
            transitions (default: ``batch_size``).
        epsilon: exploration rate (see :meth:`BaseModel.set_epsilon`).
        agent_exploration: act with the agent's ``explore`` (its own schedule, which counts one
            env step per action) instead of epsilon-greedy on ``select_action``.
        seed: seed of the memory sampling, the exploration and the update keys.
        mask_partial_stacks: see :class:`~kitae.models.memory.FrameStackMemory`.
        valid_rule: the memory's ``valid`` mask (see :meth:`FrameStackMemory.gather`).

    :meth:`save` writes the agent's whole train state (parameters, target parameters,
    optimizer state, step counters) and its acting keys; :meth:`load` reads them into an agent
    of the same architecture, which then acts exactly as the saved one.

    Recurrent agents (an acting state carried between steps, ``init_actor_state``, e.g.
    :class:`~kitae.algos.r2d2.R2D2`) are refused: they learn from replayed sequences with the core
    state stored at each step, which the model's memory of single frame-stacked transitions does
    not hold.

    Raises:
        ValueError: if the spaces do not match, a count is not a positive integer, or the agent
            is recurrent.
    """

    def __init__(
        self,
        agent: BaseAgent,
        obs_shape: tuple[int, ...] | int,
        memory_size: int = 1024,
        *,
        n_frames: int = 1,
        batch_size: int | None = None,
        n_updates: int = 1,
        min_transitions: int | None = None,
        epsilon: float = 0.0,
        agent_exploration: bool = False,
        seed: int = 0,
        mask_partial_stacks: bool = False,
        valid_rule: str = "transition",
    ):
        check_feed_forward(agent)
        if isinstance(agent, OffPolicyAgent):
            check_one_step_uniform_replay(agent.config.algo_params)
        env_cfg = agent.config.env_cfg
        if not isinstance(env_cfg.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"agent action_space={env_cfg.action_space} is not supported: a model picks "
                "discrete actions."
            )
        super().__init__(
            obs_shape,
            int(env_cfg.action_space.n),
            memory_size,
            epsilon,
            n_frames=n_frames,
            seed=seed,
            mask_partial_stacks=mask_partial_stacks,
            valid_rule=valid_rule,
        )
        self.observation_shape = tuple(env_cfg.observation_space.shape)
        if int(np.prod(self.observation_shape, dtype=np.int64)) != self.stacked_size:
            raise ValueError(
                f"agent observation_space shape {self.observation_shape} does not hold "
                f"n_frames * prod(obs_shape) = {self.stacked_size} values."
            )
        self.agent = agent
        if batch_size is None:
            batch_size = agent.config.update_cfg.batch_size
        self.batch_size = int(batch_size)
        check_int("batch_size", self.batch_size, 1)
        check_int("n_updates", n_updates, 1)
        self.n_updates = int(n_updates)
        self.min_transitions = self.batch_size if min_transitions is None else min_transitions
        check_int("min_transitions", self.min_transitions, 1)
        self.agent_exploration = bool(agent_exploration)
        self.trainable = isinstance(agent, OffPolicyAgent)
        self.last_info: dict[str, Any] = {}
        self._key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        self._update_fn = None
        if self.trainable:
            masked = make_masked_update(
                agent.process_experience_fn, agent.update_step_fn, self.observation_shape
            )

            def update_fn(state: Any, key: jax.Array, batch: MemoryBatch):
                key, step_key = jax.random.split(key)
                state, info = masked(state, step_key, batch)
                return state, key, info

            self._update_fn = jax.jit(update_fn)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The agent's train state (``agent.state``) as named arrays (see
        :func:`~kitae.models.weights.tree_arrays`), and the stream of keys it acts with (under
        ``acting/``), so that a loaded model acts exactly as the saved one (IQN's quantile
        levels are sampled)."""
        agent = self.agent
        interact_key, key_pool, key_index = agent.acting_keys
        return {
            **tree_arrays(agent.state),
            f"{ACTING}interact_key": np.asarray(interact_key),
            f"{ACTING}key_pool": np.asarray(key_pool),
            f"{ACTING}key_index": np.asarray(key_index, np.int64),
        }

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Replaces the agent's train state and acting keys by ``arrays`` (the names and shapes
        of the train state must match).

        Raises:
            ValueError: if they do not.
        """
        arrays = dict(arrays)
        acting = {k[len(ACTING) :]: arrays.pop(k) for k in list(arrays) if k.startswith(ACTING)}
        if set(acting) != {"interact_key", "key_pool", "key_index"}:
            raise ValueError(f"the arrays hold no complete acting key stream: {sorted(acting)}.")
        self.set_agent_state(tree_from_arrays(self.agent.state, arrays))
        self.agent.acting_keys = (
            jnp.asarray(acting["interact_key"]),
            np.asarray(acting["key_pool"]),
            int(acting["key_index"]),
        )

    def set_agent_state(self, state: Any) -> None:
        """Replaces the agent's train state; acting then uses it (the agent's cached acting
        state is dropped, as after an update)."""
        self.agent.state = state
        self.agent._acting_state = None

    def greedy_action(self, stacked: np.ndarray) -> int:
        """The agent's greedy action on one stacked input ``[stacked_size]``."""
        actions, _ = self.agent.select_action(stacked.reshape(1, *self.observation_shape))
        return int(np.asarray(actions)[0])

    def take_action(self, state: Any) -> int:
        """Epsilon-greedy (or the agent's ``explore``) on the stacked ``state``."""
        stacked = self.stacked_state(state)
        if self.agent_exploration:
            actions, _ = self.agent.explore(stacked.reshape(1, *self.observation_shape))
            self.agent.env_steps += 1
            return int(np.asarray(actions)[0])
        if self.explores():
            return self.random_action()
        return self.greedy_action(stacked)

    def train_step(self) -> np.ndarray:
        """``n_updates`` masked gradient steps on memory samples; returns their mean loss
        (``float32`` scalar, 0 when nothing was trained).

        A batch without any valid sample is skipped (no optimizer step).
        """
        if self._update_fn is None or self.memory.n_transitions() < self.min_transitions:
            return np.array(0.0, np.float32)
        losses = []
        for _ in range(self.n_updates):
            batch = self.memory.sample(self.batch_size)
            if not batch.valid.any():
                continue
            self.agent.state, self._key, info = self._update_fn(
                self.agent.state, self._key, to_device_batch(batch)
            )
            self.agent.record_update(info)
            self.last_info = info
            losses.append(_loss_of(info))
        if not losses:
            return np.array(0.0, np.float32)
        return np.asarray(np.mean(np.asarray(jax.device_get(losses))), np.float32)


def _loss_of(info: dict[str, Any]) -> jax.Array:
    """The loss in an update's ``info``: ``loss_qvalue``, else the first entry named ``loss*``."""
    if "loss_qvalue" in info:
        return info["loss_qvalue"]
    for name, value in info.items():
        if name.startswith("loss"):
            return value
    raise KeyError(f"no loss in the update info (keys: {sorted(info)}).")
