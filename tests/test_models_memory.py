"""FrameStackMemory: property tests against a plain reference, and hand-checked boundaries.

The reference keeps the whole history in Python lists and computes every stack frame by frame;
the memory must agree with it on which steps can be sampled, on every sampled row (states,
next states, actions, rewards, dones, valid) and on the stack to act on, for any sequence of
steps, terminations and episode restarts, before and after the ring wraps around.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitae.models.memory import FrameStackMemory

OBS_SHAPE = (2,)


def frame(t: int) -> np.ndarray:
    """The observation of global step ``t``: unique and never zero."""
    return np.array([t + 1, -(t + 1)], np.float32)


class Reference:
    """The whole history in lists; stacks built one frame at a time."""

    def __init__(
        self,
        capacity: int,
        n_frames: int,
        mask_partial_stacks: bool = False,
        valid_rule: str = "transition",
    ):
        self.capacity, self.n = capacity, n_frames
        self.mask_partial_stacks = mask_partial_stacks
        self.valid_rule = valid_rule
        self.episode: list[int] = []
        self.done: list[bool] = []
        self.reward: list[float] = []
        self.current_episode = 0
        self.pending = True

    def add(self, done: bool, reward: float) -> None:
        if self.pending and self.episode:
            self.current_episode += 1
        self.pending = False
        self.episode.append(self.current_episode)
        self.done.append(done)
        self.reward.append(reward)
        if done:
            self.pending = True

    def new_episode(self) -> None:
        self.pending = True

    @property
    def n_added(self) -> int:
        return len(self.episode)

    def oldest(self) -> int:
        return max(0, self.n_added - self.capacity)

    def stack(self, times: range, episode: int) -> np.ndarray:
        frames = [
            frame(u) if 0 <= u < self.n_added and self.episode[u] == episode else np.zeros(2)
            for u in times
        ]
        return np.concatenate([np.zeros(0), *frames]).astype(np.float32)

    def state(self, t: int) -> np.ndarray:
        return self.stack(range(t - self.n + 1, t + 1), self.episode[t])

    def next_state(self, t: int) -> np.ndarray:
        return self.stack(range(t - self.n + 2, t + 2), self.episode[t])

    def valid(self, t: int) -> bool:
        if self.valid_rule == "episode_boundary":  # no held done among the stack's earlier steps
            earlier = range(max(self.oldest(), t - self.n + 1), t)
            ok = not any(self.done[u] for u in earlier)
        else:
            ok = self.done[t] or (t + 1 < self.n_added and self.episode[t + 1] == self.episode[t])
        if self.mask_partial_stacks:
            first = self.episode.index(self.episode[t])
            ok = ok and t - first >= self.n - 1
        return ok

    def sampleable(self) -> list[int]:
        out = []
        for t in range(self.oldest(), self.n_added):
            needed = [
                u
                for u in range(t - self.n + 1, t + 1)
                if u >= 0 and self.episode[u] == self.episode[t]
            ]
            held = all(u >= self.oldest() for u in needed)
            next_known = t + 1 < self.n_added or self.done[t]
            if held and next_known:
                out.append(t)
        return out

    def current_state(self, obs: np.ndarray) -> np.ndarray:
        prev = range(self.n_added - self.n + 1, self.n_added)
        if self.pending:
            frames = np.zeros(2 * (self.n - 1), np.float32)
        else:
            frames = self.stack(prev, self.current_episode)
        return np.concatenate([frames, obs]).astype(np.float32)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.booleans()),
        st.tuples(st.just("add"), st.just(False)),
        st.tuples(st.just("new_episode"), st.just(False)),
        st.tuples(st.just("add_empty"), st.just(False)),  # Sorrel's name of new_episode
    ),
    max_size=70,
)


def play(
    ops,
    capacity: int,
    n_frames: int,
    mask_partial_stacks: bool = False,
    valid_rule: str = "transition",
):
    memory = FrameStackMemory(
        capacity,
        OBS_SHAPE,
        n_frames,
        mask_partial_stacks=mask_partial_stacks,
        seed=0,
        valid_rule=valid_rule,
    )
    reference = Reference(capacity, n_frames, mask_partial_stacks, valid_rule)
    for op, done in ops:
        if op == "add":
            t = memory.n_added
            memory.add(frame(t), action=t, reward=0.5 * t, done=done)
            reference.add(done, 0.5 * t)
        elif op == "add_empty":
            memory.add_empty()
            reference.new_episode()
        else:
            memory.new_episode()
            reference.new_episode()
    return memory, reference


def assert_rows_match(memory: FrameStackMemory, reference: Reference, batch) -> None:
    for i, t in enumerate(batch.actions):  # the action stored at step t is t
        t = int(t)
        np.testing.assert_array_equal(batch.states[i], reference.state(t))
        np.testing.assert_array_equal(batch.next_states[i], reference.next_state(t))
        assert batch.rewards[i] == np.float32(0.5 * t)
        assert batch.dones[i] == float(reference.done[t])
        assert batch.valid[i] == float(reference.valid(t)), t


@settings(max_examples=300, deadline=None)
@given(
    ops=OPS,
    n_frames=st.integers(1, 4),
    extra=st.integers(1, 8),
    mask_partial_stacks=st.booleans(),
    valid_rule=st.sampled_from(["transition", "episode_boundary"]),
)
def test_memory_matches_reference(ops, n_frames, extra, mask_partial_stacks, valid_rule):
    capacity = n_frames + extra
    memory, reference = play(ops, capacity, n_frames, mask_partial_stacks, valid_rule)
    assert len(memory) == min(reference.n_added, capacity)
    expected = reference.sampleable()
    np.testing.assert_array_equal(memory.sampleable_times(), expected)
    assert memory.n_transitions() == len(expected)
    obs = np.array([-7.0, 7.0], np.float32)
    np.testing.assert_array_equal(memory.current_state(obs), reference.current_state(obs))
    previous = reference.current_state(obs)[:-2].reshape(n_frames - 1, *OBS_SHAPE)
    np.testing.assert_array_equal(memory.current_state(), previous)  # Sorrel's form
    assert (memory.idx, memory.size) == (reference.n_added % capacity, len(memory))
    if not expected:
        with pytest.raises(ValueError, match="no complete transition"):
            memory.sample(4)
        return
    batch = memory.gather(np.array(expected))
    np.testing.assert_array_equal(batch.actions, expected)
    assert_rows_match(memory, reference, batch)
    # Sampling with replacement: batches larger than the memory, only sampleable rows.
    batch = memory.sample(3 * capacity)
    assert batch.states.shape == (3 * capacity, n_frames * 2)
    assert set(batch.actions.tolist()) <= set(expected)
    assert_rows_match(memory, reference, batch)
    # Without replacement: every sampleable step exactly once, larger batches refused.
    batch = memory.sample(len(expected), replace=False)
    assert sorted(batch.actions.tolist()) == expected
    with pytest.raises(ValueError, match="exceeds"):
        memory.sample(len(expected) + 1, replace=False)


def fill(memory: FrameStackMemory, episode_lengths, terminate: bool) -> None:
    for length in episode_lengths:
        memory.new_episode()
        for step in range(length):
            t = memory.n_added
            memory.add(frame(t), t, 0.0, terminate and step == length - 1)


def test_first_stacks_of_an_episode_are_zero_padded_after_wraparound():
    memory = FrameStackMemory(6, OBS_SHAPE, n_frames=3)
    fill(memory, [4, 4, 4], terminate=True)  # 12 steps in a ring of 6: wrapped twice
    batch = memory.gather(np.array([8, 9]))  # first two steps of the third episode
    zero = np.zeros(2, np.float32)
    np.testing.assert_array_equal(batch.states[0], np.concatenate([zero, zero, frame(8)]))
    np.testing.assert_array_equal(batch.states[1], np.concatenate([zero, frame(8), frame(9)]))
    assert batch.valid.tolist() == [1.0, 1.0]
    # the stack to act on at the start of a new episode holds no old frame
    memory.new_episode()
    np.testing.assert_array_equal(
        memory.current_state(frame(12)), np.concatenate([zero, zero, frame(12)])
    )


def test_terminal_next_state_has_a_zero_frame_on_top():
    memory = FrameStackMemory(10, OBS_SHAPE, n_frames=2)
    fill(memory, [3, 2], terminate=True)
    batch = memory.gather(np.array([2]))  # terminal step of episode 1; step 3 is episode 2
    np.testing.assert_array_equal(batch.next_states[0], np.concatenate([frame(2), np.zeros(2)]))
    assert batch.dones[0] == 1.0 and batch.valid[0] == 1.0


def test_truncated_episode_end_is_invalid():
    memory = FrameStackMemory(10, OBS_SHAPE, n_frames=2)
    fill(memory, [3, 3], terminate=False)  # episodes ended by new_episode (a time limit)
    batch = memory.gather(memory.sampleable_times())
    assert batch.actions.tolist() == [0, 1, 2, 3, 4]  # the newest step (5) waits for its next
    assert batch.valid.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert batch.dones.tolist() == [0.0] * 5


def test_newest_step_is_sampled_once_its_successor_or_termination_is_stored():
    memory = FrameStackMemory(4, OBS_SHAPE)
    memory.add(frame(0), 0, 0.0, False)
    assert memory.n_transitions() == 0
    with pytest.raises(ValueError, match="no complete transition"):
        memory.sample(1)
    memory.add(frame(1), 1, 0.0, True)
    assert memory.sampleable_times().tolist() == [0, 1]


def test_sampling_is_relative_to_the_write_pointer():
    memory = FrameStackMemory(5, OBS_SHAPE, n_frames=2)
    fill(memory, [13], terminate=False)  # steps 8..12 are held, write pointer at slot 3
    # 8 lost its previous frame (7) to the ring, 12 has no successor yet
    assert memory.sampleable_times().tolist() == [9, 10, 11]
    counts = np.bincount(memory.sample(30_000).actions, minlength=13)[9:12]
    np.testing.assert_allclose(counts / 30_000, 1 / 3, atol=0.02)


def test_mask_partial_stacks_marks_padded_samples_invalid():
    memory = FrameStackMemory(20, OBS_SHAPE, n_frames=3, mask_partial_stacks=True)
    fill(memory, [5], terminate=True)
    assert memory.gather(memory.sampleable_times()).valid.tolist() == [0, 0, 1, 1, 1]


def test_sample_is_vectorised_and_reproducible():
    a = FrameStackMemory(100_000, (8,), n_frames=4, seed=3)
    b = FrameStackMemory(100_000, (8,), n_frames=4, seed=3)
    for memory in (a, b):
        memory.states[:] = np.arange(100_000)[:, None]
        memory.n_added = 150_000  # a full, wrapped ring of one long episode
        memory._new_episode = False
    batch_a, batch_b = a.sample(4096), b.sample(4096)
    np.testing.assert_array_equal(batch_a.states, batch_b.states)
    assert batch_a.states.shape == (4096, 32)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"capacity": 3, "obs_shape": 2, "n_frames": 3}, "capacity"),
        ({"capacity": 3, "obs_shape": 2, "n_frames": 0}, "n_frames"),
    ],
    ids=["capacity-below-n_frames-plus-one", "n_frames-zero"],
)
def test_invalid_memory_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FrameStackMemory(**kwargs)


def test_add_rejects_wrong_observation_size():
    memory = FrameStackMemory(4, (3,))
    with pytest.raises(ValueError, match="shape"):
        memory.add(np.zeros(4), 0, 0.0, False)


def test_clear_forgets_everything():
    memory = FrameStackMemory(4, OBS_SHAPE, n_frames=2)
    fill(memory, [3], terminate=True)
    memory.clear()
    assert len(memory) == 0 and memory.n_transitions() == 0
    np.testing.assert_array_equal(
        memory.current_state(frame(0)), np.concatenate([[0, 0], frame(0)])
    )
