"""The update builders both training loops share: one compiled update call of an off-policy
agent (sample, process, step from a replay buffer, ``n_epochs`` times) and of an on-policy agent
(process a rollout, then ``n_epochs`` passes of shuffled minibatches), and the replay buffer and
sample length an off-policy config asks for."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from kitae import guards
from kitae.buffer import PrioritizedSampling, ReplayBuffer, make_replay_buffer
from kitae.config import AlgoConfig
from kitae.frame_replay import frame_stack_from_config


def replay_buffer_from_config(config: AlgoConfig, n_updates: int) -> ReplayBuffer:
    """The replay buffer an off-policy config asks for.

    Reads ``update_cfg.max_buffer_size`` and, when ``algo_params`` has them, ``prioritized``,
    ``priority_exponent`` (alpha), ``importance_exponent`` (beta at the start, annealed to 1 over
    the run's ``n_updates * update_cfg.n_epochs`` gradient steps) and ``priority_eps``, and
    ``update_cfg.frame_stack_replay`` / ``frame_stack_axis`` (see
    :func:`kitae.frame_replay.frame_stack_from_config`).
    """
    p = config.algo_params
    return make_replay_buffer(
        config.update_cfg.max_buffer_size,
        config.env_cfg.n_envs,
        prioritized=bool(getattr(p, "prioritized", False)),
        alpha=getattr(p, "priority_exponent", 0.6),
        beta_start=getattr(p, "importance_exponent", 0.4),
        beta_steps=max(n_updates * config.update_cfg.n_epochs, 1),
        eps=getattr(p, "priority_eps", 1e-6),
        frame_stack=frame_stack_from_config(config),
    )


def sequence_length_from_config(config: AlgoConfig) -> int | None:
    """Transitions per sample: ``algo_params.sequence_length`` when the params have one (e.g.
    recurrent agents), else ``algo_params.n_step`` when it is above 1 (samples are windows), else
    ``None`` (single transitions)."""
    length = getattr(config.algo_params, "sequence_length", None)
    if length is not None:
        return int(length)
    n_step = int(getattr(config.algo_params, "n_step", 1))
    return n_step if n_step > 1 else None


def make_off_policy_update(
    buffer: ReplayBuffer,
    process_experience_fn: Callable,
    update_step_fn: Callable,
    batch_size: int,
    n_epochs: int,
    *,
    sequence_length: int | None = None,
) -> Callable:
    """Builds ``update(state, buffer_state, key) -> (state, buffer_state, key, info)``.

    Each of the ``n_epochs`` scan iterations samples ``batch_size`` transitions (windows of
    ``sequence_length`` transitions when given), processes them and applies one
    ``update_step_fn``; ``info`` is averaged over iterations and gets the non-finite flags of
    :func:`kitae.guards.with_nonfinite_flags` (``info["nonfinite"]``). With a
    :class:`~kitae.buffer.PrioritizedReplayBuffer`, sampling is proportional to priority, the
    importance weights go into the processed batch's ``weight`` field, and the update's
    ``info["td_error"]`` is written back as priorities. ``buffer_state`` comes back unchanged for
    a uniform buffer (jit it with ``donate_argnums=1`` so nothing is copied).
    """
    prioritized = isinstance(buffer, PrioritizedSampling)
    length = sequence_length or 1

    def update(state, buffer_state, key):
        key, sub = jax.random.split(key)

        def body(carry, step_key):
            state, buffer_state = carry
            k_sample, k_process, k_update = jax.random.split(step_key, 3)
            slots, envs = buffer.sample_indices(buffer_state, k_sample, batch_size, length)
            batch = buffer.gather(buffer_state, slots, envs, sequence_length)
            processed = process_experience_fn(state, k_process, batch)
            if prioritized:
                if "weight" not in getattr(processed, "_fields", ()):
                    raise TypeError(
                        "prioritized replay needs process_experience_fn to return a NamedTuple "
                        f"with a `weight` field; got {type(processed).__name__}."
                    )
                weights = buffer.importance_weights(buffer_state, slots, envs, length)
                processed = processed._replace(weight=weights)
            state, info = update_step_fn(state, k_update, processed)
            if prioritized:
                info = dict(info)
                if "td_error" not in info:
                    raise KeyError(
                        "prioritized replay needs update_step_fn's info to hold 'td_error' "
                        "(per-sample [B] errors written back as priorities)."
                    )
                td_error = info.pop("td_error")
                buffer_state = buffer.update_priorities(buffer_state, slots, envs, td_error)
            return (state, buffer_state), info

        if prioritized:
            (state, buffer_state), infos = jax.lax.scan(
                body, (state, buffer_state), jax.random.split(sub, n_epochs)
            )
        else:
            # The storage is only read: keep it out of the loop carry.
            def read_only(state, step_key):
                (state, _), info = body((state, buffer_state), step_key)
                return state, info

            state, infos = jax.lax.scan(read_only, state, jax.random.split(sub, n_epochs))
        info = guards.with_nonfinite_flags(state, jax.tree.map(jnp.mean, infos))
        return state, buffer_state, key, info

    return update


def make_on_policy_update(
    process_experience_fn, update_step_fn, batch_size, n_epochs, prepare_rollout_fn=None
):
    """Builds ``update(state, rollout, key) -> (state, key, info)`` for on-policy agents.

    ``rollout`` has leaves ``[T, N, ...]``. ``prepare_rollout_fn(state, rollout) -> (state,
    rollout)``, when given, runs first on the whole rollout (e.g.
    :func:`kitae.normalization.normalize_rollout`). ``process_experience_fn`` is vmapped over envs
    (it sees ``[T, ...]``), its output is flattened to ``[T * N, ...]``, then ``n_epochs`` passes
    of shuffled minibatches of ``batch_size`` each apply one ``update_step_fn``; ``info`` is
    averaged and gets the non-finite flags of :func:`kitae.guards.with_nonfinite_flags`.
    """

    def update(state, rollout, key):
        if prepare_rollout_fn is not None:
            state, rollout = prepare_rollout_fn(state, rollout)
        key, k_process, k_epochs = jax.random.split(key, 3)
        n_steps, n_envs = jax.tree.leaves(rollout)[0].shape[:2]
        total = n_steps * n_envs
        n_minibatches = total // batch_size
        processed = jax.vmap(process_experience_fn, in_axes=(None, 0, 1), out_axes=1)(
            state, jax.random.split(k_process, n_envs), rollout
        )
        flat = jax.tree.map(lambda x: x.reshape((total, *x.shape[2:])), processed)

        def epoch(state, epoch_key):
            k_perm, k_update = jax.random.split(epoch_key)
            perm = jax.random.permutation(k_perm, total)[: n_minibatches * batch_size]
            minibatches = jax.tree.map(
                lambda x: x[perm].reshape((n_minibatches, batch_size, *x.shape[1:])), flat
            )

            def minibatch(state, inputs):
                batch, step_key = inputs
                return update_step_fn(state, step_key, batch)

            return jax.lax.scan(
                minibatch, state, (minibatches, jax.random.split(k_update, n_minibatches))
            )

        state, infos = jax.lax.scan(epoch, state, jax.random.split(k_epochs, n_epochs))
        return state, key, guards.with_nonfinite_flags(state, jax.tree.map(jnp.mean, infos))

    return update


__all__ = [
    "make_off_policy_update",
    "make_on_policy_update",
    "replay_buffer_from_config",
    "sequence_length_from_config",
]
