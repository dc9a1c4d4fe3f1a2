"""A single-stream replay memory of ``(s, a, r, done)`` steps with frame stacking at read time.

A model adds one step at a time (``add(obs, action, reward, done)``) and reads minibatches of
stacked states (``sample``) or the stack to act on now (``current_state``). Frames are stored
once, so stacking ``n_frames`` costs no extra memory; stacks are assembled, vectorised, from the
ring at read time.

Conventions:

* Every added step has a global time index ``t`` (0 for the first step ever added). The ring
  holds the ``capacity`` most recent steps, ``t`` in ``[T - len(memory), T)``, where ``T`` is the
  number of steps added so far (the write pointer, :attr:`FrameStackMemory.n_added`).
* Row ``t`` is ``(s_t, a_t, r_t, done_t)``: ``done_t`` means the episode *terminated* after this
  step (do not bootstrap). An episode also ends, without termination (a time limit, the end of
  an epoch), when :meth:`FrameStackMemory.new_episode` is called; the next step starts a new
  episode either way.
* The state of step ``t`` is the ``n_frames`` observations ``s_{t-n+1} .. s_t``, oldest first,
  flattened to ``n_frames * prod(obs_shape)``. Frames before the first step of ``t``'s episode
  are **zeros**, never observations of an earlier episode (the convention of DQN Zoo and
  Dopamine), so the stack a model acts on at the start of an episode is exactly the stack it
  is later trained on. A naive ring buffer that only skips slots at episode starts leaks stale
  frames of old episodes into these stacks once it has wrapped around.
* The next state of step ``t`` is the state of step ``t + 1`` when that step belongs to the same
  episode. After a termination it is the state of ``t`` shifted by one with a zero frame on top
  (it is never bootstrapped from, ``done = 1``).

Sorrel's replay buffer API is accepted beside kitae's: :attr:`FrameStackMemory.idx` (the write
position), :attr:`FrameStackMemory.size` (steps held), :meth:`FrameStackMemory.add_empty` (an
episode boundary) and :meth:`FrameStackMemory.current_state` without an argument (the previous
``n_frames - 1`` frames, to stack with a new observation). ``valid_rule="episode_boundary"``
gives Sorrel's ``valid`` mask instead of kitae's (see :meth:`FrameStackMemory.gather`).

Which frames a stack shows and whether they are all still held are decided by
:mod:`kitae.frame_stack`, the rules the agents' frame-stack replay buffer
(:class:`kitae.frame_replay.FrameStackReplayBuffer`) follows too: every slot records whether it
starts an episode, and a stack keeps the frames after the last episode start in its window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kitae.config import check_int
from kitae.frame_stack import in_episode, padding_sources, stack_is_held


class MemoryBatch(NamedTuple):
    """A minibatch of stacked transitions; ``F = n_frames * prod(obs_shape)``.

    Attributes:
        states: ``float32[B, F]`` stacked states ``s_t``.
        actions: ``int64[B]`` actions ``a_t``.
        rewards: ``float32[B]`` rewards ``r_t``.
        next_states: ``float32[B, F]`` stacked next states ``s_{t+1}``.
        dones: ``float32[B]``, 1 where the episode terminated after step ``t``.
        valid: ``float32[B]``, 1 where the sample is a transition a loss may use (see
            :meth:`FrameStackMemory.gather`), 0 where it must be masked out.
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    dones: np.ndarray
    valid: np.ndarray


VALID_RULES = ("transition", "episode_boundary")
"""The rules :meth:`FrameStackMemory.gather` can compute ``valid`` with."""


class FrameStackMemory:
    """A numpy ring buffer of single steps that stacks ``n_frames`` frames when read.

    Args:
        capacity: number of steps (frames) held; the oldest are overwritten.
        obs_shape: shape of one observation.
        n_frames: frames per stacked state (1: no stacking).
        mask_partial_stacks: also mark ``valid = 0`` the samples whose ``n_frames`` stack reaches
            before the start of their episode (zero-padded stacks). By default these are valid,
            since the model acts on the same zero-padded stacks at the start of an episode.
        seed: seed of the generator :meth:`sample` uses when none is given.
        valid_rule: which samples are ``valid`` (see :meth:`gather`): ``"transition"`` (kitae's
            default: the sample is a transition of one episode) or ``"episode_boundary"``
            (Sorrel's: the sample's frame stack does not cross an episode boundary, no ``done``
            among its earlier frames).

    Raises:
        ValueError: if ``capacity < n_frames + 1``, ``n_frames < 1`` or ``valid_rule`` is
            unknown.

    Example::

        memory = FrameStackMemory(1024, obs_shape=(4,), n_frames=2)
        state = memory.current_state(obs)  # [8]: the previous frame and obs
        previous = memory.current_state()  # [1, 4]: the previous frame (Sorrel's form)
        memory.add(obs, action, reward, done)
        states, actions, rewards, next_states, dones, valid = memory.sample(32)
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...] | int,
        n_frames: int = 1,
        *,
        mask_partial_stacks: bool = False,
        seed: int | None = None,
        valid_rule: str = "transition",
    ):
        check_int("n_frames", n_frames, 1)
        if valid_rule not in VALID_RULES:
            raise ValueError(
                f"valid_rule={valid_rule!r} is invalid: use one of {', '.join(VALID_RULES)}."
            )
        self.valid_rule = valid_rule
        check_int("capacity", capacity, n_frames + 1)
        self.capacity = int(capacity)
        self.obs_shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        self.n_frames = int(n_frames)
        self.mask_partial_stacks = bool(mask_partial_stacks)
        self.rng = np.random.default_rng(seed)
        self.frame_size = int(np.prod(self.obs_shape, dtype=np.int64))
        self.states = np.zeros((self.capacity, *self.obs_shape), np.float32)
        self.actions = np.zeros(self.capacity, np.int64)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.dones = np.zeros(self.capacity, bool)
        self.first = np.zeros(self.capacity, bool)  # the slot's step starts an episode
        self.n_added = 0
        self._new_episode = True

    # ---- writing ------------------------------------------------------------------------
    def add(self, obs: np.ndarray, action: int, reward: float, done: bool) -> None:
        """Stores one step ``(s_t, a_t, r_t, done_t)`` at the write pointer.

        Args:
            obs: the observation ``s_t`` the action was chosen on, shape ``obs_shape``.
            action: ``a_t``.
            reward: ``r_t``.
            done: the episode terminated after this step; the next step starts a new episode.

        Raises:
            ValueError: if ``obs`` does not have ``prod(obs_shape)`` elements.
        """
        obs = np.asarray(obs, np.float32)
        if obs.size != self.frame_size:
            raise ValueError(
                f"obs has shape {obs.shape}, but the memory stores observations of shape "
                f"{self.obs_shape}."
            )
        slot = self.n_added % self.capacity
        self.states[slot] = obs.reshape(self.obs_shape)
        self.actions[slot] = int(action)
        self.rewards[slot] = float(reward)
        self.dones[slot] = bool(done)
        self.first[slot] = self._new_episode
        self.n_added += 1
        self._new_episode = bool(done)

    def new_episode(self) -> None:
        """Ends the current episode without termination: the next step starts a new one.

        Call it at the start of every episode (or epoch) when episodes can end without
        ``done`` (time limits); it is harmless after a terminal step. The last step of an
        episode ended this way has no stored next state, so its samples are ``valid = 0``.
        """
        self._new_episode = True

    def add_empty(self) -> None:
        """Sorrel's name for an episode boundary: the same as :meth:`new_episode`.

        Sorrel's buffer advances its write position by ``n_frames - 1`` slots, whose frames
        (zeros, or stale frames once the ring has wrapped) pad the next episode's first stacks.
        Here no slot is used: :attr:`idx` and :attr:`size` do not move, and the next episode's
        first stacks are padded with zeros when they are read, never with stale frames.
        """
        self.new_episode()

    def clear(self) -> None:
        """Forgets every stored step (the arrays are kept)."""
        self.n_added = 0
        self._new_episode = True

    def __len__(self) -> int:
        """Number of steps (frames) held: ``min(n_added, capacity)``."""
        return min(self.n_added, self.capacity)

    @property
    def idx(self) -> int:
        """The write position: the slot the next :meth:`add` writes, ``n_added % capacity``."""
        return self.n_added % self.capacity

    @property
    def size(self) -> int:
        """Number of steps held (Sorrel's name for ``len(memory)``)."""
        return len(self)

    # ---- reading ------------------------------------------------------------------------
    @property
    def oldest(self) -> int:
        """Global time of the oldest step still held."""
        return self.n_added - len(self)

    def current_state(self, obs: np.ndarray | None = None) -> np.ndarray:
        """The stack to act on now.

        With ``obs``, kitae's form: the previous ``n_frames - 1`` frames of the current episode
        (zeros before its start, all zeros at its first step) with ``obs`` on top, flattened.
        Without, Sorrel's form: those previous frames alone, one per row, to be stacked with the
        new observation by the caller (``np.concatenate([memory.current_state(), obs[None]])``).

        Args:
            obs: the newest observation, shape ``obs_shape`` (not stored by this call), or
                ``None``.

        Returns:
            ``float32[n_frames * prod(obs_shape)]`` with ``obs``;
            ``float32[n_frames - 1, *obs_shape]`` without (no rows when ``n_frames == 1``).

        Raises:
            ValueError: if ``obs`` does not have ``prod(obs_shape)`` elements.
        """
        if obs is None:
            previous = self._stack(np.zeros(self.frame_size, np.float32))[:-1]
            return previous.reshape(self.n_frames - 1, *self.obs_shape)
        obs = np.asarray(obs, np.float32).reshape(-1)
        if obs.size != self.frame_size:
            raise ValueError(
                f"obs has shape {obs.shape}, but the memory stores observations of shape "
                f"{self.obs_shape}."
            )
        return self._stack(obs).reshape(-1)

    def _stack(self, obs: np.ndarray) -> np.ndarray:
        """``float32[n_frames, frame_size]``: the current episode's previous frames, ``obs`` on
        top."""
        n = self.n_frames
        frames = np.zeros((n, self.frame_size), np.float32)
        frames[-1] = obs
        if n > 1 and not self._new_episode:
            times = np.arange(self.n_added - n + 1, self.n_added + 1)  # obs continues the episode
            first = np.append(self.first[times[:-1] % self.capacity], False)
            keep = in_episode(first)[:-1]
            held = self.states[times[:-1][keep] % self.capacity]
            frames[:-1][keep] = held.reshape(-1, self.frame_size)
        return frames

    def _sampleable(self, times: np.ndarray) -> np.ndarray:
        """Which global ``times`` (all held) can be sampled: their stacked frames are still held
        and their next step is written, or they terminated their episode."""
        keep = in_episode(self.first[self._window(times) % self.capacity])
        frames_held = stack_is_held(keep, times - self.oldest)
        next_known = (times + 1 < self.n_added) | self.dones[times % self.capacity]
        return frames_held & next_known

    def _window(self, times: np.ndarray) -> np.ndarray:
        """``int64[B, n_frames]``: the global times of the stacks of ``times``, oldest first."""
        return times[:, None] + np.arange(-self.n_frames + 1, 1)[None, :]

    def _layout(self) -> tuple[np.ndarray, int, int]:
        """Sampleable times as ``(edge_times, body_start, body_size)``: every time in
        ``[body_start, body_start + body_size)`` is sampleable, plus the few ``edge_times``
        (the ``n_frames - 1`` oldest steps and the newest, checked one by one)."""
        if self.n_added == 0:
            return np.zeros(0, np.int64), 0, 0
        oldest, newest = self.oldest, self.n_added - 1
        body_start = min(oldest + self.n_frames - 1, newest)
        edges = np.unique(np.concatenate([np.arange(oldest, body_start), [newest]]))
        edges = edges[self._sampleable(edges)]
        return edges, body_start, newest - body_start

    def sampleable_times(self) -> np.ndarray:
        """``int64[K]`` global times of the steps :meth:`sample` draws from, ascending."""
        edges, body_start, body_size = self._layout()
        body = np.arange(body_start, body_start + body_size)
        return np.sort(np.concatenate([edges, body]))

    def n_transitions(self) -> int:
        """Number of steps :meth:`sample` draws from (``K``)."""
        edges, _, body_size = self._layout()
        return len(edges) + body_size

    def gather(self, times: np.ndarray) -> MemoryBatch:
        """The stacked transitions of the given global times (all sampleable).

        ``valid`` follows :attr:`valid_rule`:

        * ``"transition"`` (default): 1 when the sample is a transition of one episode, the step
          terminated its episode or its next step belongs to the same episode. It is 0 for the
          last step of an episode ended by :meth:`new_episode` without ``done`` (its next
          observation was never stored, the next stored frame belongs to another episode).
          Stacks that reach before their episode's start are valid: they are zero-padded, as
          the stacks the model acted on.
        * ``"episode_boundary"`` (Sorrel's mask): 0 when the sample's frame stack crosses an
          episode boundary, a ``done`` among the stack's ``n_frames - 1`` earlier steps (steps
          the ring no longer holds count as not done); 1 otherwise, the last step of an episode
          ended without ``done`` included (its next state then has a zero frame on top, where
          Sorrel's would show its padding frame).

        With ``mask_partial_stacks``, the first ``n_frames - 1`` steps of every episode are also
        0, under either rule.

        Args:
            times: ``int[B]`` global times from :meth:`sampleable_times`.

        Returns:
            A :class:`MemoryBatch`.
        """
        times = np.asarray(times, np.int64).reshape(-1)
        cap = self.capacity
        slots = times % cap
        dones = self.dones[slots]
        next_same_episode = (times + 1 < self.n_added) & ~dones & ~self.first[(times + 1) % cap]
        frame_times = self._window(times)  # [B, n]
        keep = in_episode(self.first[frame_times % cap])
        states = self._frames(frame_times, keep)
        # The next stack keeps the frames of the step's episode, and the next frame if it is one.
        next_keep = np.concatenate([keep[:, 1:], next_same_episode[:, None]], axis=1)
        next_states = self._frames(frame_times + 1, next_keep)
        if self.valid_rule == "episode_boundary":
            earlier = frame_times[:, :-1]
            held = earlier >= self.oldest
            valid = ~np.any(self.dones[earlier % cap] & held, axis=1)
        else:
            valid = dones | next_same_episode
        if self.mask_partial_stacks:
            valid &= keep.all(axis=1)
        return MemoryBatch(
            states,
            self.actions[slots].copy(),
            self.rewards[slots].copy(),
            next_states,
            dones.astype(np.float32),
            valid.astype(np.float32),
        )

    def _frames(self, frame_times: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """``float32[B, n * frame_size]``: the frames at ``frame_times [B, n]``, padded with
        zeros where not ``keep``."""
        source, shown = padding_sources(keep, np.zeros_like(keep))
        times = np.take_along_axis(frame_times, source, axis=-1)
        frames = self.states[times % self.capacity].reshape(*frame_times.shape, -1)
        frames = np.where(shown[..., None], frames, np.float32(0.0))
        return frames.reshape(frame_times.shape[0], -1)

    def sample_times(
        self, batch_size: int, rng: np.random.Generator | None = None, replace: bool = True
    ) -> np.ndarray:
        """``int64[batch_size]`` global times drawn uniformly from :meth:`sampleable_times`.

        Raises:
            ValueError: if nothing can be sampled yet, or if ``replace=False`` and
                ``batch_size`` exceeds :meth:`n_transitions`.
        """
        check_int("batch_size", batch_size, 1)
        rng = self.rng if rng is None else rng
        edges, body_start, body_size = self._layout()
        count = len(edges) + body_size
        if count == 0:
            raise ValueError(
                "the memory holds no complete transition yet: add steps until a step's next "
                "observation (or its termination) is stored."
            )
        if replace:
            draws = rng.integers(0, count, batch_size)
        elif batch_size > count:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {count} transitions the memory can sample; "
                "sample with replace=True or add more steps."
            )
        else:
            draws = rng.choice(count, batch_size, replace=False)
        n_edges = len(edges)
        body = body_start + (draws - n_edges)
        if n_edges == 0:
            return body.astype(np.int64)
        return np.where(draws < n_edges, edges[np.minimum(draws, n_edges - 1)], body)

    def sample(
        self, batch_size: int, rng: np.random.Generator | None = None, replace: bool = True
    ) -> MemoryBatch:
        """A minibatch drawn uniformly, **with replacement** by default, from the sampleable
        steps (see :meth:`gather` for their contents and the meaning of ``valid``).

        Sampling is relative to the write pointer: every held step whose stacked frames are
        still held and whose next observation is stored (or which terminated its episode) can
        be drawn, the newest included once its successor arrives. With replacement a batch may
        be larger than what is stored.

        Args:
            batch_size: ``B``.
            rng: numpy generator (defaults to the memory's own, seeded at construction).
            replace: sample with replacement; ``False`` raises when ``B`` exceeds the number of
                sampleable steps.

        Returns:
            ``(states [B, F], actions [B], rewards [B], next_states [B, F], dones [B],
            valid [B])``, a :class:`MemoryBatch`.

        Raises:
            ValueError: see :meth:`sample_times`.
        """
        return self.gather(self.sample_times(batch_size, rng, replace))
