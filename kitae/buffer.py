"""Experience containers and buffers.

* :class:`Experience` is the transition pytree every loop produces.
* :class:`ReplayBuffer` is a preallocated ring buffer of transitions from vectorized envs,
  written as pure ``init`` / ``add`` / ``sample`` functions over a :class:`ReplayBufferState`
  pytree, so it can live inside a jitted training program and be updated in place when its state
  is donated (``jax.jit(..., donate_argnums=...)``). It samples single transitions or windows of
  consecutive transitions of one env (``sample_sequences``, for n-step returns);
  :class:`PrioritizedReplayBuffer` adds proportional prioritized sampling with importance weights
  (the :class:`PrioritizedSampling` mixin). For frame-stacked observations,
  :class:`kitae.frame_replay.FrameStackReplayBuffer` is the same buffer storing each frame once
  (``make_replay_buffer(..., frame_stack=...)``).
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
        actor_state: optional acting state before ``o_t`` (e.g. a recurrent agent's core
            state, zero at an episode's first step), so that a sampled window can restart from it.
    """

    observation: Any
    action: Any
    reward: Any
    done: Any
    next_observation: Any
    log_prob: Any = None
    truncated: Any = None
    value: Any = None
    actor_state: Any = None


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
    slots per env). Sampling is uniform over all stored transitions (or window starts), across
    envs and time, with replacement.
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
        slots, envs, valid = self._write_slots(state, experience, valid)
        data = jax.tree.map(
            lambda buf, x: buf.at[slots, envs].set(x.astype(buf.dtype), mode="drop"),
            state.data,
            experience,
        )
        written = valid.sum(axis=0, dtype=jnp.int32)
        t_max = self.slots_per_env
        return state.replace(
            data=data,
            position=(state.position + written) % t_max,
            size=jnp.minimum(state.size + written, t_max),
        )

    def _write_slots(
        self, state: ReplayBufferState, experience: Any, valid: jax.Array | None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Where ``add_batch`` writes: ``(slots [K, N], envs [K, N], valid [K, N])``, with the
        out-of-range slot ``T`` for invalid entries (dropped by a ``mode="drop"`` scatter)."""
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
        slots = jnp.where(valid, slots, t_max)
        envs = jnp.broadcast_to(jnp.arange(n), (k, n))
        return slots, envs, valid

    def can_sample(self, state: ReplayBufferState, batch_size: int, length: int = 1) -> jax.Array:
        """Whether at least ``batch_size`` start positions of ``length`` stored steps exist."""
        return self.valid_starts(state, length).sum() >= batch_size

    def valid_starts(self, state: ReplayBufferState, length: int = 1) -> jax.Array:
        """``int32[N]``: per env, the stored transitions followed by ``length - 1`` stored ones."""
        return jnp.maximum(state.size - (length - 1), 0)

    def _slot_of_rank(self, state: ReplayBufferState, envs: jax.Array, rank: jax.Array):
        """The slot of the ``rank``-th oldest stored transition of each env in ``envs``."""
        oldest = state.position[envs] - state.size[envs]
        return ((oldest + rank) % self.slots_per_env).astype(jnp.int32)

    def sample_indices(
        self, state: ReplayBufferState, key: jax.Array, batch_size: int, length: int = 1
    ) -> tuple[jax.Array, jax.Array]:
        """Draws ``batch_size`` (slot, env) start positions uniformly.

        Only positions followed by ``length - 1`` stored transitions of the same env are drawn
        (all stored ones for ``length = 1``), relative to each env's write pointer.

        Returns:
            ``(slots, envs)``, both ``int32[batch_size]``.
        """
        counts = self.valid_starts(state, length)
        cumulative = jnp.cumsum(counts)
        flat = jax.random.randint(key, (batch_size,), 0, jnp.maximum(cumulative[-1], 1))
        envs = jnp.searchsorted(cumulative, flat, side="right").astype(jnp.int32)
        envs = jnp.minimum(envs, self.n_envs - 1)
        rank = flat - (cumulative[envs] - counts[envs])  # 0 = oldest of that env
        return self._slot_of_rank(state, envs, rank), envs

    def gather(
        self, state: ReplayBufferState, slots: jax.Array, envs: jax.Array, length: int | None = None
    ) -> Any:
        """Reads transitions at ``(slots, envs)``: leaves ``[B, ...]``; with ``length``, the
        ``length`` consecutive transitions of each env from there: leaves ``[B, length, ...]``."""
        if length is None:
            return jax.tree.map(lambda x: x[slots, envs], state.data)
        times = (slots[:, None] + jnp.arange(length)[None, :]) % self.slots_per_env
        return jax.tree.map(lambda x: x[times, envs[:, None]], state.data)

    def end_episodes(self, state: ReplayBufferState, envs: jax.Array | None = None):
        """Marks the newest stored transition of each env in ``envs`` (``bool[N]``, default all)
        ``truncated`` unless it is ``done``: the env's episode was cut there (e.g. the loop moved
        to another env), so n-step windows stop at it. A no-op without ``done`` / ``truncated``
        fields."""
        data = state.data
        if getattr(data, "done", None) is None or getattr(data, "truncated", None) is None:
            return state
        cut = jnp.ones((self.n_envs,), bool) if envs is None else envs
        index = jnp.arange(self.n_envs)
        newest = (state.position - 1) % self.slots_per_env
        cut = cut & (state.size > 0) & ~data.done[newest, index].astype(bool)
        truncated = data.truncated.at[newest, index].set(data.truncated[newest, index] | cut)
        return state.replace(data=data._replace(truncated=truncated))

    def saved_example(self, saved: dict[str, Any], experience_type: type) -> Any:
        """The ``example`` that :meth:`init` takes, rebuilt from a saved state (the state dict
        of a checkpoint): ``jax.ShapeDtypeStruct`` leaves ``[N, ...]``.

        Raises:
            ValueError: if the saved state stores other fields than ``experience_type``.
        """
        fields = set(experience_type._fields)
        data = saved.get("data") or {}
        if "frames" in saved or set(data) != fields:
            kind = "frames once (frame-stack replay)" if "frames" in saved else "whole observations"
            raise ValueError(
                f"the checkpoint's replay buffer stores {kind} with the fields {sorted(data)}; "
                f"this agent's stores whole observations with {sorted(fields)} (see "
                "update_cfg.frame_stack_replay)."
            )
        return experience_type(
            **{
                k: jax.tree.map(  # a dict for dict observations
                    lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], np.asarray(x).dtype), v
                )
                for k, v in data.items()
            }
        )

    def sample(self, state: ReplayBufferState, key: jax.Array, batch_size: int) -> Any:
        """Samples ``batch_size`` transitions (leaves ``[batch_size, ...]``) uniformly."""
        slots, envs = self.sample_indices(state, key, batch_size)
        return self.gather(state, slots, envs)

    def sample_sequences(
        self, state: ReplayBufferState, key: jax.Array, batch_size: int, length: int
    ) -> Any:
        """Samples ``batch_size`` runs of ``length`` consecutive stored transitions of one env
        (leaves ``[batch_size, length, ...]``), uniformly over their start positions. Runs may
        cross episode boundaries: the ``done`` / ``truncated`` fields say where."""
        slots, envs = self.sample_indices(state, key, batch_size, length)
        return self.gather(state, slots, envs, length)


@struct.dataclass
class PrioritizedReplayBufferState(ReplayBufferState):
    """State of a :class:`PrioritizedReplayBuffer`.

    Attributes:
        priorities: ``float32[T, N]``, each stored transition's priority already raised to
            ``alpha`` (0 for empty slots).
        max_priority: the largest priority seen (``alpha``-space); new transitions get it.
        updates: number of priority updates so far (drives the annealing of ``beta``).
    """

    priorities: jax.Array = None
    max_priority: jax.Array = None
    updates: jax.Array = None


class PrioritizedSampling:
    """Proportional prioritized sampling over the slots a buffer's ``_start_mask`` allows.

    A mixin of the prioritized buffers (:class:`PrioritizedReplayBuffer`, and
    :class:`~kitae.frame_replay.PrioritizedFrameStackReplayBuffer`): they declare the fields
    ``alpha``, ``beta_start``, ``beta_steps`` and ``eps``, their states the fields
    ``priorities`` (``float32[T, N]``), ``max_priority`` and ``updates``, and they define
    ``_start_mask``. The loops recognise a prioritized buffer by this class.
    """

    alpha: float
    beta_start: float
    beta_steps: int
    eps: float
    n_envs: int
    _start_mask: Callable[[Any, int], jax.Array]
    """``(state, length) -> bool[T, N]``: the slots that may be drawn (the buffer's own)."""

    def beta(self, state: Any) -> jax.Array:
        """The importance-sampling exponent now: ``beta_start`` -> 1 over ``beta_steps``."""
        progress = jnp.minimum(state.updates / max(self.beta_steps, 1), 1.0)
        return self.beta_start + (1.0 - self.beta_start) * progress

    def sample_indices(
        self, state: Any, key: jax.Array, batch_size: int, length: int = 1
    ) -> tuple[jax.Array, jax.Array]:
        """Draws ``batch_size`` start positions with probability proportional to priority.

        Returns:
            ``(slots, envs)``, both ``int32[batch_size]``.
        """
        mass = jnp.where(self._start_mask(state, length), state.priorities, 0.0).reshape(-1)
        flat = sample_proportional(mass, key, batch_size)
        return flat // self.n_envs, flat % self.n_envs

    def importance_weights(
        self, state: Any, slots: jax.Array, envs: jax.Array, length: int = 1
    ) -> jax.Array:
        """``float32[B]`` importance weights of sampled positions, normalised so the largest
        possible weight is 1: ``(p_min / p_i)^beta``."""
        mask = self._start_mask(state, length)
        p_min = jnp.min(jnp.where(mask & (state.priorities > 0), state.priorities, jnp.inf))
        p_min = jnp.where(jnp.isfinite(p_min), p_min, 1.0)  # nothing sampleable yet
        p = jnp.maximum(state.priorities[slots, envs], p_min)
        return (p_min / p) ** self.beta(state)

    def update_priorities(
        self, state: Any, slots: jax.Array, envs: jax.Array, td_errors: jax.Array
    ) -> Any:
        """Writes priorities ``(|td_errors| + eps)^alpha`` at ``(slots, envs)``.

        Args:
            state: the buffer state.
            slots: ``int32[B]``.
            envs: ``int32[B]``.
            td_errors: ``[B]``, e.g. the TD errors of the sampled transitions.
        """
        chex.assert_equal_shape([slots, envs, td_errors])
        new = (jnp.abs(jax.lax.stop_gradient(td_errors)) + self.eps) ** self.alpha
        return state.replace(
            priorities=state.priorities.at[slots, envs].set(new.astype(jnp.float32)),
            max_priority=jnp.maximum(state.max_priority, new.max()),
            updates=state.updates + 1,
        )


@struct.dataclass
class PrioritizedReplayBuffer(PrioritizedSampling, ReplayBuffer):
    """Proportional prioritized replay over vectorized envs, as pure functions.

    Transition ``i`` is drawn with probability ``P(i) = p_i^alpha / sum_k p_k^alpha``; new
    transitions get the largest priority seen; :meth:`update_priorities` writes
    ``(|delta| + eps)^alpha`` back after an update. Importance weights
    ``(N * P(i))^-beta / max_k (N * P(k))^-beta`` use ``beta`` annealed linearly from
    ``beta_start`` to 1 over ``beta_steps`` priority updates. See "Prioritized Experience
    Replay", Schaul et al., 2016.

    Sampling is exact up to the float32 rounding of partial sums, at any capacity (see
    :func:`sample_proportional`): a sum tree over the slots is built from the priorities at
    sample time, ``2^10`` of its nodes are drawn stratified over ``batch_size`` equal segments of
    the total mass, and every sample then descends to a slot with one Bernoulli draw per level.
    (A float32 cumulative sum over all slots is not exact: its steps near the end are multiples
    of ``total * 2^-24``, so at ~1M slots many low-priority transitions would never be drawn and
    others far too often.)
    """

    alpha: float = struct.field(pytree_node=False, default=0.6)
    beta_start: float = struct.field(pytree_node=False, default=0.4)
    beta_steps: int = struct.field(pytree_node=False, default=1)
    eps: float = struct.field(pytree_node=False, default=1e-6)

    def init(self, example: Any) -> PrioritizedReplayBufferState:
        base = super().init(example)
        return PrioritizedReplayBufferState(
            data=base.data,
            position=base.position,
            size=base.size,
            priorities=jnp.zeros((self.slots_per_env, self.n_envs), jnp.float32),
            max_priority=jnp.ones((), jnp.float32),
            updates=jnp.zeros((), jnp.int32),
        )

    def add_batch(
        self, state: PrioritizedReplayBufferState, experience: Any, valid: jax.Array | None = None
    ) -> PrioritizedReplayBufferState:
        """As :meth:`ReplayBuffer.add_batch`; new transitions get ``max_priority``."""
        slots, envs, _ = self._write_slots(state, experience, valid)
        priorities = state.priorities.at[slots, envs].set(state.max_priority, mode="drop")
        return super().add_batch(state, experience, valid).replace(priorities=priorities)

    def _start_mask(self, state: ReplayBufferState, length: int) -> jax.Array:
        """``bool[T, N]``: slots that hold the start of ``length`` stored consecutive steps."""
        t_max = self.slots_per_env
        oldest = state.position - state.size  # in [-T, T)
        rank = jnp.arange(t_max)[:, None] - oldest[None, :]  # in (-T, 2T): wrap without a modulo
        rank = jnp.where(rank < 0, rank + t_max, jnp.where(rank >= t_max, rank - t_max, rank))
        return rank < self.valid_starts(state, length)[None, :]


STRATIFIED_DEPTH = 10
"""Depth of the sum-tree level whose ``2^10`` nodes :func:`sample_proportional` draws stratified."""


def _sum_tree_levels(mass: jax.Array, top: int) -> list[jax.Array]:
    """The levels of a sum tree over ``mass`` (length ``2^depth``) from depth ``top`` down.

    Node ``j`` of a level of ``2^d`` nodes has the children ``j`` and ``j + 2^d`` in the next one
    (so each level is the sum of the two halves of the next: contiguous, vectorised adds), and
    leaf ``i`` sits at the bottom, index ``i``.

    Returns:
        ``[level_top, ..., level_depth]``, ``level_d`` being ``float32[2^d]``; the last is ``mass``.
    """
    levels = [mass]
    while levels[-1].shape[0] > 2**top:
        half = levels[-1].shape[0] // 2
        levels.append(levels[-1][:half] + levels[-1][half:])
    return levels[::-1]


def _bernoulli(bits: jax.Array, p: jax.Array) -> jax.Array:
    """Exactly ``bits * 2^-32 < p``: true with probability ``p`` rounded up to a multiple of
    ``2^-32``.

    Args:
        bits: ``uint32[B]`` uniform random bits.
        p: ``float32[B]`` probabilities in ``[0, 1/2]``.
    """
    threshold = jnp.ceil(p * 2.0**32)  # exact: a power-of-two scaling of a float32, below 2^31
    return bits < threshold.astype(jnp.uint32)


def sample_proportional(mass: jax.Array, key: jax.Array, batch_size: int) -> jax.Array:
    """Draws ``batch_size`` indices with probability proportional to ``mass``, exact in float32.

    A sum tree is built over ``mass`` (see :func:`_sum_tree_levels`). Its ``2^10`` nodes at
    depth 10 (node ``j`` sums the entries ``j, j + 2^10, j + 2 * 2^10, ...``, so their masses are
    alike) are drawn stratified: one uniform per ``1 / batch_size`` segment of the total mass,
    searched in their cumulative sum. Each sample then descends to a leaf, taking the child of
    smaller mass ``m`` with probability ``m / (left + right)`` (rounded up to a multiple of
    ``2^-32``) from fresh random bits. A leaf's probability is thus a product of ratios of
    float32 sums, accurate however small its share of the total; a single float32 cumulative sum
    over all entries is not (its steps near the end are multiples of ``total * 2^-24``). Arrays
    of up to ``2^10`` entries are drawn by the stratified search alone.

    Args:
        mass: ``float32[M]`` non-negative masses; entries with zero mass are never drawn.
        key: PRNG key.
        batch_size: number of draws.

    Returns:
        ``int32[batch_size]`` indices into ``mass`` (all ``M - 1`` when the total mass is 0).
    """
    size = mass.shape[0]
    depth = max(size - 1, 0).bit_length()
    top = min(depth, STRATIFIED_DEPTH)
    levels = _sum_tree_levels(jnp.pad(mass.astype(jnp.float32), (0, 2**depth - size)), top)
    # One draw of random bits for everything (each call to the PRNG adds to compile time).
    bits = jax.random.bits(key, (depth - top + 1, batch_size), jnp.uint32)

    cumulative = jnp.cumsum(levels[0])
    total = cumulative[-1]
    # Uniforms in [0, 1) from 23 random mantissa bits, as jax.random.uniform makes them.
    unit = jax.lax.bitcast_convert_type((bits[0] >> 9) | jnp.uint32(0x3F800000), jnp.float32)
    u = (jnp.arange(batch_size) + (unit - 1.0)) / batch_size
    target = jnp.minimum(u * total, jnp.nextafter(total, jnp.float32(0.0)))
    node = jnp.searchsorted(cumulative, target, side="right")
    node = jnp.minimum(node, 2**top - 1).astype(jnp.int32)

    for level, level_bits in zip(levels[1:], bits[1:], strict=True):
        half = level.shape[0] // 2
        left, right = level[node], level[node + half]
        left_is_small = left <= right
        small = jnp.where(left_is_small, left, right)
        take_small = _bernoulli(level_bits, small / (left + right))
        node = node + half * (take_small != left_is_small).astype(jnp.int32)
    return jnp.minimum(node, size - 1)


def make_replay_buffer(
    capacity: int,
    n_envs: int,
    *,
    prioritized: bool = False,
    alpha: float = 0.6,
    beta_start: float = 0.4,
    beta_steps: int = 1,
    eps: float = 1e-6,
    frame_stack: tuple[int, int] | None = None,
) -> ReplayBuffer:
    """Builds a uniform :class:`ReplayBuffer` holding ``capacity`` transitions from ``n_envs``
    envs, or with ``prioritized`` a :class:`PrioritizedReplayBuffer` (``alpha``, ``beta_start``,
    ``beta_steps``, ``eps`` as documented there).

    With ``frame_stack = (n_frames, axis)``, observations are stacks of ``n_frames`` frames along
    ``axis`` of one observation, and the buffer is a
    :class:`~kitae.frame_replay.FrameStackReplayBuffer` (or its prioritized variant) that stores
    each frame once.

    Raises:
        ValueError: if ``capacity < n_envs`` (fewer than one slot per env) or a prioritized
            setting is out of range.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs={n_envs} is invalid: it must be >= 1.")
    if capacity < n_envs:
        raise ValueError(
            f"max_buffer_size={capacity} is smaller than n_envs={n_envs}: the buffer needs at "
            "least one slot per env; raise max_buffer_size."
        )
    if prioritized:
        if not alpha >= 0.0:
            raise ValueError(f"priority_exponent (alpha)={alpha!r} is invalid: it must be >= 0.")
        if not 0.0 <= beta_start <= 1.0:
            raise ValueError(f"importance_exponent (beta)={beta_start!r} must be in [0, 1].")
        if not eps > 0.0:
            raise ValueError(f"priority eps={eps!r} is invalid: it must be > 0.")
    priority = {"alpha": alpha, "beta_start": beta_start, "beta_steps": beta_steps, "eps": eps}
    if frame_stack is not None:
        from kitae.frame_replay import make_frame_stack_replay_buffer

        n_frames, axis = frame_stack
        return make_frame_stack_replay_buffer(
            capacity, n_envs, n_frames, axis, prioritized=prioritized, **priority
        )
    if not prioritized:
        return ReplayBuffer(capacity=capacity, n_envs=n_envs)
    return PrioritizedReplayBuffer(capacity=capacity, n_envs=n_envs, **priority)


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
