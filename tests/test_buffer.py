"""Tests for kitae.buffer: Experience, ReplayBuffer (make_replay_buffer) and RolloutBuffer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.buffer import (
    Experience,
    ReplayBufferState,
    RolloutBuffer,
    make_replay_buffer,
    sample_proportional,
)

OBS_DIM = 2


def vector_step(step: int, n_envs: int) -> Experience:
    """One vector step whose transitions carry the unique id ``reward = step * 10 + env``."""
    ids = np.arange(n_envs, dtype=np.float32) + 10.0 * step
    return Experience(
        observation=np.stack([ids, -ids], axis=-1),
        action=np.full((n_envs,), step, np.int32),
        reward=ids,
        done=(np.arange(n_envs) + step) % 2 == 0,
        next_observation=np.stack([ids + 0.5, -ids - 0.5], axis=-1),
    )


def stacked_steps(steps, n_envs: int) -> Experience:
    """Vector steps ``steps`` stacked along a leading axis: leaves ``[K, N, ...]``."""
    return jax.tree.map(lambda *xs: np.stack(xs), *[vector_step(s, n_envs) for s in steps])


# Jitted entry points (the buffer is static: it only holds sizes) keep the tests fast: eager
# calls would compile every primitive separately.
jit_add = jax.jit(lambda buffer, *args: buffer.add(*args), static_argnums=0)
jit_add_batch = jax.jit(lambda buffer, *args: buffer.add_batch(*args), static_argnums=0)
jit_sample = jax.jit(
    lambda buffer, state, key, batch_size: buffer.sample(state, key, batch_size),
    static_argnums=(0, 3),
)


def fill(buffer, n_steps: int, valid=None) -> ReplayBufferState:
    """Adds vector steps ``0 .. n_steps - 1`` one at a time; ``valid[step]`` is that step's mask."""
    state = buffer.init(vector_step(0, buffer.n_envs))
    if valid is None:
        valid = np.ones((n_steps, buffer.n_envs), bool)
    for step in range(n_steps):
        state = jit_add(buffer, state, vector_step(step, buffer.n_envs), valid[step])
    return state


def expected_ids(n_steps: int, n_envs: int, slots: int, valid=None) -> list[list[float]]:
    """Per env, the ids a ring of ``slots`` slots must hold: the last ``slots`` valid ones."""
    valid = np.ones((n_steps, n_envs), bool) if valid is None else np.asarray(valid)
    out = []
    for env in range(n_envs):
        written = [step * 10.0 + env for step in range(n_steps) if valid[step, env]]
        out.append(written[-slots:])
    return out


# ---- ReplayBuffer: layout and writes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "n_envs", "slots"),
    [(12, 3, 4), (10, 3, 3), (5, 1, 5), (4, 4, 1)],
    ids=["divisible", "capacity-not-multiple-of-envs", "single-env", "one-slot-per-env"],
)
def test_replay_init_allocates_time_major_zeroed_storage(capacity, n_envs, slots):
    buffer = make_replay_buffer(capacity, n_envs)
    assert buffer.slots_per_env == slots

    state = buffer.init(vector_step(3, n_envs))

    assert state.data.observation.shape == (slots, n_envs, OBS_DIM)
    assert state.data.reward.shape == (slots, n_envs)
    assert state.data.action.shape == (slots, n_envs)
    assert state.data.action.dtype == jnp.int32
    assert state.data.done.dtype == jnp.bool_
    assert not np.any(np.asarray(state.data.reward))
    np.testing.assert_array_equal(state.position, np.zeros(n_envs))
    np.testing.assert_array_equal(state.size, np.zeros(n_envs))
    assert state.position.dtype == jnp.int32 and state.size.dtype == jnp.int32


def test_replay_init_keeps_none_fields_empty():
    buffer = make_replay_buffer(8, 2)
    state = buffer.init(vector_step(0, 2))
    assert state.data.log_prob is None
    assert state.data.truncated is None
    assert state.data.value is None


def test_replay_init_rejects_example_with_wrong_number_of_envs():
    buffer = make_replay_buffer(8, 2)
    with pytest.raises(ValueError, match="3 envs"):
        buffer.init(vector_step(0, 3))


def test_replay_add_one_vector_step_writes_slot_zero_of_every_env():
    buffer = make_replay_buffer(12, 3)
    state = buffer.init(vector_step(0, 3))
    step = vector_step(7, 3)

    state = jit_add(buffer, state, step, None)

    np.testing.assert_array_equal(state.data.reward[0], step.reward)
    np.testing.assert_array_equal(state.data.observation[0], step.observation)
    np.testing.assert_array_equal(state.data.action[0], step.action)
    np.testing.assert_array_equal(state.data.done[0], step.done)
    np.testing.assert_array_equal(state.data.next_observation[0], step.next_observation)
    assert not np.any(np.asarray(state.data.reward[1:]))
    np.testing.assert_array_equal(state.position, [1, 1, 1])
    np.testing.assert_array_equal(state.size, [1, 1, 1])


@pytest.mark.parametrize("k", [1, 3, 4], ids=["k1", "k3", "k-equals-slots"])
def test_replay_add_batch_writes_k_steps_in_order(k):
    buffer = make_replay_buffer(8, 2)  # 4 slots per env
    state = buffer.init(vector_step(0, 2))

    state = jit_add_batch(buffer, state, stacked_steps(range(k), 2), None)

    for slot in range(k):
        np.testing.assert_array_equal(state.data.reward[slot], [10.0 * slot, 10.0 * slot + 1])
    assert not np.any(np.asarray(state.data.reward[k:]))
    np.testing.assert_array_equal(state.position, [k % 4] * 2)
    np.testing.assert_array_equal(state.size, [k] * 2)


def test_replay_add_batch_matches_repeated_add():
    buffer = make_replay_buffer(9, 3)
    state_batch = buffer.init(vector_step(0, 3))
    state_batch = jit_add_batch(buffer, state_batch, stacked_steps(range(2), 3), None)
    state_batch = jit_add_batch(buffer, state_batch, stacked_steps(range(2, 5), 3), None)

    state_single = fill(buffer, 5)

    for a, b in zip(jax.tree.leaves(state_batch), jax.tree.leaves(state_single), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("n_steps", "position"),
    [(5, 2), (6, 0), (7, 1), (11, 2)],
    ids=["wrap-by-2", "wrap-exactly-twice", "wrap-by-1", "many-wraps"],
)
def test_replay_wraparound_keeps_last_t_steps_per_env_in_ring_order(n_steps, position):
    buffer = make_replay_buffer(9, 3)  # T = 3
    state = fill(buffer, n_steps)

    np.testing.assert_array_equal(state.position, [position] * 3)
    np.testing.assert_array_equal(state.size, [3] * 3)
    for step in range(n_steps - 3, n_steps):
        # step s lives in slot s % T: the ring order.
        np.testing.assert_array_equal(
            state.data.reward[step % 3], 10.0 * step + np.arange(3, dtype=np.float32)
        )
        np.testing.assert_array_equal(state.data.action[step % 3], [step] * 3)


def test_replay_add_batch_wraps_around_within_one_call():
    buffer = make_replay_buffer(6, 2)  # T = 3
    state = buffer.init(vector_step(0, 2))
    state = jit_add_batch(buffer, state, stacked_steps(range(2), 2), None)  # slots 0, 1
    state = jit_add_batch(buffer, state, stacked_steps(range(2, 5), 2), None)  # slots 2, 0, 1

    np.testing.assert_array_equal(state.data.reward[:, 0], [30.0, 40.0, 20.0])
    np.testing.assert_array_equal(state.data.reward[:, 1], [31.0, 41.0, 21.0])
    np.testing.assert_array_equal(state.position, [2, 2])
    np.testing.assert_array_equal(state.size, [3, 3])


def test_replay_invalid_entries_are_not_stored_and_positions_diverge():
    buffer = make_replay_buffer(8, 2)  # T = 4
    # env 0 valid every step, env 1 valid on odd steps only.
    valid = np.array([[True, step % 2 == 1] for step in range(6)])
    state = fill(buffer, 6, valid)

    # env 0: 6 writes -> position 2, slots hold steps [4, 5, 2, 3].
    np.testing.assert_array_equal(state.data.reward[:, 0], [40.0, 50.0, 20.0, 30.0])
    # env 1: writes of steps 1, 3, 5 only -> slots 0..2, slot 3 untouched.
    np.testing.assert_array_equal(state.data.reward[:, 1], [11.0, 31.0, 51.0, 0.0])
    np.testing.assert_array_equal(state.position, [2, 3])
    np.testing.assert_array_equal(state.size, [4, 3])


def test_replay_add_batch_invalid_entries_in_the_middle_are_skipped():
    buffer = make_replay_buffer(8, 2)  # T = 4
    state = buffer.init(vector_step(0, 2))
    valid = jnp.array([[True, False], [False, True], [True, True]])

    state = jit_add_batch(buffer, state, stacked_steps(range(3), 2), valid)

    np.testing.assert_array_equal(state.data.reward[:, 0], [0.0, 20.0, 0.0, 0.0])
    np.testing.assert_array_equal(state.data.reward[:, 1], [11.0, 21.0, 0.0, 0.0])
    np.testing.assert_array_equal(state.position, [2, 2])
    np.testing.assert_array_equal(state.size, [2, 2])


def test_replay_all_invalid_add_leaves_state_unchanged():
    buffer = make_replay_buffer(6, 2)
    state = fill(buffer, 2)
    new = jit_add(buffer, state, vector_step(9, 2), jnp.zeros(2, bool))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new), strict=True):
        np.testing.assert_array_equal(a, b)


# ---- ReplayBuffer: sampling --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_steps", "valid_every"),
    [(2, 1), (9, 1), (13, 2)],
    ids=["partially-filled", "wrapped", "wrapped-with-invalid-entries"],
)
def test_replay_sample_returns_only_stored_transitions(n_steps, valid_every):
    n_envs, slots = 3, 4
    buffer = make_replay_buffer(n_envs * slots, n_envs)
    valid = np.ones((n_steps, n_envs), bool)
    valid[:, 2] = np.arange(n_steps) % valid_every == 0  # env 2 may skip steps
    state = fill(buffer, n_steps, valid)
    stored = expected_ids(n_steps, n_envs, slots, valid)
    allowed = {i for env_ids in stored for i in env_ids}

    batch = jit_sample(buffer, state, jax.random.PRNGKey(0), 512)

    rewards = np.asarray(batch.reward)
    assert rewards.shape == (512,)
    assert set(rewards.tolist()) <= allowed
    # every field of a sampled transition comes from the same stored transition
    np.testing.assert_array_equal(batch.observation[:, 0], batch.reward)
    np.testing.assert_array_equal(batch.next_observation[:, 0], batch.reward + 0.5)
    np.testing.assert_array_equal(batch.action, np.floor(rewards / 10).astype(np.int32))


def test_replay_sample_indices_point_to_stored_slots():
    buffer = make_replay_buffer(8, 2)  # T = 4
    valid = np.array([[True, step % 3 == 0] for step in range(6)])  # env 1 holds steps 0, 3
    state = fill(buffer, 6, valid)

    sample_indices = jax.jit(buffer.sample_indices, static_argnums=2)
    slots, envs = sample_indices(state, jax.random.PRNGKey(3), 256)

    assert slots.dtype == jnp.int32 and envs.dtype == jnp.int32
    pairs = set(zip(np.asarray(slots).tolist(), np.asarray(envs).tolist(), strict=True))
    assert pairs <= {(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1)}


@pytest.mark.parametrize(
    ("n_steps", "env1_every"),
    [(8, 1), (6, 2), (2, 1)],
    ids=["full-equal-sizes", "unequal-sizes", "partially-filled"],
)
def test_replay_sample_is_uniform_over_envs_and_time(n_steps, env1_every):
    n_envs, slots, batch_size = 3, 4, 24_000
    buffer = make_replay_buffer(n_envs * slots, n_envs)
    valid = np.ones((n_steps, n_envs), bool)
    valid[:, 1] = np.arange(n_steps) % env1_every == 0
    state = fill(buffer, n_steps, valid)
    stored = sorted(i for env_ids in expected_ids(n_steps, n_envs, slots, valid) for i in env_ids)

    batch = jit_sample(buffer, state, jax.random.PRNGKey(42), batch_size)

    values, counts = np.unique(np.asarray(batch.reward), return_counts=True)
    assert values.tolist() == stored  # every stored transition is drawn
    expected = batch_size / len(stored)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    # dof = len(stored) - 1 <= 11; the 99.9% quantile of chi2(11) is 31.3.
    assert chi2 < 31.3, (chi2, counts)


def test_replay_sample_is_deterministic_given_key():
    buffer = make_replay_buffer(8, 2)
    state = fill(buffer, 5)
    a = jit_sample(buffer, state, jax.random.PRNGKey(1), 64)
    b = jit_sample(buffer, state, jax.random.PRNGKey(1), 64)
    c = jit_sample(buffer, state, jax.random.PRNGKey(2), 64)
    np.testing.assert_array_equal(a.reward, b.reward)
    assert not np.array_equal(np.asarray(a.reward), np.asarray(c.reward))


@pytest.mark.parametrize(
    ("n_steps", "batch_size", "expected"),
    [(0, 1, False), (1, 2, True), (1, 3, False), (4, 8, True), (10, 8, True), (10, 9, False)],
    ids=[
        "empty",
        "exactly-enough",
        "one-short",
        "just-full",
        "wrapped-enough",
        "wrapped-never-enough",
    ],
)
def test_replay_can_sample_counts_stored_transitions(n_steps, batch_size, expected):
    buffer = make_replay_buffer(9, 2)  # T = 4, so at most 8 transitions are stored
    state = fill(buffer, n_steps)
    assert bool(buffer.can_sample(state, batch_size)) is expected


# ---- ReplayBuffer: in-place updates and errors -------------------------------------------------


def test_replay_add_under_jit_with_donation_reuses_storage():
    buffer = make_replay_buffer(64, 2)
    state = fill(buffer, 3)
    add = jax.jit(buffer.add, donate_argnums=0)
    pointer = state.data.observation.unsafe_buffer_pointer()

    new = add(state, vector_step(3, 2))

    assert state.data.observation.is_deleted()
    assert state.data.reward.is_deleted()
    assert new.data.observation.unsafe_buffer_pointer() == pointer
    np.testing.assert_array_equal(new.data.reward[3], [30.0, 31.0])
    np.testing.assert_array_equal(new.position, [4, 4])


def test_replay_add_batch_under_jit_with_donation_deletes_input():
    buffer = make_replay_buffer(64, 2)
    state = buffer.init(vector_step(0, 2))
    add_batch = jax.jit(buffer.add_batch, donate_argnums=0)

    new = add_batch(state, stacked_steps(range(4), 2), jnp.ones((4, 2), bool))

    assert state.data.reward.is_deleted()
    np.testing.assert_array_equal(new.data.reward[:4, 1], [1.0, 11.0, 21.0, 31.0])


@pytest.mark.parametrize(
    ("capacity", "n_envs", "match"),
    [(2, 3, "max_buffer_size=2 is smaller than n_envs=3"), (4, 0, "n_envs=0")],
    ids=["capacity-below-n-envs", "zero-envs"],
)
def test_make_replay_buffer_rejects_invalid_sizes(capacity, n_envs, match):
    with pytest.raises(ValueError, match=match):
        make_replay_buffer(capacity, n_envs)


def test_replay_add_batch_rejects_more_steps_than_slots():
    buffer = make_replay_buffer(6, 2)  # T = 3
    state = buffer.init(vector_step(0, 2))
    with pytest.raises(ValueError, match="cannot add 4 steps"):
        buffer.add_batch(state, stacked_steps(range(4), 2))


def test_end_episodes_marks_the_newest_transition_truncated_unless_it_is_done():
    buffer = make_replay_buffer(12, 3)  # T = 4
    with_flags = lambda step: vector_step(step, 3)._replace(truncated=np.zeros(3, bool))  # noqa: E731
    state = buffer.init(with_flags(0))
    unchanged = buffer.end_episodes(state)  # nothing stored yet
    assert not np.asarray(unchanged.data.truncated).any()
    for step in range(5):  # the newest transitions (step 4) wrap around to slot 0
        state = jit_add(buffer, state, with_flags(step), None)
    # step 4: envs 0 and 2 are done; env 2 is not asked for
    state = buffer.end_episodes(state, jnp.array([True, True, False]))
    expected = np.zeros((4, 3), bool)
    expected[0, 1] = True
    np.testing.assert_array_equal(np.asarray(state.data.truncated), expected)
    plain = fill(buffer, 2)  # transitions without a truncated field: nothing to mark
    assert buffer.end_episodes(plain).data.truncated is None


# ---- RolloutBuffer -----------------------------------------------------------------------------


def test_rollout_add_fills_rows_and_reports_full():
    rollout = RolloutBuffer(3)
    assert not rollout.full
    for step in range(3):
        rollout.add(vector_step(step, 2))
        assert rollout.count == step + 1
    assert rollout.full

    storage, count = rollout.flush()

    assert count == 3
    assert rollout.count == 0 and not rollout.full
    np.testing.assert_array_equal(storage.reward, [[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    assert storage.observation.shape == (3, 2, OBS_DIM)


def test_rollout_add_to_full_buffer_raises():
    rollout = RolloutBuffer(2)
    rollout.add(vector_step(0, 2))
    rollout.add(vector_step(1, 2))
    with pytest.raises(RuntimeError, match="full"):
        rollout.add(vector_step(2, 2))


def test_rollout_flush_reuses_storage_and_overwrites_rows():
    rollout = RolloutBuffer(2)
    rollout.add(vector_step(0, 2))
    rollout.add(vector_step(1, 2))
    first, _ = rollout.flush()
    first_reward = first.reward

    rollout.add(vector_step(5, 2))
    second, count = rollout.flush()

    assert count == 1
    assert second.reward is first_reward  # the same preallocated array, not a copy
    np.testing.assert_array_equal(second.reward, [[50.0, 51.0], [10.0, 11.0]])


def test_rollout_add_copies_the_input():
    rollout = RolloutBuffer(1)
    step = vector_step(1, 2)
    rollout.add(step)
    step.reward[:] = -1.0
    storage, _ = rollout.flush()
    np.testing.assert_array_equal(storage.reward, [[10.0, 11.0]])


def test_rollout_preserves_dtypes_shapes_and_none_fields():
    rollout = RolloutBuffer(4)
    experience = Experience(
        observation=np.full((3, 2, 2), 7, np.uint8),
        action=np.array([1, 2, 3], np.int64),
        reward=np.array([0.5, 1.5, 2.5], np.float32),
        done=np.array([True, False, True]),
        next_observation=np.full((3, 2, 2), 9, np.uint8),
        log_prob=jnp.array([-0.1, -0.2, -0.3], jnp.float32),
    )
    rollout.add(experience)
    storage, _ = rollout.flush()

    assert isinstance(storage, Experience)
    assert storage.observation.dtype == np.uint8 and storage.observation.shape == (4, 3, 2, 2)
    assert storage.action.dtype == np.int64 and storage.action.shape == (4, 3)
    assert storage.reward.dtype == np.float32
    assert storage.done.dtype == np.bool_
    assert storage.log_prob.dtype == np.float32
    np.testing.assert_allclose(storage.log_prob[0], [-0.1, -0.2, -0.3])
    assert storage.truncated is None and storage.value is None
    np.testing.assert_array_equal(storage.observation[0], experience.observation)


def test_rollout_flush_before_add_raises():
    with pytest.raises(RuntimeError, match="before any add"):
        RolloutBuffer(2).flush()


@pytest.mark.parametrize("n_steps", [0, -1], ids=["zero", "negative"])
def test_rollout_rejects_non_positive_length(n_steps):
    with pytest.raises(ValueError, match=f"n_steps={n_steps}"):
        RolloutBuffer(n_steps)


def test_experience_defaults_optional_fields_to_none():
    experience = Experience(1, 2, 3, 4, 5)
    assert experience.log_prob is None and experience.truncated is None
    assert experience.value is None
    assert jax.tree.leaves(experience) == [1, 2, 3, 4, 5]


# ---- sequences and prioritized replay ---------------------------------------------------------
jit_sequences = jax.jit(
    lambda buffer, state, key, batch_size, length: buffer.sample_sequences(
        state, key, batch_size, length
    ),
    static_argnums=(0, 3, 4),
)


def test_sequences_are_consecutive_steps_of_one_env_after_wraparound():
    buffer = make_replay_buffer(capacity=12, n_envs=2)  # 6 slots per env
    state = fill(buffer, 10)  # steps 4..9 stored, the ring wrapped
    seq = jit_sequences(buffer, state, jax.random.PRNGKey(0), 500, 3)
    rewards = np.asarray(seq.reward)  # id = step * 10 + env
    assert rewards.shape == (500, 3)
    steps, envs = rewards // 10, rewards % 10
    np.testing.assert_array_equal(steps[:, 1:] - steps[:, :-1], 1)  # consecutive in time
    assert (envs == envs[:, :1]).all()  # one env per window
    # windows start at the oldest stored step (4) and end at the newest (9): starts 4..7
    assert set(steps[:, 0].tolist()) == {4, 5, 6, 7}
    assert set(envs[:, 0].tolist()) == {0, 1}


def test_sequences_respect_each_env_write_pointer():
    buffer = make_replay_buffer(capacity=20, n_envs=2)
    valid = np.ones((6, 2), bool)
    valid[3:, 1] = False  # env 1 stored steps 0..2 only
    state = fill(buffer, 6, valid)
    seq = jit_sequences(buffer, state, jax.random.PRNGKey(1), 400, 3)
    rewards = np.asarray(seq.reward)
    starts = {(int(r // 10), int(r % 10)) for r in rewards[:, 0]}
    assert starts == {(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)}  # never past a write pointer
    assert bool(buffer.can_sample(state, 1, length=3))
    assert not bool(buffer.can_sample(state, 6, length=3))


def prioritized(capacity=8, n_envs=2, **kwargs):
    return make_replay_buffer(capacity, n_envs, prioritized=True, **kwargs)


def test_prioritized_new_transitions_get_the_max_priority():
    buffer = prioritized(alpha=1.0)
    state = fill(buffer, 2)
    np.testing.assert_allclose(np.asarray(state.priorities)[:2], 1.0)
    np.testing.assert_allclose(np.asarray(state.priorities)[2:], 0.0)
    state = buffer.update_priorities(
        state, jnp.array([0, 1]), jnp.array([0, 1]), jnp.array([3.0, -0.5])
    )
    np.testing.assert_allclose(np.asarray(state.priorities)[0, 0], 3.0 + 1e-6, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.priorities)[1, 1], 0.5 + 1e-6, rtol=1e-6)
    assert float(state.max_priority) == pytest.approx(3.0, rel=1e-5)
    state = jit_add(buffer, state, vector_step(2, 2), np.ones(2, bool))
    np.testing.assert_allclose(np.asarray(state.priorities)[2], 3.0, rtol=1e-5)
    assert int(state.updates) == 1


def test_prioritized_sampling_frequencies_follow_priorities_to_the_alpha():
    buffer = prioritized(capacity=8, n_envs=2, alpha=0.5)
    state = fill(buffer, 2)  # 4 transitions
    slots, envs = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 0, 1])
    state = buffer.update_priorities(state, slots, envs, jnp.array([1.0, 4.0, 9.0, 0.0]))
    # p^alpha = 1, 2, 3, ~0.001 -> probabilities ~1/6, 2/6, 3/6, ~0
    sample = jax.jit(lambda s, k: buffer.sample_indices(s, k, 6000))
    got_slots, got_envs = sample(state, jax.random.PRNGKey(0))
    counts = np.zeros((4, 2))
    np.add.at(counts, (np.asarray(got_slots), np.asarray(got_envs)), 1)
    freq = counts / 6000
    np.testing.assert_allclose(freq[0], [1 / 6, 2 / 6], atol=0.02)
    np.testing.assert_allclose(freq[1], [3 / 6, 0.0], atol=0.02)
    assert counts[2:].sum() == 0  # empty slots are never drawn


def million_slot_state(buffer, position, size, td_errors):
    """A state of ``buffer`` (1M slots) with the given write pointers and sizes, and the
    priorities ``(|td_errors| + eps)^alpha`` written into every slot (stored or not)."""
    t_max, n_envs = buffer.slots_per_env, buffer.n_envs
    example = Experience(
        observation=np.zeros((n_envs, 1), np.float32),
        action=np.zeros(n_envs, np.int32),
        reward=np.zeros(n_envs, np.float32),
        done=np.zeros(n_envs, bool),
        next_observation=np.zeros((n_envs, 1), np.float32),
    )
    state = buffer.init(example)
    state = state.replace(position=jnp.asarray(position, jnp.int32), size=jnp.asarray(size))
    slots, envs = np.divmod(np.arange(t_max * n_envs), n_envs)
    write = jax.jit(buffer.update_priorities)
    return write(state, jnp.asarray(slots), jnp.asarray(envs), jnp.asarray(td_errors.reshape(-1)))


def poisson_dispersion_z(counts: np.ndarray, means: np.ndarray) -> float:
    """How many standard deviations Pearson's statistic ``sum (O - E)^2 / E`` of per-slot
    ``counts`` lies above its mean, were each count Poisson with mean ``means`` (each term then
    has mean 1 and variance ``2 + 1 / E``). Sampling at the right per-slot rates gives at most
    Poisson dispersion; rates that are wrong slot by slot inflate it."""
    pearson = np.sum((counts - means) ** 2 / means)
    return float((pearson - len(means)) / np.sqrt(np.sum(2.0 + 1.0 / means)))


@pytest.mark.slow
def test_prioritized_sampling_is_exact_at_a_million_slots():
    """Draw frequencies match ``p^alpha / sum`` at 1M slots, slot by slot for the lowest
    priorities too. (Searching one float32 cumulative sum over the slots gets the binned
    frequencies right, but never draws many floor-priority slots and over-draws others: their
    dispersion is then about 15 standard deviations above Poisson's.)"""
    n_envs, t_max, alpha, length = 4, 250_000, 0.6, 3
    n_slots = n_envs * t_max
    buffer = prioritized(capacity=n_slots, n_envs=n_envs, alpha=alpha)
    rng = np.random.default_rng(0)
    # Most transitions are learned (TD error 0: the priority floor eps^alpha), a tenth have
    # small TD errors spread over three decades, 1000 have a large one.
    small_td = 10.0 ** rng.uniform(-4.0, -1.0, (t_max, n_envs))
    td = np.where(rng.random((t_max, n_envs)) < 0.9, 0.0, small_td)
    large = rng.choice(n_slots, 1000, replace=False)
    td.reshape(-1)[large] = 100.0
    position, size = np.array([0, 1234, t_max - 1, 200_000]), np.array([t_max] * 3 + [200_000])
    state = million_slot_state(buffer, position, size, td.astype(np.float32))

    # Hand-computed distribution, in float64: windows of 3 start only at stored slots followed
    # by 2 stored ones (rank counted from each env's oldest slot).
    rank = (np.arange(t_max)[:, None] - (position - size)[None, :]) % t_max
    startable = (rank < size - (length - 1)).reshape(-1)
    mass = np.where(startable, (td.reshape(-1) + 1e-6) ** alpha, 0.0)
    expected = mass / mass.sum()

    n_keys, batch_size = 256, 8192
    draw = jax.jit(
        jax.vmap(lambda s, k: buffer.sample_indices(s, k, batch_size, length), in_axes=(None, 0))
    )
    slots, envs = draw(state, jax.random.split(jax.random.PRNGKey(0), n_keys))
    flat = (np.asarray(slots) * n_envs + np.asarray(envs)).reshape(-1)
    n_draws = flat.size
    counts = np.bincount(flat, minlength=n_slots)
    assert counts[~startable].sum() == 0  # no window past a write pointer

    # Frequencies of bins: each class of priority by quarter of the buffer.
    kind = np.select([td.reshape(-1) == 0.0, td.reshape(-1) < 1.0], [0, 1], 2)
    bins = np.where(startable, kind * 4 + np.arange(n_slots) * 4 // n_slots, -1)
    observed = np.bincount(bins[startable], weights=counts[startable], minlength=12)
    predicted = n_draws * np.bincount(bins[startable], weights=expected[startable], minlength=12)
    assert predicted.min() > 1000
    chi2 = float(np.sum((observed - predicted) ** 2 / predicted))
    # dof = 11; the 99.9% quantile of chi2(11) is 31.3.
    assert chi2 < 31.3, (chi2, np.round(observed / predicted - 1.0, 4))

    # Slot by slot: the floor-priority transitions of each half of the buffer (about 0.03
    # expected draws each), and the large-priority ones (about 500 each).
    half = np.arange(n_slots) * 2 // n_slots
    groups = [startable & (kind == 0) & (half == 0), startable & (kind == 0) & (half == 1)]
    groups.append(startable & (kind == 2))
    z = [poisson_dispersion_z(counts[g], n_draws * expected[g]) for g in groups]
    assert max(z) < 4.0, z


def test_prioritized_sampling_descends_to_each_slot_at_its_rate():
    """Past 2^10 slots every draw descends a sum tree: per-slot rates, windows and empty slots."""
    n_envs, t_max, alpha, length = 2, 3000, 0.5, 2
    buffer = prioritized(capacity=n_envs * t_max, n_envs=n_envs, alpha=alpha)
    rng = np.random.default_rng(1)
    td = 10.0 ** rng.uniform(-3.0, 1.0, (t_max, n_envs))
    position, size = np.array([2500, 1000]), np.array([t_max, 1000])  # env 1 never wrapped
    state = million_slot_state(buffer, position, size, td.astype(np.float32))
    rank = (np.arange(t_max)[:, None] - (position - size)[None, :]) % t_max
    startable = (rank < size - (length - 1)).reshape(-1)
    mass = np.where(startable, (td.reshape(-1) + 1e-6) ** alpha, 0.0)
    expected = mass / mass.sum()

    draw = jax.jit(jax.vmap(lambda s, k: buffer.sample_indices(s, k, 4096, length), (None, 0)))
    slots, envs = draw(state, jax.random.split(jax.random.PRNGKey(2), 64))
    counts = np.bincount((np.asarray(slots) * n_envs + np.asarray(envs)).reshape(-1), None, 6000)

    assert counts[~startable].sum() == 0  # never the last slot of a window, nor an empty one
    means = counts.sum() * expected[startable]  # 3 to 250 draws per slot
    assert means.min() > 2
    # Stratified draws are less dispersed than Poisson; wrong per-slot rates would be more.
    assert poisson_dispersion_z(counts[startable], means) < 4.0


def test_sample_proportional_small_and_degenerate_masses():
    """Zero masses are never drawn (also in the padding of a non-power-of-two array); with no
    mass at all every draw is the last index."""
    sample = jax.jit(sample_proportional, static_argnums=2)
    mass = np.zeros(1500, np.float32)
    mass[[0, 700, 1499]] = [1.0, 2.0, 1.0]
    values, counts = np.unique(
        np.asarray(sample(mass, jax.random.key(0), 40_000)), return_counts=True
    )
    assert values.tolist() == [0, 700, 1499]
    np.testing.assert_allclose(counts / 40_000, [0.25, 0.5, 0.25], atol=0.01)
    none = sample(np.zeros(1500, np.float32), jax.random.key(1), 8)
    np.testing.assert_array_equal(none, np.full(8, 1499))


def hand_importance_weights(priorities, startable, beta):
    """``(N * P(i))^-beta / max_k (N * P(k))^-beta`` over the startable slots, in float64,
    from the stored priorities ``p_i^alpha`` (``[T, N]``); NaN where nothing may start."""
    p = np.asarray(priorities, np.float64)[startable]
    scaled = (len(p) * p / p.sum()) ** -beta
    weights = np.full(startable.shape, np.nan)
    weights[startable] = scaled / scaled.max()
    return weights


@pytest.mark.parametrize("length", [1, 2], ids=["transitions", "windows-of-2"])
def test_prioritized_importance_weights_of_every_sampled_element(length):
    alpha, beta_start, beta_steps, eps = 0.5, 0.4, 10, 1e-6
    buffer = prioritized(
        capacity=12, n_envs=2, alpha=alpha, beta_start=beta_start, beta_steps=beta_steps
    )  # T = 6
    state = fill(buffer, 5)  # slots 0..4 of both envs
    td = np.array([[0.5, 3.0], [8.0, 0.0], [1.0, 24.0], [2.0, 0.1], [15.0, 4.0]], np.float32)
    slots, envs = np.divmod(np.arange(10), 2)
    write = jax.jit(buffer.update_priorities)
    sample = jax.jit(lambda s, k: buffer.sample_indices(s, k, 64, length))
    weights_of = jax.jit(lambda s, sl, en: buffer.importance_weights(s, sl, en, length))
    # a window of `length` starts at the slots followed by length - 1 stored ones
    startable = np.zeros((6, 2), bool)
    startable[: 5 - (length - 1)] = True

    for n_updates, beta in [(3, 0.4 + 0.6 * 3 / 10), (12, 1.0)]:  # beta annealed, then held
        while int(state.updates) < n_updates:  # rewriting the same priorities only counts
            state = write(state, slots, envs, td.reshape(-1))
        assert float(buffer.beta(state)) == pytest.approx(beta)
        np.testing.assert_allclose(state.priorities[:5], (np.abs(td) + eps) ** alpha, rtol=1e-6)

        got_slots, got_envs = sample(state, jax.random.PRNGKey(n_updates))
        got_slots, got_envs = np.asarray(got_slots), np.asarray(got_envs)
        assert startable[got_slots, got_envs].all()
        assert len(set(zip(got_slots, got_envs, strict=True))) >= 5
        expected = hand_importance_weights(state.priorities, startable, beta)
        weights = weights_of(state, got_slots, got_envs)
        np.testing.assert_allclose(weights, expected[got_slots, got_envs], rtol=1e-5)


def test_prioritized_sequences_only_start_where_a_full_window_is_stored():
    buffer = prioritized(capacity=8, n_envs=1, alpha=1.0)
    state = fill(buffer, 3)  # steps 0, 1, 2
    slots, _ = jax.jit(lambda s, k: buffer.sample_indices(s, k, 200, 2))(
        state, jax.random.PRNGKey(3)
    )
    assert set(np.asarray(slots).tolist()) == {0, 1}


def test_prioritized_buffer_rejects_bad_settings():
    with pytest.raises(ValueError, match="beta"):
        prioritized(beta_start=1.5)
    with pytest.raises(ValueError, match="alpha"):
        prioritized(alpha=-1.0)
