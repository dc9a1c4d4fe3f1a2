"""Experience containers and buffers.

* :class:`Experience` is the transition pytree every loop produces.
* :class:`ReplayBuffer` is a preallocated ring buffer of transitions from vectorized envs,
  written as pure ``init`` / ``add`` / ``sample`` functions over a :class:`ReplayBufferState`
  pytree, so it can live inside a jitted training program and be updated in place when its state
  is donated (``jax.jit(..., donate_argnums=...)``).
* :class:`RolloutBuffer` is a host-side (numpy) preallocated ``[T, N, ...]`` buffer that the
  gymnasium loop fills one vector step at a time: the on-policy rollout, and the staging area the
  off-policy loop flushes into the replay buffer in one call.

Layout: the replay buffer stores every leaf as ``[T, N, ...]`` (time slot, env) with one write
position per env, so each env's transitions stay in temporal order. That keeps n-step returns,
sequence sampling and frame stacking expressible as reads of consecutive slots of one env, and
lets a loop skip (not store) an env's transition by marking it invalid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class Experience(NamedTuple):
    """One transition per env (or a batch/sequence of them, with leading axes).

    Attributes:
        observation: ``o_t``.
        action: ``a_t``.
        reward: ``r_t``.
        done: the episode *terminated* at ``t+1``: do not bootstrap from ``next_observation``.
        next_observation: ``o_{t+1}``; the true final observation when the episode ended.
        log_prob: ``log pi(a_t | o_t)`` under the behaviour policy.
        truncated: the episode was cut by a time limit at ``t+1``: bootstrap, but do not continue
            the return into the next episode.
        value: optional extra, e.g. ``V(o_t)`` stored by actor-critic agents.
    """

    observation: Any
    action: Any
    reward: Any
    done: Any
    next_observation: Any
    log_prob: Any = None
    truncated: Any = None
    value: Any = None


@struct.dataclass
class ReplayBufferState:
    """State of a :class:`ReplayBuffer`.

    Attributes:
        data: the stored pytree (usually an :class:`Experience`), each leaf ``[T, N, ...]``.
        position: ``int32[N]``, the next slot each env writes to.
        size: ``int32[N]``, how many valid transitions each env holds (at most ``T``).
    """

    data: Any
    position: jax.Array
    size: jax.Array


def _leading_shape(tree: Any, n: int) -> tuple[int, ...]:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("the experience has no array fields to store.")
    shapes = {tuple(leaf.shape[:n]) for leaf in leaves}
    if len(shapes) != 1:
        raise ValueError(f"experience fields disagree on their leading axes: {sorted(shapes)}.")
    return shapes.pop()


@struct.dataclass
class ReplayBuffer:
    """A uniform replay ring buffer over vectorized envs, as pure functions.

    Build it with :func:`make_replay_buffer`; every method is pure and jit/vmap/scan friendly.
    Capacity is counted in transitions and split evenly over envs (``T = capacity // n_envs``
    slots per env). Sampling is uniform over all stored transitions, across envs and time, with
    replacement.
    """

    capacity: int = struct.field(pytree_node=False)
    n_envs: int = struct.field(pytree_node=False)

    @property
    def slots_per_env(self) -> int:
        return self.capacity // self.n_envs

    def init(self, example: Any) -> ReplayBufferState:
        """Allocates zeroed storage shaped like ``example`` (leaves ``[N, ...]``)."""
        (n_envs,) = _leading_shape(example, 1)
        if n_envs != self.n_envs:
            raise ValueError(f"example has {n_envs} envs, the buffer was built for {self.n_envs}.")
        data = jax.tree.map(lambda x: jnp.zeros((self.slots_per_env, *x.shape), x.dtype), example)
        return ReplayBufferState(
            data=data,
            position=jnp.zeros((self.n_envs,), jnp.int32),
            size=jnp.zeros((self.n_envs,), jnp.int32),
        )

    def add(
        self, state: ReplayBufferState, experience: Any, valid: jax.Array | None = None
    ) -> ReplayBufferState:
        """Writes one vector step (leaves ``[N, ...]``), skipping envs where ``valid`` is False."""
        batch = jax.tree.map(lambda x: x[None], experience)
        return self.add_batch(state, batch, None if valid is None else valid[None])

    def add_batch(
        self, state: ReplayBufferState, experience: Any, valid: jax.Array | None = None
    ) -> ReplayBufferState:
        """Writes ``K`` vector steps (leaves ``[K, N, ...]``) in order, skipping invalid entries.

        Args:
            state: the buffer state.
            experience: pytree with leaves ``[K, N, ...]``, ``K <= slots_per_env``.
            valid: ``bool[K, N]``; entries marked False are not stored. Default: all valid.

        Returns:
            The new state. Under ``jit`` with the state donated, storage is updated in place.
        """
        k, n = _leading_shape(experience, 2)
        chex.assert_equal(n, self.n_envs)
        if k > self.slots_per_env:
            raise ValueError(
                f"cannot add {k} steps at once to a buffer of {self.slots_per_env} slots per env."
            )
        if valid is None:
            valid = jnp.ones((k, n), bool)
        chex.assert_shape(valid, (k, n))
        valid = valid.astype(bool)
        t_max = self.slots_per_env
        offsets = jnp.cumsum(valid, axis=0, dtype=jnp.int32) - 1
        slots = (state.position[None, :] + offsets) % t_max
        slots = jnp.where(valid, slots, t_max)  # out of range: dropped by the scatter
        envs = jnp.broadcast_to(jnp.arange(n), (k, n))
        data = jax.tree.map(
            lambda buf, x: buf.at[slots, envs].set(x.astype(buf.dtype), mode="drop"),
            state.data,
            experience,
        )
        written = valid.sum(axis=0, dtype=jnp.int32)
        return ReplayBufferState(
            data=data,
            position=(state.position + written) % t_max,
            size=jnp.minimum(state.size + written, t_max),
        )

    def can_sample(self, state: ReplayBufferState, batch_size: int) -> jax.Array:
        """Whether at least ``batch_size`` transitions are stored."""
        return state.size.sum() >= batch_size

    def sample_indices(
        self, state: ReplayBufferState, key: jax.Array, batch_size: int
    ) -> tuple[jax.Array, jax.Array]:
        """Draws ``batch_size`` (slot, env) pairs uniformly over stored transitions.

        Returns:
            ``(slots, envs)``, both ``int32[batch_size]``.
        """
        cumulative = jnp.cumsum(state.size)
        flat = jax.random.randint(key, (batch_size,), 0, jnp.maximum(cumulative[-1], 1))
        envs = jnp.searchsorted(cumulative, flat, side="right").astype(jnp.int32)
        rank = flat - (cumulative[envs] - state.size[envs])  # 0 = oldest of that env
        oldest = state.position[envs] - state.size[envs]
        slots = ((oldest + rank) % self.slots_per_env).astype(jnp.int32)
        return slots, envs

    def sample(self, state: ReplayBufferState, key: jax.Array, batch_size: int) -> Any:
        """Samples ``batch_size`` transitions (leaves ``[batch_size, ...]``) uniformly."""
        slots, envs = self.sample_indices(state, key, batch_size)
        return jax.tree.map(lambda x: x[slots, envs], state.data)


def make_replay_buffer(capacity: int, n_envs: int) -> ReplayBuffer:
    """Builds a :class:`ReplayBuffer` holding ``capacity`` transitions from ``n_envs`` envs.

    Raises:
        ValueError: if ``capacity < n_envs`` (fewer than one slot per env).
    """
    if n_envs < 1:
        raise ValueError(f"n_envs={n_envs} is invalid: it must be >= 1.")
    if capacity < n_envs:
        raise ValueError(
            f"max_buffer_size={capacity} is smaller than n_envs={n_envs}: the buffer needs at "
            "least one slot per env; raise max_buffer_size."
        )
    return ReplayBuffer(capacity=capacity, n_envs=n_envs)


class RolloutBuffer:
    """Host-side preallocated buffer of ``n_steps`` vector steps, leaves ``[n_steps, N, ...]``.

    Storage is allocated on the first :meth:`add` from that step's shapes and dtypes, then reused:
    each ``add`` is a numpy copy into the next row. :meth:`flush` hands out the filled storage
    and the number of rows, and starts over.
    """

    def __init__(self, n_steps: int, to_numpy: Callable[[Any], np.ndarray] = np.asarray):
        if n_steps < 1:
            raise ValueError(f"n_steps={n_steps} is invalid: it must be >= 1.")
        self.n_steps = n_steps
        self._to_numpy = to_numpy
        self._storage: Any = None
        self._treedef: Any = None
        self._leaves: list[np.ndarray] = []
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count == self.n_steps

    def add(self, experience: Any) -> None:
        """Copies one vector step (leaves ``[N, ...]``) into the next row."""
        if self.count >= self.n_steps:
            raise RuntimeError("RolloutBuffer is full: call flush() first.")
        leaves, treedef = jax.tree.flatten(experience)
        if self._storage is None:
            self._treedef = treedef
            self._leaves = [
                np.zeros((self.n_steps, *np.shape(x)), np.asarray(x).dtype) for x in leaves
            ]
            self._storage = jax.tree.unflatten(treedef, self._leaves)
        for buf, x in zip(self._leaves, leaves, strict=True):
            buf[self.count] = x
        self.count += 1

    def flush(self) -> tuple[Any, int]:
        """Returns ``(storage, n_rows)`` and empties the buffer (storage is reused, not copied)."""
        if self._storage is None:
            raise RuntimeError("RolloutBuffer.flush() called before any add().")
        count, self.count = self.count, 0
        return self._storage, count
