"""Tests for kitae.base.make_off_policy_update and make_on_policy_update with toy functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.base import make_off_policy_update, make_on_policy_update
from kitae.buffer import Experience, make_replay_buffer
from kitae.guards import without_flags

# ---- off-policy --------------------------------------------------------------------------------


def filled_replay_buffer(rewards):
    """A replay buffer holding ``rewards`` ``[T, N]`` (one transition per entry)."""
    n_steps, n_envs = rewards.shape
    buffer = make_replay_buffer(n_steps * n_envs, n_envs)
    experience = Experience(
        observation=np.zeros((n_steps, n_envs, 1), np.float32),
        action=np.zeros((n_steps, n_envs), np.int32),
        reward=rewards.astype(np.float32),
        done=np.zeros((n_steps, n_envs), bool),
        next_observation=np.zeros((n_steps, n_envs, 1), np.float32),
    )
    state = buffer.init(jax.tree.map(lambda x: x[0], experience))
    return buffer, jax.jit(buffer.add_batch)(state, experience)


def off_policy_toy(batch_size):
    traced_shapes = []

    def process(state, key, batch):
        traced_shapes.append(batch.reward.shape)
        return {"reward": batch.reward * 2.0}

    def update_step(state, key, batch):
        mean = batch["reward"].mean()
        new = {"count": state["count"] + 1, "sum": state["sum"] + mean}
        return new, {"mean_reward": mean, "step_index": state["count"].astype(jnp.float32)}

    return process, update_step, traced_shapes


@pytest.mark.parametrize("n_epochs", [1, 5], ids=lambda n: f"{n}-epochs")
def test_off_policy_update_runs_n_epochs_steps_in_one_call_and_averages_info(n_epochs):
    rewards = np.arange(12, dtype=np.float32).reshape(4, 3)
    buffer, buffer_state = filled_replay_buffer(rewards)
    process, update_step, traced_shapes = off_policy_toy(batch_size=5)
    update = jax.jit(make_off_policy_update(buffer, process, update_step, 5, n_epochs))
    state = {"count": jnp.int32(0), "sum": jnp.float32(0.0)}
    key = jax.random.PRNGKey(0)

    new_state, new_buffer_state, new_key, info = update(state, buffer_state, key)

    assert traced_shapes == [(5,)]  # process sees one batch of batch_size, traced once
    assert int(new_state["count"]) == n_epochs
    # info is the mean over the n_epochs steps
    np.testing.assert_allclose(info["step_index"], (n_epochs - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(info["mean_reward"] * n_epochs, new_state["sum"], rtol=1e-5)
    assert info["mean_reward"].shape == ()
    # process doubled the stored rewards, which lie in [0, 11]
    assert 0.0 <= float(info["mean_reward"]) <= 22.0
    assert not np.array_equal(np.asarray(new_key), np.asarray(key))
    # a uniform buffer comes back unchanged
    np.testing.assert_array_equal(new_buffer_state.data.reward, buffer_state.data.reward)
    np.testing.assert_array_equal(new_buffer_state.position, buffer_state.position)


def test_off_policy_update_samples_fresh_stored_batches_each_epoch():
    rewards = np.arange(40, dtype=np.float32).reshape(20, 2)
    buffer, buffer_state = filled_replay_buffer(rewards)
    n_epochs, batch_size = 3, 8

    def update_step(state, key, batch):
        # record each epoch's batch in its own row
        new = {"i": state["i"] + 1, "batches": state["batches"].at[state["i"]].set(batch)}
        return new, {}

    update = jax.jit(
        make_off_policy_update(buffer, lambda s, k, b: b.reward, update_step, batch_size, n_epochs)
    )
    init = {"i": jnp.int32(0), "batches": jnp.full((n_epochs, batch_size), -1.0)}

    state, _, _, info = update(init, buffer_state, jax.random.PRNGKey(1))

    assert without_flags(info) == {}  # only the non-finite flags (kitae.guards)
    batches = np.asarray(state["batches"])
    assert set(batches.ravel().tolist()) <= set(rewards.ravel().tolist())  # all rows written
    assert not np.array_equal(batches[0], batches[1])
    assert not np.array_equal(batches[1], batches[2])


def test_off_policy_update_passes_state_to_process_fn():
    rewards = np.ones((4, 2), np.float32)
    buffer, buffer_state = filled_replay_buffer(rewards)

    def process(state, key, batch):
        return batch.reward * state  # state is the multiplier, growing each epoch

    def update_step(state, key, batch):
        return state + 1.0, {"total": batch.sum()}

    update = jax.jit(make_off_policy_update(buffer, process, update_step, 4, 3))
    state, _, _, info = update(jnp.float32(1.0), buffer_state, jax.random.PRNGKey(0))
    # batches sum to 4 * 1, 4 * 2, 4 * 3 -> mean 8
    np.testing.assert_allclose(info["total"], 8.0, rtol=1e-6)
    np.testing.assert_allclose(state, 4.0)


# ---- on-policy ---------------------------------------------------------------------------------


def on_policy_rollout(n_steps, n_envs, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(n_steps * n_envs, dtype=np.int32).reshape(n_steps, n_envs)  # t * N + n
    return Experience(
        observation=ids,
        action=np.zeros((n_steps, n_envs), np.int32),
        reward=rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        done=np.zeros((n_steps, n_envs), bool),
        next_observation=ids,
    )


def on_policy_toy(total):
    traced_shapes = []

    def process(state, key, trajectory):
        traced_shapes.append((trajectory.reward.shape, key.shape))
        return {"id": trajectory.observation, "cumsum": jnp.cumsum(trajectory.reward)}

    def update_step(state, key, batch):
        visits = state["visits"].at[batch["id"]].add(1)
        cumsum = state["cumsum"].at[batch["id"]].set(batch["cumsum"])
        new = {
            "visits": visits,
            "cumsum": cumsum,
            "id_sum": state["id_sum"] + batch["id"].sum(),
            "steps": state["steps"] + 1,
        }
        return new, {"batch_size": jnp.float32(batch["id"].shape[0])}

    init = {
        "visits": jnp.zeros(total, jnp.int32),
        "cumsum": jnp.zeros(total, jnp.float32),
        "id_sum": jnp.int32(0),
        "steps": jnp.int32(0),
    }
    return process, update_step, init, traced_shapes


@pytest.mark.parametrize(
    ("n_steps", "n_envs", "batch_size", "n_epochs"),
    [(6, 2, 4, 1), (6, 2, 12, 3), (5, 3, 3, 2), (8, 1, 2, 2)],
    ids=["3-minibatches-1-epoch", "full-batch-3-epochs", "5-minibatches-2-epochs", "single-env"],
)
def test_on_policy_update_vmaps_process_over_envs_and_visits_every_transition_per_epoch(
    n_steps, n_envs, batch_size, n_epochs
):
    total = n_steps * n_envs
    rollout = on_policy_rollout(n_steps, n_envs)
    process, update_step, init, traced_shapes = on_policy_toy(total)
    update = jax.jit(make_on_policy_update(process, update_step, batch_size, n_epochs))

    state, _, info = update(init, rollout, jax.random.PRNGKey(0))

    # process_experience_fn saw one env's [T] trajectory and its own key
    assert traced_shapes == [((n_steps,), (2,))]
    # per-env cumulative sums over time (not over envs), put back at each transition's id
    expected_cumsum = np.cumsum(rollout.reward, axis=0).reshape(total)
    np.testing.assert_allclose(state["cumsum"], expected_cumsum, rtol=1e-5, atol=1e-6)
    # every transition visited exactly once per epoch
    np.testing.assert_array_equal(state["visits"], np.full(total, n_epochs))
    assert int(state["id_sum"]) == n_epochs * total * (total - 1) // 2
    assert int(state["steps"]) == n_epochs * (total // batch_size)
    np.testing.assert_allclose(info["batch_size"], batch_size)


def test_on_policy_update_shuffles_transitions_differently_each_epoch():
    n_steps, n_envs, batch_size, n_epochs = 8, 2, 4, 2
    total = n_steps * n_envs
    rollout = on_policy_rollout(n_steps, n_envs)

    def update_step(state, key, batch):
        # append the minibatch's ids to the visiting order
        order = jax.lax.dynamic_update_slice(state["order"], batch, (state["i"],))
        return {"i": state["i"] + batch_size, "order": order}, {}

    update = jax.jit(
        make_on_policy_update(lambda s, k, t: t.observation, update_step, batch_size, n_epochs)
    )
    init = {"i": jnp.int32(0), "order": jnp.full(n_epochs * total, -1, jnp.int32)}

    state, _, _ = update(init, rollout, jax.random.PRNGKey(0))

    first, second = np.asarray(state["order"]).reshape(n_epochs, total)
    assert sorted(first.tolist()) == list(range(total))
    assert sorted(second.tolist()) == list(range(total))
    assert not np.array_equal(first, second)  # reshuffled for the second epoch
    assert not np.array_equal(first, np.arange(total))  # shuffled at all


def test_on_policy_update_with_non_dividing_batch_uses_distinct_transitions():
    n_steps, n_envs, batch_size, n_epochs = 4, 3, 5, 2  # 12 transitions, 2 minibatches of 5
    total = n_steps * n_envs
    rollout = on_policy_rollout(n_steps, n_envs)
    process, update_step, init, _ = on_policy_toy(total)
    update = jax.jit(make_on_policy_update(process, update_step, batch_size, n_epochs))

    state, _, _ = update(init, rollout, jax.random.PRNGKey(3))

    visits = np.asarray(state["visits"])
    assert visits.max() <= n_epochs  # no transition twice in one epoch
    assert visits.sum() == n_epochs * 10
    assert int(state["steps"]) == n_epochs * 2
