"""Frame stacks rebuilt from frames stored once: the episode-boundary rules, written once.

Memories that store one frame per step rebuild the stack of ``n`` frames a step was observed
with from the frames of the slots before it: the agents' replay buffer
(:class:`kitae.frame_replay.FrameStackReplayBuffer`, in JAX) and the models' memory
(:class:`kitae.models.memory.FrameStackMemory`, in numpy). Both decide with the functions below
which stored frames belong to a stack and whether they are all still stored; ``xp`` is the array
module (``numpy`` or ``jax.numpy``), and every function works on any leading batch shape.

Conventions:

* A *window* is ``W`` consecutive slots of one stream (one env), oldest first, ending at the slot
  whose stack is built (the newest, position ``W - 1``).
* ``first[..., W]`` flags the slots that hold the first frame of an episode, the frame where
  stacks start anew (a stream may instead let an episode continue the previous one's frames, as
  a game goes on after a lost life: its first slot is then not flagged).
* A frame belongs to the stack when no episode starts after it within the window; the stack
  never shows a frame of an earlier episode. Frames before the episode's first frame are
  *padding*: zeros (DQN Zoo, Dopamine, gymnasium's ``padding_type="zero"``) or copies of the
  episode's first frame (gymnasium's default ``padding_type="reset"``), as the stream records
  for that episode.
* A stack is *held* while all its frames are stored: the rank of its newest slot (0 for the
  oldest slot the ring still holds) is at least its number of frames minus one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def in_episode(first: Any, xp: ModuleType = np) -> Any:
    """Which slots of a window hold frames of the newest slot's episode.

    Args:
        first: ``bool[..., W]``, the slots that start an episode (oldest first).
        xp: the array module.

    Returns:
        ``bool[..., W]``: True where no episode starts later in the window (a suffix of the
        window; the newest position is always True).
    """
    starts = first.astype(xp.int32)
    starts_from = xp.flip(xp.cumsum(xp.flip(starts, -1), -1), -1)  # starts at positions >= i
    return starts_from == starts


def stack_is_held(keep: Any, rank: Any) -> Any:
    """Whether every frame a stack keeps is still stored.

    The stack reaches ``keep.sum() - 1`` slots behind its newest one, which must not lie before
    the oldest slot held. The flags read at overwritten positions (ranks below 0, which hold
    newer data) cannot make a stack look held: a start flag read there is at a position after
    every held one, so it keeps that overwritten position in the stack and fails the test.

    Args:
        keep: ``bool[..., W]`` from :func:`in_episode`.
        rank: ``int[...]``, the rank of the window's newest slot (0 = oldest held).

    Returns:
        ``bool[...]``.
    """
    return rank >= keep.sum(-1) - 1


def padding_sources(keep: Any, pad_first: Any, xp: ModuleType = np) -> tuple[Any, Any]:
    """Where each position of a stack takes its frame from, with its padding.

    Args:
        keep: ``bool[..., W]``, the frames of the stack: a suffix of the window, as
            :func:`in_episode` gives (possibly without its newest position).
        pad_first: ``bool[..., W]``, per slot: its episode pads with its first frame rather than
            with zeros (read at the episode's first slot, when it lies in the window).
        xp: the array module.

    Returns:
        ``(source, shown)``: ``int32[..., W]`` window positions to read each frame from (the
        position itself when kept, the episode's first frame otherwise) and ``bool[..., W]``,
        False where the frame is a zero.
    """
    width = keep.shape[-1]
    # The episode's first frame when it is in the window (the last position when none is kept).
    oldest = xp.minimum(width - keep.sum(-1).astype(xp.int32), width - 1)
    pads_with_first = xp.take_along_axis(pad_first, oldest[..., None], axis=-1)
    positions = xp.arange(width, dtype=xp.int32)
    source = xp.where(keep, positions, oldest[..., None])
    return source, keep | pads_with_first


__all__ = ["in_episode", "padding_sources", "stack_is_held"]
