"""Distributional Q-learning numerics: C51 projection and loss, quantile (Huber) regression.

Conventions (rlax-style): every function handles ONE transition; callers ``vmap`` over the
batch. ``_tm1`` arrays belong to the transition's observation (the online network's outputs),
``_t`` arrays to its next observation (the target distribution), ``r_t`` is the transition's
reward and ``discount_t = gamma * (1 - terminated_t)``. The bootstrap action is chosen by the
caller (greedy or double-Q), which passes only the target distribution at that action; the TD
losses do not differentiate their targets.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import rlax


def categorical_atoms(v_min: float, v_max: float, n_atoms: int) -> jax.Array:
    """The fixed C51 support: ``n_atoms`` evenly spaced values from ``v_min`` to ``v_max``.

    Args:
        v_min: smallest atom.
        v_max: largest atom.
        n_atoms: number of atoms.

    Returns:
        ``[n_atoms]`` float32 atoms.

    Raises:
        ValueError: if ``n_atoms < 2`` or ``v_min >= v_max``.
    """
    if n_atoms < 2:
        raise ValueError(f"n_atoms={n_atoms!r} is invalid: it must be >= 2.")
    if not v_min < v_max:
        raise ValueError(f"v_min={v_min!r} and v_max={v_max!r} are invalid: need v_min < v_max.")
    return jnp.linspace(v_min, v_max, n_atoms, dtype=jnp.float32)


def categorical_q_values(logits: jax.Array, atoms: jax.Array) -> jax.Array:
    """Expected values ``Q = sum_i softmax(logits)_i * z_i`` of categorical distributions.

    Args:
        logits: ``[..., n_atoms]``, e.g. ``[B, A, n_atoms]`` from a C51 network.
        atoms: the support ``[n_atoms]``.

    Returns:
        ``[...]``, e.g. ``[B, A]``.
    """
    chex.assert_rank(atoms, 1)
    chex.assert_axis_dimension(logits, -1, atoms.shape[0])
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * atoms, axis=-1)


def categorical_projection(
    r_t: chex.Numeric, discount_t: chex.Numeric, probs_t: jax.Array, atoms: jax.Array
) -> jax.Array:
    """Projects the C51 target ``r_t + discount_t * z`` (with probabilities ``probs_t``) onto ``z``.

    The target atoms are clipped to ``[v_min, v_max]`` and each one's mass is split between its
    two neighbouring support points in proportion to closeness, via ``rlax.categorical_l2_project``
    (the Cramér projection). On an evenly spaced support this is Algorithm 1 of the paper when an
    atom falls strictly between two support points; when it lands exactly on one, all its mass
    goes there (the literal algorithm, with ``l = u``, would drop it).
    See "A Distributional Perspective on Reinforcement Learning", Bellemare et al., 2017.

    Args:
        r_t: reward, scalar.
        discount_t: ``gamma * (1 - terminated_t)``, scalar (0 puts all mass at ``r_t``).
        probs_t: ``[n_atoms]`` target probabilities at the bootstrap action.
        atoms: the support ``[n_atoms]``, increasing.

    Returns:
        ``[n_atoms]`` projected target probabilities on ``atoms``, gradients stopped.
    """
    chex.assert_rank([r_t, discount_t, probs_t, atoms], [0, 0, 1, 1])
    chex.assert_type([r_t, discount_t, probs_t, atoms], float)
    chex.assert_equal_shape([probs_t, atoms])
    target_atoms = r_t + discount_t * atoms
    return jax.lax.stop_gradient(rlax.categorical_l2_project(target_atoms, probs_t, atoms))


def categorical_td_loss(
    logits_tm1: jax.Array,
    a_tm1: chex.Numeric,
    r_t: chex.Numeric,
    discount_t: chex.Numeric,
    probs_t: jax.Array,
    atoms: jax.Array,
) -> jax.Array:
    """C51 loss: cross-entropy from the projected target to the online distribution at ``a_tm1``.

    See "A Distributional Perspective on Reinforcement Learning", Bellemare et al., 2017.

    Args:
        logits_tm1: ``[A, n_atoms]`` online logits at the observation.
        a_tm1: taken action, int scalar.
        r_t: reward, scalar.
        discount_t: ``gamma * (1 - terminated_t)``, scalar.
        probs_t: ``[n_atoms]`` target probabilities at the bootstrap action (chosen by the
            caller, e.g. by the online network for double Q-learning).
        atoms: the support ``[n_atoms]``.

    Returns:
        Scalar ``-sum_i m_i log softmax(logits_tm1[a_tm1])_i`` with ``m`` the
        :func:`categorical_projection` (no gradient flows into ``probs_t``).
    """
    chex.assert_rank([logits_tm1, a_tm1, r_t, discount_t, probs_t, atoms], [2, 0, 0, 0, 1, 1])
    chex.assert_type([logits_tm1, a_tm1], [float, int])
    chex.assert_axis_dimension(logits_tm1, 1, atoms.shape[0])
    target = categorical_projection(r_t, discount_t, probs_t, atoms)
    log_probs_tm1 = jax.nn.log_softmax(logits_tm1[a_tm1])
    return -jnp.sum(target * log_probs_tm1)


def quantile_midpoints(n: int) -> jax.Array:
    """The QR-DQN quantile midpoints ``tau_hat_i = (2i + 1) / (2n)``, ``i = 0..n-1``.

    See "Distributional Reinforcement Learning with Quantile Regression", Dabney et al., 2018.

    Args:
        n: number of quantiles.

    Returns:
        ``[n]`` float32 midpoints.

    Raises:
        ValueError: if ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n={n!r} is invalid: the number of quantiles must be >= 1.")
    return (2.0 * jnp.arange(n, dtype=jnp.float32) + 1.0) / (2.0 * n)


def quantile_huber_loss(
    dist_src: jax.Array,
    tau_src: jax.Array,
    dist_target: jax.Array,
    kappa: float | jax.Array = 1.0,
) -> jax.Array:
    """Quantile Huber loss between ``N`` source quantiles and ``N'`` target samples.

    With ``delta_ij = dist_target_j - dist_src_i``, the loss is
    ``sum_i mean_j |tau_i - 1{delta_ij < 0}| * Huber_kappa(delta_ij) / kappa``: summed over the
    source quantiles and averaged over the target samples (the IQN paper's Eq. 3 and its reference
    implementation). Written here rather than with ``rlax.quantile_regression_loss``, which has
    the same reduction but does not divide by ``kappa`` and needs a Python ``kappa``.
    See "Distributional Reinforcement Learning with Quantile Regression", Dabney et al., 2018, and
    "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al., 2018.

    Args:
        dist_src: ``[N]`` source (online) quantile values.
        tau_src: ``[N]`` their quantile levels in ``[0, 1]``.
        dist_target: ``[N']`` target samples; gradients flow into them (the TD losses below stop
            them).
        kappa: Huber threshold, ``> 0``; may be traced.

    Returns:
        Scalar loss.

    Raises:
        ValueError: if ``kappa`` is a concrete number ``<= 0``.
    """
    chex.assert_rank([dist_src, tau_src, dist_target], 1)
    chex.assert_type([dist_src, tau_src, dist_target], float)
    chex.assert_equal_shape([dist_src, tau_src])
    if isinstance(kappa, (int, float)) and kappa <= 0:
        raise ValueError(f"kappa={kappa!r} is invalid: it must be > 0.")
    delta = dist_target[None, :] - dist_src[:, None]  # [N, N']
    indicator = jax.lax.stop_gradient((delta < 0).astype(delta.dtype))
    weight = jnp.abs(tau_src[:, None] - indicator)
    loss = weight * rlax.huber_loss(delta, kappa) / kappa
    return jnp.sum(jnp.mean(loss, axis=1))


def quantile_td_loss(
    dist_q_tm1: jax.Array,
    tau_tm1: jax.Array,
    a_tm1: chex.Numeric,
    r_t: chex.Numeric,
    discount_t: chex.Numeric,
    dist_qa_t: jax.Array,
    kappa: float | jax.Array = 1.0,
) -> jax.Array:
    """Quantile TD loss at the taken action, for given quantile levels (IQN's sampled ``tau``).

    The target ``r_t + discount_t * dist_qa_t`` (gradients stopped) is regressed on with
    :func:`quantile_huber_loss`.
    See "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al.,
    2018.

    Args:
        dist_q_tm1: ``[A, N]`` online quantile values at the observation.
        tau_tm1: ``[N]`` the quantile levels of ``dist_q_tm1``.
        a_tm1: taken action, int scalar.
        r_t: reward, scalar.
        discount_t: ``gamma * (1 - terminated_t)``, scalar.
        dist_qa_t: ``[N']`` target quantile values at the bootstrap action (chosen by the caller).
        kappa: Huber threshold, ``> 0``.

    Returns:
        Scalar loss.
    """
    chex.assert_rank([dist_q_tm1, tau_tm1, a_tm1, r_t, discount_t, dist_qa_t], [2, 1, 0, 0, 0, 1])
    chex.assert_type([dist_q_tm1, a_tm1], [float, int])
    chex.assert_axis_dimension(dist_q_tm1, 1, tau_tm1.shape[0])
    target = jax.lax.stop_gradient(r_t + discount_t * dist_qa_t)
    return quantile_huber_loss(dist_q_tm1[a_tm1], tau_tm1, target, kappa)


def qr_dqn_td_loss(
    dist_q_tm1: jax.Array,
    a_tm1: chex.Numeric,
    r_t: chex.Numeric,
    discount_t: chex.Numeric,
    dist_qa_t: jax.Array,
    kappa: float | jax.Array = 1.0,
) -> jax.Array:
    """QR-DQN loss: :func:`quantile_td_loss` at the fixed midpoints ``(2i + 1) / (2N)``.

    See "Distributional Reinforcement Learning with Quantile Regression", Dabney et al., 2018.

    Args:
        dist_q_tm1: ``[A, N]`` online quantile values at the observation.
        a_tm1: taken action, int scalar.
        r_t: reward, scalar.
        discount_t: ``gamma * (1 - terminated_t)``, scalar.
        dist_qa_t: ``[N']`` target quantile values at the bootstrap action (chosen by the caller).
        kappa: Huber threshold, ``> 0``.

    Returns:
        Scalar loss.
    """
    chex.assert_rank(dist_q_tm1, 2)
    tau_tm1 = quantile_midpoints(dist_q_tm1.shape[1]).astype(dist_q_tm1.dtype)
    return quantile_td_loss(dist_q_tm1, tau_tm1, a_tm1, r_t, discount_t, dist_qa_t, kappa)
