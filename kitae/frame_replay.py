"""Replay of frame-stacked observations with every frame stored once.

An Atari observation is a stack of the last 4 frames (``(4, 84, 84)`` ``uint8`` from gymnasium's
``FrameStackObservation``); a replay buffer that stores ``observation`` and ``next_observation``
of every transition holds each frame 8 times. :class:`FrameStackReplayBuffer` stores per step only
the newest frame of the observation, in the observation's dtype, and rebuilds the stacks of
``o_t`` and ``o_{t+1}`` when it samples, so 1M Atari transitions take ~7 GB instead of ~56 GB
(``uint8``) or ~220 GB (``float32``). The sampled :class:`~kitae.buffer.Experience` is the one the
loop stored: stacked ``observation`` and ``next_observation`` in their dtype.

It is the :class:`~kitae.buffer.ReplayBuffer` of vectorized envs (pure ``init`` / ``add`` /
``sample`` functions over a state pytree, per-env rings ``[T, N, ...]``, windows of consecutive
transitions for n-step returns, in-place writes when the state is donated), with
:class:`PrioritizedFrameStackReplayBuffer` as its prioritized variant.

Layout, per env, in slots of a ring of ``T = capacity // n_envs``:

* every transition writes the newest frame of its observation in one slot, with its other fields
  (action, reward, flags...), and the newest frame of its next observation in the following slot;
  the next transition of the episode overwrites that slot with the same frame. When the episode
  ends (``done`` or ``truncated``), the frame after the last transition is the true final
  observation, which an autoresetting env does not give as the next observation: it stays in
  its slot, the *final slot* of the episode, and the next episode starts in the slot after. An
  episode of ``L`` transitions takes ``L + 1`` slots, so the buffer holds slightly fewer than
  ``capacity`` transitions (one less per episode).
* an episode whose first observation is the final observation of the previous one (the frames
  go on: Atari's lost lives, where the game continues and the stack with it) takes over that
  final slot instead: it costs no slot, and its stacks keep the earlier frames as the env's do.
* the next observation of a transition is always its slot's stack shifted by the frame of the
  following slot: exact at terminations and truncations alike.
* the stack of a slot is rebuilt by :mod:`kitae.frame_stack`'s rules (the ones the models'
  :class:`~kitae.models.memory.FrameStackMemory` follows): frames since the stack last restarted
  only (an episode start, unless it continues the previous frames), and before the first of
  them the padding the env used, recorded per episode from its first observation (zeros, or
  copies of the first frame as gymnasium's default ``padding_type="reset"`` makes them).
* samples are drawn only among transitions whose whole stack is still stored: after the ring
  wraps, the oldest steps of an episode whose first frames were overwritten are never drawn
  (rather than drawn with a zero weight, so that every sample of a batch trains and
  ``process_experience_fn`` needs no mask). Uniform sampling costs ``O(batch_size)``: every
  transition's slot is indexed by its number (``slot_of``), and the sampleable transitions of an
  env are a contiguous range of numbers.

Every ``add`` also checks that the buffer rebuilds exactly the observations it was given (the
older frames of each stack are the stored frames of the previous steps of its episode, or its
padding) and counts the transitions it would not (``mismatches``): observations that are not
frame stacks along ``axis``, another padding, or a stream with skipped steps. The agents raise
when it is non-zero (:func:`check_frame_stacks`).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from kitae.buffer import PrioritizedSampling, ReplayBuffer, _leading_shape
from kitae.frame_stack import in_episode, padding_sources, stack_is_held

if TYPE_CHECKING:
    from kitae.config import AlgoConfig

FRAME_STACK_SETTINGS = (True, False, "auto")
"""The values of ``update_cfg.frame_stack_replay``."""

AUTO_MAX_FRAMES = 16
"""``"auto"`` takes an axis of at most this many entries for a stack of frames."""


@struct.dataclass
class FrameStackReplayBufferState:
    """State of a :class:`FrameStackReplayBuffer` (``T`` slots per env, ``N`` envs).

    Attributes:
        frames: ``[T, N, *frame_shape]`` in the observations' dtype: the newest frame of the
            observation of the transition in the slot, or a next frame (see the module doc).
        data: the stored experience without ``observation`` / ``next_observation`` (``None``):
            leaves ``[T, N, ...]``, meaningful in transition slots.
        first: ``bool[T, N]``, the slot holds the first frame of an episode whose stacks start
            anew (padded), rather than continuing the previous episode's frames.
        pad_first: ``bool[T, N]``, at an episode's first slot: the episode's stacks pad with its
            first frame (else with zeros).
        step: ``bool[T, N]``, the slot holds a transition (False: a next frame only).
        number: ``int32[T, N]``, the number of the slot's transition (per env, from 0), or of the
            transition whose next frame it holds.
        slot_of: ``int32[T, N]``, the slot of transition ``t`` at ``[t % T]``.
        position: ``int32[N]``, the slot of the next transition's observation.
        size: ``int32[N]``, slots holding frames (at most ``T``).
        count: ``int32[N]``, transitions added.
        new_episode: ``bool[N]``, the next transition starts an episode.
        mismatches: ``int32[]``, added transitions whose observation or next observation this
            buffer would not rebuild exactly (0 when the observations are frame stacks).
    """

    frames: jax.Array
    data: Any
    first: jax.Array
    pad_first: jax.Array
    step: jax.Array
    number: jax.Array
    slot_of: jax.Array
    position: jax.Array
    size: jax.Array
    count: jax.Array
    new_episode: jax.Array
    mismatches: jax.Array


@struct.dataclass
class PrioritizedFrameStackReplayBufferState(FrameStackReplayBufferState):
    """State of a :class:`PrioritizedFrameStackReplayBuffer`: priorities ``float32[T, N]``
    (``alpha``-space, 0 where no transition starts), the largest one seen and the number of
    priority updates, as in :class:`~kitae.buffer.PrioritizedReplayBufferState`."""

    priorities: jax.Array = None
    max_priority: jax.Array = None
    updates: jax.Array = None


class _WritePlan(NamedTuple):
    """Where one ``add_batch`` of ``K`` vector steps writes (``[K, N]`` each; slot ``T`` means
    not written, dropped by a ``mode="drop"`` scatter)."""

    obs_slots: jax.Array
    next_slots: jax.Array
    envs: jax.Array
    numbers: jax.Array
    checked: jax.Array


def _all_but(x: jax.Array, lead: int) -> jax.Array:
    """``x.all()`` over every axis after the first ``lead``."""
    return x.reshape(x.shape[:lead] + (-1,)).all(-1)


@struct.dataclass
class FrameStackReplayBuffer(ReplayBuffer):
    """A uniform replay ring buffer of frame-stacked observations that stores each frame once.

    Build it with :func:`make_frame_stack_replay_buffer` (or :func:`~kitae.buffer.
    make_replay_buffer` with ``frame_stack``); see the module doc for the layout. The methods of
    :class:`~kitae.buffer.ReplayBuffer` apply (``add``, ``sample``, ``sample_sequences``,
    ``can_sample``), with ``capacity`` counted in slots.

    Attributes:
        n_frames: frames per observation.
        axis: the axis of one observation that stacks them, newest last (0 for gymnasium's
            ``FrameStackObservation``: ``(4, 84, 84)``; 2 for channels-last ``(84, 84, 4)``).
        check: count the added transitions the buffer would not rebuild exactly
            (``mismatches``); costs one read of the stacks written per ``add``.
    """

    n_frames: int = struct.field(pytree_node=False, default=4)
    axis: int = struct.field(pytree_node=False, default=0)
    check: bool = struct.field(pytree_node=False, default=True)

    # ---- storage ------------------------------------------------------------------------------
    def init(self, example: Any) -> FrameStackReplayBufferState:
        """Allocates zeroed storage for transitions shaped like ``example`` (leaves ``[N, ...]``,
        a ``NamedTuple`` with ``observation``, ``next_observation`` and ``done`` fields, the
        observations stacked along ``axis``). No float copy is made: frames keep their dtype.

        Raises:
            ValueError: if the example has no such fields or its observations are no stacks of
                ``n_frames`` along ``axis``.
        """
        fields = getattr(type(example), "_fields", ())
        missing = [f for f in ("observation", "next_observation", "done") if f not in fields]
        if missing:
            raise ValueError(
                f"a frame-stack replay buffer stores NamedTuple transitions with the fields "
                f"observation, next_observation and done; {type(example).__name__} lacks "
                f"{missing}."
            )
        (n_envs,) = _leading_shape(example, 1)
        if n_envs != self.n_envs:
            raise ValueError(f"example has {n_envs} envs, the buffer was built for {self.n_envs}.")
        obs = example.observation
        shape = tuple(obs.shape[1:])
        if not (0 <= self.axis < len(shape)) or shape[self.axis] != self.n_frames:
            raise ValueError(
                f"observations of shape {shape} are not stacks of n_frames={self.n_frames} along "
                f"axis {self.axis}; check update_cfg.frame_stack_axis."
            )
        t, n = self.slots_per_env, self.n_envs
        frame_shape = shape[: self.axis] + shape[self.axis + 1 :]
        rest = example._replace(observation=None, next_observation=None)
        return FrameStackReplayBufferState(
            frames=jnp.zeros((t, n, *frame_shape), obs.dtype),
            data=jax.tree.map(lambda x: jnp.zeros((t, *x.shape), x.dtype), rest),
            first=jnp.zeros((t, n), bool),
            pad_first=jnp.zeros((t, n), bool),
            step=jnp.zeros((t, n), bool),
            number=jnp.zeros((t, n), jnp.int32),
            slot_of=jnp.zeros((t, n), jnp.int32),
            position=jnp.zeros((n,), jnp.int32),
            size=jnp.zeros((n,), jnp.int32),
            count=jnp.zeros((n,), jnp.int32),
            new_episode=jnp.ones((n,), bool),
            mismatches=jnp.zeros((), jnp.int32),
        )

    def _newest(self, obs: jax.Array, lead: int) -> jax.Array:
        """The newest frame of observations with ``lead`` batch axes."""
        return jnp.take(obs, self.n_frames - 1, axis=lead + self.axis)

    def _pads_with_first(self, obs: jax.Array, lead: int) -> jax.Array:
        """``bool[*lead]``: the older frames of each observation all equal its newest frame."""
        newest = jnp.expand_dims(self._newest(obs, lead), lead + self.axis)
        return _all_but(obs == newest, lead)

    def _plan(self, state: FrameStackReplayBufferState, experience: Any, valid: Any) -> tuple:
        """Where ``add_batch`` writes, which steps restart their stacks, and the new counters.

        Slots are counted relative to ``position``. Step ``k`` (valid) goes ``1 + e - c`` slots
        after the previous stored step of its env: ``e`` when that step ended its episode (its
        final slot lies between), ``c`` when step ``k`` continues the frames of that final
        observation (its observation is that very stack, as when a game goes on after a lost
        life): then it takes the final slot, which holds its newest frame already.
        """
        k, n = _leading_shape(experience, 2)
        if n != self.n_envs:
            raise ValueError(f"experience has {n} envs, the buffer was built for {self.n_envs}.")
        t_max = self.slots_per_env
        if k > t_max:
            raise ValueError(f"cannot add {k} steps at once to a buffer of {t_max} slots per env.")
        valid = jnp.ones((k, n), bool) if valid is None else jnp.asarray(valid).astype(bool)
        ended = experience.done.astype(bool)
        if experience.truncated is not None:
            ended = ended | experience.truncated.astype(bool)
        ended = ended & valid
        steps = jnp.arange(k)[:, None]
        index = jnp.arange(n)[None, :]
        # The previous and the next stored step of each step's env in this call.
        previous = jax.lax.cummax(jnp.where(valid, steps, -1), axis=0)
        previous = jnp.concatenate([jnp.full((1, n), -1), previous[:-1]], axis=0)
        following = jax.lax.cummin(jnp.where(valid, steps, k), axis=0, reverse=True)
        following = jnp.concatenate([following[1:], jnp.full((1, n), k)], axis=0)
        has_previous = previous >= 0
        starts = jnp.where(has_previous, ended[jnp.maximum(previous, 0), index], state.new_episode)
        continues = valid & starts & self._continues(state, experience, previous)
        first = starts & ~continues
        taken = valid.astype(jnp.int32)
        inc = taken * (1 + starts.astype(jnp.int32) - continues.astype(jnp.int32))
        base = -1 - state.new_episode.astype(jnp.int32)  # the previous step's obs slot
        at = base + jnp.cumsum(inc, axis=0)  # each step's obs slot
        # A write survives unless a later write of this call lands on its slot: the obs of the
        # following step on a next frame, or anything T slots further on.
        end = jnp.max(jnp.where(valid, at + 1, jnp.iinfo(jnp.int32).min), axis=0)
        has_following = following < k
        following_c = jnp.minimum(following, k - 1)
        moves_on = starts[following_c, index] & ~continues[following_c, index]
        obs_kept = valid & (at > end - t_max)
        next_kept = valid & (~has_following | moves_on) & (at + 1 > end - t_max)
        obs_slots = jnp.where(obs_kept, (state.position + at) % t_max, t_max)
        next_slots = jnp.where(next_kept, (state.position + at + 1) % t_max, t_max)
        numbers = state.count + jnp.cumsum(taken, axis=0) - taken
        # The stacks read back by the check must lie in slots this call left intact.
        checked = obs_kept & (at - (self.n_frames - 1) > end - t_max)
        last = jnp.max(jnp.where(valid, steps, -1), axis=0)
        any_valid = last >= 0
        last_c = jnp.maximum(last, 0)[None]
        last_at = jnp.take_along_axis(at, last_c, axis=0)[0]
        last_ended = jnp.take_along_axis(ended, last_c, axis=0)[0]
        new_episode = jnp.where(any_valid, last_ended, state.new_episode)
        # Slots holding frames end after the newest next frame (pending, or a final slot).
        head = (~state.new_episode).astype(jnp.int32)
        grown = jnp.where(any_valid, last_at + 2 - head, 0)
        advance = jnp.where(any_valid, last_at + 1 + last_ended.astype(jnp.int32), 0)
        counters = {
            "position": (state.position + advance) % t_max,
            "size": jnp.minimum(state.size + grown, t_max),
            "count": state.count + taken.sum(axis=0),
            "new_episode": new_episode,
        }
        envs = jnp.broadcast_to(jnp.arange(n), (k, n))
        return _WritePlan(obs_slots, next_slots, envs, numbers, checked), first, counters

    def _continues(
        self, state: FrameStackReplayBufferState, experience: Any, previous: jax.Array
    ) -> jax.Array:
        """``bool[K, N]``: each step's observation is the final observation before it (the
        previous stored step's next observation, ``previous [K, N]`` indexing this call's steps,
        -1 for the newest slot stored), so an episode it starts continues those frames."""
        n = previous.shape[1]
        index = jnp.arange(n)[None, :]
        stored, _ = self._stacks(state, (state.position - 1) % self.slots_per_env, jnp.arange(n))
        has_previous = previous >= 0
        nxt = experience.next_observation
        final = jnp.where(
            has_previous.reshape(has_previous.shape + (1,) * (stored.ndim - 1)),
            nxt[jnp.maximum(previous, 0), index],
            stored[None].astype(nxt.dtype),
        )
        known = has_previous | (state.count > 0)[None, :]
        return known & _all_but(experience.observation == final, 2)

    def _mismatches(
        self, state: FrameStackReplayBufferState, experience: Any, plan: _WritePlan
    ) -> jax.Array:
        """``int32[]``: the steps just written whose observation or next observation, rebuilt
        from ``state``, differs from the one given."""
        dtype = state.frames.dtype
        slots = jnp.minimum(plan.obs_slots, self.slots_per_env - 1)
        rebuilt_obs, rebuilt_next = self._stacks(state, slots, plan.envs)
        differs = ~_all_but(rebuilt_obs == experience.observation.astype(dtype), 2)
        differs |= ~_all_but(rebuilt_next == experience.next_observation.astype(dtype), 2)
        return jnp.sum(differs & plan.checked, dtype=jnp.int32)

    def add_batch(
        self, state: FrameStackReplayBufferState, experience: Any, valid: jax.Array | None = None
    ) -> FrameStackReplayBufferState:
        """Writes ``K`` vector steps (leaves ``[K, N, ...]``) in order, skipping invalid entries.

        Args:
            state: the buffer state.
            experience: transitions with leaves ``[K, N, ...]``, ``K <= slots_per_env``;
                ``observation`` and ``next_observation`` are stacks (``next_observation`` the
                true final one where the episode ended), ``done`` / ``truncated`` end episodes.
            valid: ``bool[K, N]``; entries marked False are not stored (the env's next stored
                transition must still follow its previous one: a skipped step of a running
                episode breaks its stacks, which the check counts).

        Returns:
            The new state. Under ``jit`` with the state donated, storage is updated in place.
        """
        plan, first, counters = self._plan(state, experience, valid)
        s, e = plan.obs_slots, plan.envs
        ns = plan.next_slots
        obs, nxt = experience.observation, experience.next_observation
        dtype = state.frames.dtype
        frames = state.frames.at[ns, e].set(self._newest(nxt, 2).astype(dtype), mode="drop")
        frames = frames.at[s, e].set(self._newest(obs, 2).astype(dtype), mode="drop")
        rest = experience._replace(observation=None, next_observation=None)
        data = jax.tree.map(
            lambda buf, x: buf.at[s, e].set(x.astype(buf.dtype), mode="drop"), state.data, rest
        )
        t_max = self.slots_per_env
        new = state.replace(
            frames=frames,
            data=data,
            first=state.first.at[ns, e].set(False, mode="drop").at[s, e].set(first, mode="drop"),
            pad_first=state.pad_first.at[s, e].set(self._pads_with_first(obs, 2), mode="drop"),
            step=state.step.at[ns, e].set(False, mode="drop").at[s, e].set(True, mode="drop"),
            number=state.number.at[ns, e]
            .set(plan.numbers, mode="drop")
            .at[s, e]
            .set(plan.numbers, mode="drop"),
            slot_of=state.slot_of.at[jnp.where(s < t_max, plan.numbers % t_max, t_max), e].set(
                s, mode="drop"
            ),
            **counters,
        )
        new = self._after_write(state, new, plan)
        if self.check:
            new = new.replace(mismatches=new.mismatches + self._mismatches(new, experience, plan))
        return new

    def _after_write(
        self, old: FrameStackReplayBufferState, new: FrameStackReplayBufferState, plan: _WritePlan
    ) -> FrameStackReplayBufferState:
        """Hook of the prioritized variant (the priorities of the written slots)."""
        del old, plan
        return new

    def end_episodes(
        self, state: FrameStackReplayBufferState, envs: jax.Array | None = None
    ) -> FrameStackReplayBufferState:
        """Ends the running episode of each env in ``envs`` (``bool[N]``, default all) without a
        transition: the next frame of its newest transition becomes the episode's final slot and
        that transition is marked ``truncated`` (n-step windows stop there, its next observation
        stays exact); the env's next transition starts an episode. Call it when the loop moves
        to new episodes that the stored flags do not announce (e.g. another env)."""
        cut = jnp.ones((self.n_envs,), bool) if envs is None else envs
        cut = cut & ~state.new_episode
        index = jnp.arange(self.n_envs)
        data = state.data
        if getattr(data, "truncated", None) is not None:
            newest = state.slot_of[(state.count - 1) % self.slots_per_env, index]
            marked = data.truncated[newest, index] | cut
            data = data._replace(truncated=data.truncated.at[newest, index].set(marked))
        return state.replace(
            data=data,
            position=(state.position + cut) % self.slots_per_env,
            new_episode=state.new_episode | cut,
        )

    # ---- reading ------------------------------------------------------------------------------
    def _stacks(
        self, state: FrameStackReplayBufferState, slots: jax.Array, envs: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The observation and next observation stacks of the transitions at ``(slots, envs)``
        (any batch shape ``[*B]``): ``[*B, *obs_shape]`` each."""
        n, t_max = self.n_frames, self.slots_per_env
        window = (slots[..., None] + jnp.arange(-n + 1, 2)) % t_max  # [*B, n + 1]
        e = envs[..., None]
        first, pad = state.first[window, e], state.pad_first[window, e]
        lead = slots.ndim

        def assemble(part: slice) -> jax.Array:
            keep = in_episode(first[..., part], jnp)
            source, shown = padding_sources(keep, pad[..., part], jnp)
            frames = state.frames[jnp.take_along_axis(window[..., part], source, axis=-1), e]
            shown = shown.reshape(shown.shape + (1,) * (frames.ndim - shown.ndim))
            frames = jnp.where(shown, frames, jnp.zeros((), frames.dtype))
            return jnp.moveaxis(frames, lead, lead + self.axis)

        return assemble(slice(0, n)), assemble(slice(1, n + 1))

    def _oldest(self, state: FrameStackReplayBufferState) -> jax.Array:
        """``int32[N]``: the oldest slot holding a frame."""
        head = state.position + (~state.new_episode).astype(jnp.int32)
        return (head - state.size) % self.slots_per_env

    def _bounds(
        self, state: FrameStackReplayBufferState, length: int
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per env ``(lowest rank, lowest number, count)`` of the sampleable window starts.

        A transition can be drawn once its stack is held (:func:`kitae.frame_stack.
        stack_is_held`) and the ``length - 1`` transitions after it are stored. Only the slots
        at ranks ``< n_frames - 1`` can hold transitions whose stack is gone, and those come
        before every held one; so the sampleable transitions are the numbers from the first
        held one among ranks ``0 .. n_frames`` to the newest, minus ``length - 1``.
        """
        n, t_max = self.n_frames, self.slots_per_env
        oldest = self._oldest(state)
        ranks = jnp.arange(n + 1)[:, None]  # [n + 1, 1]
        slots = (oldest[None, :] + ranks) % t_max  # [n + 1, N]
        envs = jnp.arange(self.n_envs)[None, :]
        window = (slots[..., None] + jnp.arange(-n + 1, 1)) % t_max  # [n + 1, N, n]
        keep = in_episode(state.first[window, envs[..., None]], jnp)
        ok = state.step[slots, envs] & stack_is_held(keep, ranks) & (ranks < state.size[None, :])
        lowest = jnp.argmax(ok, axis=0).astype(jnp.int32)
        t_lo = state.number[(oldest + lowest) % t_max, jnp.arange(self.n_envs)]
        count = jnp.where(ok.any(axis=0), jnp.maximum(state.count - (length - 1) - t_lo, 0), 0)
        return lowest, t_lo, count.astype(jnp.int32)

    def valid_starts(self, state: FrameStackReplayBufferState, length: int = 1) -> jax.Array:
        """``int32[N]``: per env, the transitions that can be drawn as the start of ``length``
        stored consecutive transitions (their stacks held)."""
        return self._bounds(state, length)[2]

    def _slot_of_rank(
        self, state: FrameStackReplayBufferState, envs: jax.Array, rank: jax.Array
    ) -> jax.Array:
        """The slot of the ``rank``-th oldest sampleable transition of each env in ``envs``."""
        _, t_lo, _ = self._bounds(state, 1)
        number = t_lo[envs] + rank.astype(jnp.int32)
        return state.slot_of[number % self.slots_per_env, envs]

    def gather(
        self,
        state: FrameStackReplayBufferState,
        slots: jax.Array,
        envs: jax.Array,
        length: int | None = None,
    ) -> Any:
        """Reads the transitions at ``(slots, envs)`` with their stacks rebuilt: leaves
        ``[B, ...]``; with ``length``, the ``length`` consecutive transitions of each env from
        there (skipping the final slots between episodes): leaves ``[B, length, ...]``."""
        if length is not None:
            numbers = state.number[slots, envs][:, None] + jnp.arange(length)
            envs = jnp.broadcast_to(envs[:, None], numbers.shape)
            slots = state.slot_of[numbers % self.slots_per_env, envs]
        observation, next_observation = self._stacks(state, slots, envs)
        data = jax.tree.map(lambda x: x[slots, envs], state.data)
        return data._replace(observation=observation, next_observation=next_observation)

    def _start_mask(self, state: FrameStackReplayBufferState, length: int) -> jax.Array:
        """``bool[T, N]``: slots holding a sampleable start of ``length`` transitions."""
        lowest, t_lo, count = self._bounds(state, length)
        rank = (jnp.arange(self.slots_per_env)[:, None] - self._oldest(state)[None, :]) % (
            self.slots_per_env
        )
        offset = state.number - t_lo[None, :]
        return (
            state.step
            & (rank >= lowest[None, :])
            & (rank < state.size[None, :])
            & (offset >= 0)
            & (offset < count[None, :])
        )

    def saved_example(self, saved: dict[str, Any], experience_type: type) -> Any:
        """The ``example`` :meth:`init` takes, rebuilt from a saved state dict.

        Raises:
            ValueError: if the saved state is another kind of buffer, or stores other fields or
                frames than this buffer would.
        """
        data = saved.get("data") or {}
        fields = set(experience_type._fields)
        if "frames" not in saved or set(data) != fields:
            kind = "frames once" if "frames" in saved else "whole observations"
            raise ValueError(
                f"the checkpoint's replay buffer stores {kind} with the fields {sorted(data)}; "
                f"this agent's stores frames once (update_cfg.frame_stack_replay) with "
                f"{sorted(fields)}."
            )
        frames = np.asarray(saved["frames"])
        frame_shape = frames.shape[2:]
        if self.axis > len(frame_shape):
            raise ValueError(
                f"the checkpoint's frames have shape {frame_shape}: no axis {self.axis} to stack "
                "them along."
            )
        obs_shape = frame_shape[: self.axis] + (self.n_frames,) + frame_shape[self.axis :]
        obs = jax.ShapeDtypeStruct((self.n_envs, *obs_shape), frames.dtype)
        return experience_type(
            **{
                k: obs
                if k in ("observation", "next_observation")
                else None
                if v is None
                else jax.ShapeDtypeStruct(np.shape(v)[1:], np.asarray(v).dtype)
                for k, v in data.items()
            }
        )


@struct.dataclass
class PrioritizedFrameStackReplayBuffer(PrioritizedSampling, FrameStackReplayBuffer):
    """Proportional prioritized replay of frame-stacked observations stored once.

    Sampling, importance weights and priority updates are those of
    :class:`~kitae.buffer.PrioritizedReplayBuffer` (see there and "Prioritized Experience
    Replay", Schaul et al., 2016), over the transition slots that :class:`FrameStackReplayBuffer`
    may sample; next-frame slots have priority 0.
    """

    alpha: float = struct.field(pytree_node=False, default=0.6)
    beta_start: float = struct.field(pytree_node=False, default=0.4)
    beta_steps: int = struct.field(pytree_node=False, default=1)
    eps: float = struct.field(pytree_node=False, default=1e-6)

    def init(self, example: Any) -> PrioritizedFrameStackReplayBufferState:
        base = super().init(example)
        return PrioritizedFrameStackReplayBufferState(
            **{name: getattr(base, name) for name in base.__dataclass_fields__},
            priorities=jnp.zeros((self.slots_per_env, self.n_envs), jnp.float32),
            max_priority=jnp.ones((), jnp.float32),
            updates=jnp.zeros((), jnp.int32),
        )

    def _after_write(
        self,
        old: PrioritizedFrameStackReplayBufferState,
        new: PrioritizedFrameStackReplayBufferState,
        plan: _WritePlan,
    ) -> PrioritizedFrameStackReplayBufferState:
        """New transitions get ``max_priority``; next-frame slots 0."""
        priorities = (
            new.priorities.at[plan.next_slots, plan.envs]
            .set(0.0, mode="drop")
            .at[plan.obs_slots, plan.envs]
            .set(new.max_priority, mode="drop")
        )
        return new.replace(priorities=priorities)


def make_frame_stack_replay_buffer(
    capacity: int,
    n_envs: int,
    n_frames: int,
    axis: int = 0,
    *,
    prioritized: bool = False,
    alpha: float = 0.6,
    beta_start: float = 0.4,
    beta_steps: int = 1,
    eps: float = 1e-6,
    check: bool = True,
) -> FrameStackReplayBuffer:
    """Builds a :class:`FrameStackReplayBuffer` of ``capacity`` slots over ``n_envs`` envs for
    observations stacking ``n_frames`` frames along their ``axis`` (or, with ``prioritized``, a
    :class:`PrioritizedFrameStackReplayBuffer`; the priority settings as in
    :func:`kitae.buffer.make_replay_buffer`, which validates them).

    Raises:
        ValueError: if ``n_frames < 1``, ``axis < 0``, or an env gets fewer than
            ``n_frames + 1`` slots (one stack and its next frame).
    """
    for name, value, minimum in (("n_frames", n_frames, 1), ("axis", axis, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name}={value!r} is invalid: it must be an integer >= {minimum}.")
    if capacity // n_envs < n_frames + 1:
        raise ValueError(
            f"update_cfg.max_buffer_size={capacity} gives {capacity // n_envs} slots per env for "
            f"{n_envs} envs; a frame-stack replay buffer needs at least n_frames + 1 = "
            f"{n_frames + 1} per env (one stack and its next frame): raise max_buffer_size."
        )
    common = {"capacity": capacity, "n_envs": n_envs, "n_frames": n_frames, "axis": axis}
    if not prioritized:
        return FrameStackReplayBuffer(**common, check=check)
    return PrioritizedFrameStackReplayBuffer(
        **common,
        check=check,
        alpha=alpha,
        beta_start=beta_start,
        beta_steps=beta_steps,
        eps=eps,
    )


def frame_stack_from_config(config: AlgoConfig) -> tuple[int, int] | None:
    """``(n_frames, axis)`` of the frame-stack replay an off-policy config asks for, or ``None``.

    ``update_cfg.frame_stack_replay`` decides: ``False`` never; ``True`` always, the frames
    stacked along ``update_cfg.frame_stack_axis`` (default 0) of the observation space; ``"auto"``
    (the default) when the observation space looks like a stack of images along that axis: a
    ``Box`` of an integer dtype (pixels) whose stacking axis has 2 to 16 entries, fewer than two
    other axes (height and width): gymnasium's ``FrameStackObservation`` over
    ``AtariPreprocessing`` gives ``(4, 84, 84)``, over RGB frames ``(4, H, W, 3)``; an RGB image
    ``(H, W, 3)`` is no stack along axis 0. The guess is checked as the buffer fills (see
    :func:`check_frame_stacks`): a channels-first image ``(3, H, W)`` would be refused there,
    with the fix (``frame_stack_replay=False``).

    Raises:
        ValueError: for an unknown setting, an axis outside the observation, or ``True`` with an
            observation space that is no stack, naming the field.
    """
    u = config.update_cfg
    setting = getattr(u, "frame_stack_replay", False)
    axis = getattr(u, "frame_stack_axis", 0)
    if not (setting is True or setting is False or setting == "auto"):
        raise ValueError(
            f"update_cfg.frame_stack_replay={setting!r} is invalid: use True, False or 'auto'."
        )
    if setting is False:
        return None
    space = config.env_cfg.observation_space
    shape = tuple(getattr(space, "shape", None) or ())
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"update_cfg.frame_stack_axis={axis!r} is invalid: it must be an int.")
    is_box = isinstance(space, gym.spaces.Box)
    if is_box and not -len(shape) <= axis < len(shape):
        raise ValueError(
            f"update_cfg.frame_stack_axis={axis} is outside the observations' shape {shape}."
        )
    axis = int(axis) % max(len(shape), 1)
    if setting == "auto":
        larger = [size for i, size in enumerate(shape) if i != axis and size > shape[axis]]
        looks_stacked = (
            is_box
            and np.issubdtype(space.dtype, np.integer)
            and 2 <= shape[axis] <= AUTO_MAX_FRAMES
            and len(larger) >= 2
        )
        return (shape[axis], axis) if looks_stacked else None
    if not is_box or not shape or shape[axis] < 2:
        raise ValueError(
            f"update_cfg.frame_stack_replay=True needs Box observations stacking at least 2 "
            f"frames along update_cfg.frame_stack_axis={axis}; env_cfg.observation_space is "
            f"{space}. Set frame_stack_replay=False."
        )
    return shape[axis], axis


def check_frame_stacks(state: Any) -> None:
    """Raises when a frame-stack replay buffer has been given transitions it does not rebuild
    exactly (a no-op for other buffer states); the loops call it as the buffer fills.

    Raises:
        ValueError: naming ``update_cfg.frame_stack_replay`` and the fix.
    """
    mismatches = getattr(state, "mismatches", None)
    if mismatches is None:
        return
    count = int(np.sum(jax.device_get(mismatches)))
    if count:
        raise ValueError(
            f"update_cfg.frame_stack_replay: {count} stored transitions have observations that "
            "the frame-stack replay buffer cannot rebuild from one frame per step (the older "
            "frames of each observation must be the newest frames of the previous steps of its "
            "episode, padded with zeros or with the episode's first frame before it; the newest "
            "frame last along update_cfg.frame_stack_axis): sampled batches would differ from "
            "what the agent observed. Set update_cfg.frame_stack_replay=False, or the "
            "frame_stack_axis the env stacks along."
        )


__all__ = [
    "FRAME_STACK_SETTINGS",
    "FrameStackReplayBuffer",
    "FrameStackReplayBufferState",
    "PrioritizedFrameStackReplayBuffer",
    "PrioritizedFrameStackReplayBufferState",
    "check_frame_stacks",
    "frame_stack_from_config",
    "make_frame_stack_replay_buffer",
]
