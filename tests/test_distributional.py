"""Tests for kitae.distributional (C51 / quantile numerics), kitae.modules.distributional, and
the targets of the C51, QR-DQN and IQN agents with hand-set online and target networks."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import rlax
from envs import corridor, make_vec
from helpers import small_config

from kitae.algos import C51Params, IQNParams, QRDQNParams
from kitae.algos import c51 as c51_module
from kitae.algos import iqn as iqn_module
from kitae.algos import qrdqn as qrdqn_module
from kitae.buffer import Experience
from kitae.distributional import (
    categorical_atoms,
    categorical_projection,
    categorical_q_values,
    categorical_td_loss,
    qr_dqn_td_loss,
    quantile_huber_loss,
    quantile_midpoints,
    quantile_td_loss,
)
from kitae.modules.distributional import (
    CosineEmbedding,
    DistributionQValue,
    ImplicitQuantileQValue,
    categorical_qvalue_factory,
    cosine_features,
    implicit_quantile_qvalue_factory,
    quantile_qvalue_factory,
)
from kitae.modules.modules import init_params
from kitae.modules.train_state import TrainState

KEY = jax.random.PRNGKey(0)
OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTION_SPACE = gym.spaces.Discrete(2)

# ---------------------------------------------------------------------------------------------
# C51 numerics
# ---------------------------------------------------------------------------------------------

ATOMS = jnp.array([-2.0, -1.0, 0.0, 1.0, 2.0])
PROBS_T = jnp.array([0.1, 0.2, 0.3, 0.25, 0.15])


def f32(x):
    return jnp.asarray(x, jnp.float32)


def test_categorical_atoms_are_evenly_spaced_and_validated():
    np.testing.assert_allclose(categorical_atoms(-2.0, 2.0, 5), ATOMS)
    with pytest.raises(ValueError, match="n_atoms=1"):
        categorical_atoms(-1.0, 1.0, 1)
    with pytest.raises(ValueError, match="v_min=1.0 and v_max=1.0"):
        categorical_atoms(1.0, 1.0, 3)


@pytest.mark.parametrize(
    ("r_t", "discount_t", "expected"),
    [
        # Tz = 0.3 + 0.5 z = [-0.7, -0.2, 0.3, 0.8, 1.3]; each atom splits its mass between its
        # neighbours in proportion to closeness:
        #   -0.7: 0.7*0.1 to -1, 0.3*0.1 to 0     -0.2: 0.2*0.2 to -1, 0.8*0.2 to 0
        #    0.3: 0.7*0.3 to 0,  0.3*0.3 to 1      0.8: 0.2*0.25 to 0, 0.8*0.25 to 1
        #    1.3: 0.7*0.15 to 1, 0.3*0.15 to 2
        (0.3, 0.5, [0.0, 0.11, 0.45, 0.395, 0.045]),
        # Tz = 0.5 + 0.5 z = [-0.5, 0, 0.5, 1, 1.5]: atoms that land on a support point keep all
        # their mass there (0 and 1), the others split it half/half.
        (0.5, 0.5, [0.0, 0.05, 0.4, 0.475, 0.075]),
        # Tz = 1.5 + z = [-0.5, 0.5, 1.5, 2.5, 3.5], clipped at v_max to [.., 2, 2].
        (1.5, 1.0, [0.0, 0.05, 0.15, 0.25, 0.55]),
        # Tz = -3 + z = [-5, -4, -3, -2, -1], clipped at v_min: 0.1+0.2+0.3+0.25 on -2.
        (-3.0, 1.0, [0.85, 0.15, 0.0, 0.0, 0.0]),
        # terminal: Tz = r for every atom; 0.3 splits 0.7 / 0.3 between 0 and 1.
        (0.3, 0.0, [0.0, 0.0, 0.7, 0.3, 0.0]),
        # terminal with the reward on a support point: one-hot.
        (-1.0, 0.0, [0.0, 1.0, 0.0, 0.0, 0.0]),
        # terminal with the reward beyond v_max: all mass on v_max.
        (5.0, 0.0, [0.0, 0.0, 0.0, 0.0, 1.0]),
    ],
    ids=[
        "between-support-points",
        "on-support-points-keeps-mass",
        "clipped-at-v-max",
        "clipped-at-v-min",
        "terminal-between",
        "terminal-on-point",
        "terminal-clipped",
    ],
)
def test_categorical_projection_by_hand(r_t, discount_t, expected):
    projected = categorical_projection(f32(r_t), f32(discount_t), PROBS_T, ATOMS)
    np.testing.assert_allclose(projected, expected, atol=1e-6)
    np.testing.assert_allclose(projected.sum(), 1.0, rtol=1e-6)


def c51_algorithm_1(r_t, discount_t, probs_t, atoms):
    """Algorithm 1 of Bellemare et al. (2017), literally, for an evenly spaced support."""
    v_min, v_max, delta_z = atoms[0], atoms[-1], atoms[1] - atoms[0]
    m = np.zeros(len(atoms))
    for z_j, p_j in zip(atoms, probs_t, strict=True):
        b = (np.clip(r_t + discount_t * z_j, v_min, v_max) - v_min) / delta_z
        lower, upper = int(np.floor(b)), int(np.ceil(b))
        m[lower] += p_j * (upper - b)
        m[upper] += p_j * (b - lower)
    return m


@pytest.mark.parametrize("seed", range(3))
def test_categorical_projection_is_c51_algorithm_1_off_the_support_points(seed):
    rng = np.random.default_rng(seed)
    atoms = np.linspace(-10.0, 10.0, 51)
    probs_t = rng.dirichlet(np.ones(51))
    # no clipping (|r_t| + 10 discount_t < 10) and, almost surely, no atom on a support point
    r_t, discount_t = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 0.85)
    projected = categorical_projection(f32(r_t), f32(discount_t), f32(probs_t), f32(atoms))
    expected = c51_algorithm_1(r_t, discount_t, probs_t, atoms)
    np.testing.assert_allclose(projected, expected, atol=1e-5)


def test_categorical_projection_with_identity_transition_is_identity():
    projected = categorical_projection(f32(0.0), f32(1.0), PROBS_T, ATOMS)
    np.testing.assert_allclose(projected, PROBS_T, atol=1e-7)


def test_categorical_projection_rejects_bad_ranks():
    with pytest.raises(AssertionError):
        categorical_projection(f32(0.0), f32(1.0), jnp.ones((2, 5)) / 5, ATOMS)
    with pytest.raises(AssertionError):
        categorical_projection(f32([0.0]), f32(1.0), PROBS_T, ATOMS)


LOGITS_TM1 = jnp.log(jnp.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]))  # [A=2, 3 atoms]
ATOMS3 = jnp.array([-1.0, 0.0, 1.0])


def test_categorical_td_loss_by_hand():
    # terminal, r = 0.3: target m = [0, 0.7, 0.3]; online probs at a=1 are [0.2, 0.3, 0.5]
    loss = categorical_td_loss(
        LOGITS_TM1, jnp.int32(1), f32(0.3), f32(0.0), jnp.array([1.0, 0.0, 0.0]), ATOMS3
    )
    np.testing.assert_allclose(loss, -(0.7 * np.log(0.3) + 0.3 * np.log(0.5)), rtol=1e-6)
    # the same target against action 0 ([0.6, 0.3, 0.1]) gives another value
    loss0 = categorical_td_loss(
        LOGITS_TM1, jnp.int32(0), f32(0.3), f32(0.0), jnp.array([1.0, 0.0, 0.0]), ATOMS3
    )
    np.testing.assert_allclose(loss0, -(0.7 * np.log(0.3) + 0.3 * np.log(0.1)), rtol=1e-6)


def test_categorical_td_loss_bootstraps_from_probs_t():
    # r = 0, discount = 0.5: Tz = [-0.5, 0, 0.5]; probs_t [0.2, 0.4, 0.4]
    # -> m = [0.1, 0.1 + 0.4 + 0.2, 0.2] = [0.1, 0.7, 0.2]
    loss = categorical_td_loss(
        LOGITS_TM1, jnp.int32(1), f32(0.0), f32(0.5), jnp.array([0.2, 0.4, 0.4]), ATOMS3
    )
    expected = -(0.1 * np.log(0.2) + 0.7 * np.log(0.3) + 0.2 * np.log(0.5))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_categorical_td_loss_gradient_is_softmax_minus_target_at_taken_action_only():
    probs_t = jnp.array([0.2, 0.4, 0.4])

    def loss(logits, probs):
        return categorical_td_loss(logits, jnp.int32(1), f32(0.0), f32(0.5), probs, ATOMS3)

    grad_logits, grad_probs = jax.grad(loss, argnums=(0, 1))(LOGITS_TM1, probs_t)
    np.testing.assert_allclose(grad_logits[1], np.array([0.2, 0.3, 0.5]) - [0.1, 0.7, 0.2], 1e-5)
    np.testing.assert_array_equal(grad_logits[0], np.zeros(3))
    np.testing.assert_array_equal(grad_probs, np.zeros(3))  # the target is not differentiated


def test_categorical_td_loss_vmaps_over_a_batch_like_a_loop():
    keys = jax.random.split(KEY, 3)
    logits = jax.random.normal(keys[0], (4, 2, 5))
    probs_t = jax.nn.softmax(jax.random.normal(keys[1], (4, 5)))
    actions = jnp.array([0, 1, 1, 0], jnp.int32)
    rewards = jnp.array([0.3, -1.0, 2.5, 0.0])
    discounts = jnp.array([0.9, 0.0, 0.9, 0.5])
    batched = jax.jit(jax.vmap(categorical_td_loss, in_axes=(0, 0, 0, 0, 0, None)))(
        logits, actions, rewards, discounts, probs_t, ATOMS
    )
    looped = [
        categorical_td_loss(logits[i], actions[i], rewards[i], discounts[i], probs_t[i], ATOMS)
        for i in range(4)
    ]
    np.testing.assert_allclose(batched, looped, rtol=1e-5)


def test_categorical_td_loss_rejects_float_actions_and_wrong_atom_count():
    with pytest.raises(AssertionError):
        categorical_td_loss(LOGITS_TM1, f32(1.0), f32(0.0), f32(0.5), PROBS_T[:3], ATOMS3)
    with pytest.raises(AssertionError):
        categorical_td_loss(LOGITS_TM1, jnp.int32(1), f32(0.0), f32(0.5), PROBS_T, ATOMS)


def test_categorical_q_values_is_expectation_over_the_support():
    q = categorical_q_values(LOGITS_TM1[None], ATOMS3)  # [B=1, A=2]
    np.testing.assert_allclose(q, [[-0.6 + 0.1, -0.2 + 0.5]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Quantile numerics
# ---------------------------------------------------------------------------------------------

THETA = jnp.array([0.0, 2.0])  # N = 2 source quantiles
TAU = jnp.array([0.25, 0.75])
TARGET = jnp.array([-1.0, 0.5, 3.0])  # N' = 3 target samples

# rho_ij = |tau_i - 1{delta_ij < 0}| Huber_1(delta_ij), delta_ij = target_j - theta_i
#   i=0 (theta 0, tau .25): delta [-1, .5, 3]   -> .75*.5 + .25*.125 + .25*2.5  = 1.03125
#   i=1 (theta 2, tau .75): delta [-3, -1.5, 1] -> .25*2.5 + .25*1.0 + .75*.5   = 1.25
PAIRWISE_SUM = 1.03125 + 1.25
EXPECTED_KAPPA1 = PAIRWISE_SUM / 3  # sum over the N = 2 sources, mean over the N' = 3 targets


def test_quantile_huber_loss_by_hand_sums_over_sources_and_averages_over_targets():
    loss = quantile_huber_loss(THETA, TAU, TARGET, kappa=1.0)
    np.testing.assert_allclose(loss, EXPECTED_KAPPA1, rtol=1e-6)
    # With N = 2 != N' = 3, every other reduction gives another number.
    other_reductions = {
        "mean over both": PAIRWISE_SUM / 6,
        "sum over both": PAIRWISE_SUM,
        "mean over sources, sum over targets": PAIRWISE_SUM / 2,
    }
    for name, value in other_reductions.items():
        assert not np.isclose(loss, value, rtol=1e-3), name


def test_quantile_huber_loss_divides_by_kappa():
    # Huber_2: 0.5 d^2 for |d| <= 2, else 2 (|d| - 1)
    #   i=0: .75*.5 + .25*.125 + .25*4   = 1.40625
    #   i=1: .25*4  + .25*1.125 + .75*.5 = 1.65625
    loss = quantile_huber_loss(THETA, TAU, TARGET, kappa=2.0)
    np.testing.assert_allclose(loss, (1.40625 + 1.65625) / 2.0 / 3.0, rtol=1e-6)


def test_quantile_huber_loss_gradient_by_hand():
    # d/dtheta_i = -(1/N') sum_j w_ij clip(delta_ij, -1, 1)
    #   i=0: w [.75, .25, .25], clip [-1, .5, 1]  -> -(-.375) / 3
    #   i=1: w [.25, .25, .75], clip [-1, -1, 1]  -> -(.25) / 3
    grad = jax.grad(quantile_huber_loss)(THETA, TAU, TARGET)
    np.testing.assert_allclose(grad, [0.125, -0.25 / 3], rtol=1e-6)


@pytest.mark.parametrize("kappa", [0.5, 1.0, 2.0], ids=["kappa-0.5", "kappa-1", "kappa-2"])
def test_quantile_huber_loss_is_rlax_quantile_regression_loss_over_kappa(kappa):
    keys = jax.random.split(KEY, 3)
    src = 2.0 * jax.random.normal(keys[0], (5,))
    tau = jax.random.uniform(keys[1], (5,))
    target = 2.0 * jax.random.normal(keys[2], (7,))
    expected = rlax.quantile_regression_loss(src, tau, target, huber_param=kappa) / kappa
    np.testing.assert_allclose(quantile_huber_loss(src, tau, target, kappa), expected, rtol=1e-5)


def test_quantile_huber_loss_accepts_a_traced_kappa():
    loss = jax.jit(quantile_huber_loss)(THETA, TAU, TARGET, f32(2.0))
    np.testing.assert_allclose(loss, (1.40625 + 1.65625) / 6.0, rtol=1e-6)


def test_quantile_huber_loss_validates_inputs():
    with pytest.raises(ValueError, match="kappa=0.0"):
        quantile_huber_loss(THETA, TAU, TARGET, kappa=0.0)
    with pytest.raises(AssertionError):
        quantile_huber_loss(THETA, TAU[:1], TARGET)
    with pytest.raises(AssertionError):
        quantile_huber_loss(THETA[None], TAU, TARGET)


def test_quantile_midpoints():
    np.testing.assert_allclose(quantile_midpoints(2), [0.25, 0.75])
    np.testing.assert_allclose(quantile_midpoints(4), [1 / 8, 3 / 8, 5 / 8, 7 / 8])
    with pytest.raises(ValueError, match="n=0"):
        quantile_midpoints(0)


DIST_Q_TM1 = jnp.array([[5.0, 7.0], [0.0, 2.0]])  # [A=2, N=2]; action 1 holds THETA


def test_qr_dqn_td_loss_by_hand_uses_midpoints_and_the_taken_action():
    # target r + discount * dist_qa_t = 1 + 0.5 * [-4, -1, 4] = TARGET; taus = [0.25, 0.75] = TAU
    dist_qa_t = jnp.array([-4.0, -1.0, 4.0])
    loss = qr_dqn_td_loss(DIST_Q_TM1, jnp.int32(1), f32(1.0), f32(0.5), dist_qa_t)
    np.testing.assert_allclose(loss, EXPECTED_KAPPA1, rtol=1e-6)
    other = qr_dqn_td_loss(DIST_Q_TM1, jnp.int32(0), f32(1.0), f32(0.5), dist_qa_t)
    assert not np.isclose(other, EXPECTED_KAPPA1)


def test_qr_dqn_td_loss_terminal_regresses_on_the_reward():
    # discount 0: every target sample is r = 1; theta = [0, 2], taus [.25, .75]
    # i=0: delta 1 -> .25 * .5;  i=1: delta -1 -> .25 * .5  -> loss 0.25 (mean over N' is a no-op)
    loss = qr_dqn_td_loss(DIST_Q_TM1, jnp.int32(1), f32(1.0), f32(0.0), jnp.array([9.0, -9.0]))
    np.testing.assert_allclose(loss, 0.25, rtol=1e-6)


def test_quantile_td_loss_uses_the_given_taus_and_stops_target_gradients():
    dist_qa_t = jnp.array([-4.0, -1.0, 4.0])

    def loss(dist_q_tm1, dist_qa_t, tau):
        return quantile_td_loss(dist_q_tm1, tau, jnp.int32(1), f32(1.0), f32(0.5), dist_qa_t)

    np.testing.assert_allclose(loss(DIST_Q_TM1, dist_qa_t, TAU), EXPECTED_KAPPA1, rtol=1e-6)
    swapped = loss(DIST_Q_TM1, dist_qa_t, TAU[::-1])
    assert not np.isclose(swapped, EXPECTED_KAPPA1)
    grad_q, grad_target = jax.grad(loss, argnums=(0, 1))(DIST_Q_TM1, dist_qa_t, TAU)
    np.testing.assert_allclose(grad_q[1], [0.125, -0.25 / 3], rtol=1e-6)
    np.testing.assert_array_equal(grad_q[0], np.zeros(2))
    np.testing.assert_array_equal(grad_target, np.zeros(3))


def test_quantile_td_loss_vmaps_with_per_sample_taus_like_a_loop():
    keys = jax.random.split(KEY, 4)
    dist_q_tm1 = jax.random.normal(keys[0], (4, 3, 8))  # [B, A, N]
    taus = jax.random.uniform(keys[1], (4, 8))
    dist_qa_t = jax.random.normal(keys[2], (4, 6))  # N' = 6
    actions = jnp.array([0, 2, 1, 0], jnp.int32)
    rewards = jnp.array([1.0, 0.0, -0.5, 2.0])
    discounts = jnp.array([0.99, 0.0, 0.99, 0.99])
    batched = jax.jit(jax.vmap(quantile_td_loss, in_axes=(0, 0, 0, 0, 0, 0, None)))(
        dist_q_tm1, taus, actions, rewards, discounts, dist_qa_t, 1.0
    )
    looped = [
        quantile_td_loss(dist_q_tm1[i], taus[i], actions[i], rewards[i], discounts[i], dist_qa_t[i])
        for i in range(4)
    ]
    np.testing.assert_allclose(batched, looped, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


def init(module, *input_shapes, key=KEY):
    """``init_params`` compiled as one program (eager init would compile op by op)."""
    return jax.jit(init_params, static_argnums=(1, 2))(key, module, tuple(input_shapes))


def apply(module, params, *args, **kwargs):
    return jax.jit(lambda p, *a: module.apply(p, *a, **kwargs))(params, *args)


def observations(batch_size=3):
    return jax.random.normal(jax.random.PRNGKey(1), (batch_size, 3))


def test_cosine_features_are_cos_pi_i_tau_from_i_one_as_in_dopamine():
    features = cosine_features(jnp.array([[1 / 3, 0.5]]), n_cosines=4)
    assert features.shape == (1, 2, 4)
    np.testing.assert_allclose(features[0, 0], [0.5, -0.5, -1.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(features[0, 1], [0.0, -1.0, 0.0, 1.0], atol=1e-6)
    taus = jax.random.uniform(KEY, (2, 5))
    expected = np.cos(np.pi * np.arange(1, 65) * np.asarray(taus)[..., None])
    np.testing.assert_allclose(cosine_features(taus), expected, atol=1e-4)  # float32 arguments


def test_cosine_embedding_is_relu_of_a_dense_layer_on_64_cosines():
    taus = jax.random.uniform(KEY, (2, 5))
    module = CosineEmbedding(features=8)
    params = module.init(KEY, taus)
    kernel = params["params"]["Dense_0"]["kernel"]
    bias = params["params"]["Dense_0"]["bias"]
    assert kernel.shape == (64, 8)
    out = module.apply(params, taus)
    assert out.shape == (2, 5, 8)
    cosines = np.cos(np.pi * np.arange(1, 65) * np.asarray(taus)[..., None])
    np.testing.assert_allclose(out, np.maximum(cosines @ kernel + bias, 0.0), atol=1e-5)


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_categorical_qvalue_shapes(dueling):
    module = categorical_qvalue_factory(
        OBS_SPACE, ACTION_SPACE, n_atoms=7, hidden_sizes=(8,), dueling=dueling
    )
    params = init(module, (3,))
    logits = apply(module, params, observations())
    assert logits.shape == (3, 2, 7)
    assert categorical_q_values(logits, categorical_atoms(-1.0, 1.0, 7)).shape == (3, 2)


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_quantile_qvalue_shapes(dueling):
    module = quantile_qvalue_factory(
        OBS_SPACE, ACTION_SPACE, n_quantiles=5, hidden_sizes=(8,), dueling=dueling
    )
    params = init(module, (3,))
    assert apply(module, params, observations()).shape == (3, 2, 5)


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_implicit_quantile_qvalue_shapes_for_any_number_of_taus(dueling):
    module = implicit_quantile_qvalue_factory(
        OBS_SPACE, ACTION_SPACE, hidden_sizes=(8,), head_hidden_sizes=(6,), dueling=dueling
    )
    params = init(module, (3,), (4,))
    embedding = params["params"]["CosineEmbedding_0"]["Dense_0"]["kernel"]
    assert embedding.shape == (64, 8)  # 64 cosines -> the torso's width, for the product
    for n_taus in (1, 5):
        taus = jax.random.uniform(KEY, (3, n_taus))
        assert apply(module, params, observations(), taus).shape == (3, 2, n_taus)


def test_implicit_quantile_qvalue_is_equivariant_to_permuting_taus():
    module = ImplicitQuantileQValue(2, hidden_sizes=(8,), head_hidden_sizes=(6,))
    params = init(module, (3,), (4,))
    taus = jax.random.uniform(KEY, (3, 4))
    permutation = jnp.array([2, 0, 3, 1])
    out = apply(module, params, observations(), taus)
    permuted = apply(module, params, observations(), taus[:, permutation])
    np.testing.assert_allclose(permuted, out[:, :, permutation], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, :, 0], out[:, :, 1])  # the output depends on tau


def test_implicit_quantile_qvalue_rejects_taus_of_another_batch():
    module = ImplicitQuantileQValue(2, hidden_sizes=(8,))
    params = init(module, (3,), (4,))
    with pytest.raises(AssertionError):
        module.apply(params, observations(3), jnp.zeros((2, 4)))
    with pytest.raises(AssertionError):
        module.apply(params, observations(3), jnp.zeros((3,)))


@pytest.mark.parametrize(
    ("module", "input_shapes", "n_outputs"),
    [
        (DistributionQValue(3, 5, hidden_sizes=(8,), dueling=True), [(3,)], 5),
        (DistributionQValue(3, 4, hidden_sizes=(8,), dueling=True), [(3,)], 4),
        (ImplicitQuantileQValue(3, hidden_sizes=(8,), dueling=True), [(3,), (4,)], 4),
    ],
    ids=["c51", "qr-dqn", "iqn"],
)
def test_dueling_heads_average_to_the_value_stream(module, input_shapes, n_outputs):
    params = init(module, *input_shapes)
    args = [observations()] + [jax.random.uniform(KEY, (3, 4))] * (len(input_shapes) - 1)
    out, state = module.apply(params, *args, capture_intermediates=True)
    value = state["intermediates"]["head"]["value"]["__call__"][0]
    if isinstance(module, ImplicitQuantileQValue):
        value = value.reshape(3, n_outputs)  # one value per (observation, tau)
    np.testing.assert_allclose(out.mean(axis=1), value, rtol=1e-5, atol=1e-6)


def test_preprocess_fn_is_applied_before_the_torso():
    module = DistributionQValue(2, 3, hidden_sizes=(8,), preprocess_fn=lambda x: 0.0 * x)
    params = init(module, (3,))
    out = apply(module, params, observations())
    np.testing.assert_allclose(out[0], out[1])  # every observation is mapped to zeros


def test_same_key_same_params_and_other_key_other_params():
    module = ImplicitQuantileQValue(2, hidden_sizes=(8,))
    a, b = init(module, (3,), (4,)), init(module, (3,), (4,))
    c = init(module, (3,), (4,), key=jax.random.PRNGKey(7))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    leaves_a, leaves_c = jax.tree.leaves(a), jax.tree.leaves(c)
    assert any(not np.allclose(x, y) for x, y in zip(leaves_a, leaves_c, strict=True))


@pytest.mark.parametrize(
    "factory",
    [categorical_qvalue_factory, quantile_qvalue_factory, implicit_quantile_qvalue_factory],
    ids=["c51", "qr-dqn", "iqn"],
)
def test_factories_reject_non_discrete_action_spaces(factory):
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    with pytest.raises(ValueError, match=r"env_cfg.action_space=.*Discrete"):
        factory(OBS_SPACE, box)
    with pytest.raises(ValueError, match="activation='swish'"):
        factory(OBS_SPACE, ACTION_SPACE, activation="swish")


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (categorical_qvalue_factory, {"n_atoms": 1}, "n_atoms=1"),
        (quantile_qvalue_factory, {"n_quantiles": 0}, "n_quantiles=0"),
        (implicit_quantile_qvalue_factory, {"n_cosines": 0}, "n_cosines=0"),
    ],
    ids=["c51-atoms", "qr-dqn-quantiles", "iqn-cosines"],
)
def test_factories_validate_sizes(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(OBS_SPACE, ACTION_SPACE, **kwargs)


# ---------------------------------------------------------------------------------------------
# Networks and losses together
# ---------------------------------------------------------------------------------------------

BATCH_ACTIONS = jnp.array([0, 1, 1], jnp.int32)
BATCH_REWARDS = jnp.array([1.0, -20.0, 0.0])
BATCH_DISCOUNTS = jnp.array([0.99, 0.0, 0.99])


def test_c51_loss_gradients_through_the_network_are_finite_and_nonzero():
    module = DistributionQValue(2, 11, hidden_sizes=(8,))
    params = init(module, (3,))
    atoms = categorical_atoms(-10.0, 10.0, 11)

    @jax.jit
    def loss_fn(params):
        logits_tm1 = module.apply(params, observations())
        logits_t = module.apply(params, observations() + 1.0)
        a_t = jnp.argmax(categorical_q_values(logits_t, atoms), axis=-1)
        probs_t = jax.nn.softmax(logits_t[jnp.arange(3), a_t])
        losses = jax.vmap(categorical_td_loss, in_axes=(0, 0, 0, 0, 0, None))(
            logits_tm1, BATCH_ACTIONS, BATCH_REWARDS, BATCH_DISCOUNTS, probs_t, atoms
        )
        return losses.mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    assert np.isfinite(loss)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in leaves)


@pytest.mark.parametrize("implicit", [False, True], ids=["qr-dqn", "iqn"])
def test_quantile_loss_gradients_through_the_network_are_finite_and_nonzero(implicit):
    n = 4
    if implicit:
        module = ImplicitQuantileQValue(2, hidden_sizes=(8,), head_hidden_sizes=(8,))
        params = init(module, (3,), (n,))
    else:
        module = DistributionQValue(2, n, hidden_sizes=(8,))
        params = init(module, (3,))

    @jax.jit
    def loss_fn(params, key):
        key_tm1, key_t = jax.random.split(key)
        if implicit:
            tau_tm1 = jax.random.uniform(key_tm1, (3, n))
            dist_tm1 = module.apply(params, observations(), tau_tm1)
            dist_t = module.apply(params, observations() + 1.0, jax.random.uniform(key_t, (3, n)))
        else:
            tau_tm1 = jnp.broadcast_to(quantile_midpoints(n), (3, n))
            dist_tm1 = module.apply(params, observations())
            dist_t = module.apply(params, observations() + 1.0)
        a_t = jnp.argmax(dist_t.mean(axis=-1), axis=-1)
        dist_qa_t = dist_t[jnp.arange(3), a_t]
        losses = jax.vmap(quantile_td_loss)(
            dist_tm1, tau_tm1, BATCH_ACTIONS, BATCH_REWARDS, BATCH_DISCOUNTS, dist_qa_t
        )
        return losses.mean()

    loss, grads = jax.value_and_grad(loss_fn)(params, KEY)
    assert np.isfinite(loss)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in leaves)


# ---------------------------------------------------------------------------------------------
# The agents' targets, with hand-set tables for the online and the target networks
# ---------------------------------------------------------------------------------------------

GAMMA = 0.5
N_TABLE_OBS = 6
DIST_ATOMS = np.linspace(-2.0, 2.0, 5)
DIST_AGENTS = {
    "c51": (c51_module, C51Params, {"n_atoms": 5, "v_min": -2.0, "v_max": 2.0}),
    "qrdqn": (qrdqn_module, QRDQNParams, {"n_quantiles": 3}),
    "iqn": (
        iqn_module,
        IQNParams,
        {"n_tau_samples": 2, "n_tau_prime_samples": 3, "n_quantile_samples": 4},
    ),
}


def distributional_config(name: str, **params):
    module, params_type, extra = DIST_AGENTS[name]
    del module
    return small_config(
        params_type,
        make_vec(corridor, 1),
        params={"gamma": GAMMA, "hidden_sizes": (8,), **extra, **params},
        update={"learning_rate": 1.0, "max_buffer_size": 64, "batch_size": 3},
    )


def hand_tables(name: str) -> tuple[dict, dict]:
    """Online and target params of a hand-made network of ``name``'s output kind, one row per
    observation id. The online network prefers action 0 everywhere, the target network action 1,
    so double-Q and plain greedy bootstraps pick different actions; every row is distinct.

    * C51: ``{"logits": [n_obs, 2, 5]}`` over the atoms ``[-2, -1, 0, 1, 2]``; the target
      distribution of (observation 1, action 0) is ``PROBS_T``.
    * QR-DQN: ``{"quantiles": [n_obs, 2, 3]}``.
    * IQN: ``{"base": [n_obs, 2], "slope": [n_obs, 2]}``, quantile ``base + slope * tau``.
    """
    rng = np.random.default_rng(0)
    tilt = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # toward the high atoms
    prefer = {"online": np.array([1.0, -1.0]), "target": np.array([-1.0, 1.0])}
    tables = {}
    for net, sign in prefer.items():
        if name == "c51":
            logits = 0.3 * rng.normal(size=(N_TABLE_OBS, 2, 5)) + 2.0 * sign[:, None] * tilt
            if net == "target":
                logits[1, 0] = np.log(np.asarray(PROBS_T))
            tables[net] = {"logits": logits.astype(np.float32)}
        elif name == "qrdqn":
            quantiles = np.sort(rng.normal(size=(N_TABLE_OBS, 2, 3)), axis=-1)
            tables[net] = {"quantiles": (quantiles + 2.5 * sign[:, None]).astype(np.float32)}
        else:
            base = rng.normal(size=(N_TABLE_OBS, 2)) + 2.5 * sign
            slope = rng.uniform(0.5, 1.5, size=(N_TABLE_OBS, 2))
            tables[net] = {"base": base.astype(np.float32), "slope": slope.astype(np.float32)}
    return tables["online"], tables["target"]


def hand_apply(name: str):
    """The ``apply_fn`` of :func:`hand_tables`: observation ``[i]`` reads row ``i``."""

    def rows(observations):
        return observations[:, 0].astype(jnp.int32)

    if name == "c51":
        return lambda params, obs: params["logits"][rows(obs)]
    if name == "qrdqn":
        return lambda params, obs: params["quantiles"][rows(obs)]

    def implicit(params, obs, taus):
        base, slope = params["base"][rows(obs)], params["slope"][rows(obs)]
        return base[..., None] + slope[..., None] * taus[:, None, :]

    return implicit


def hand_state(name: str) -> TrainState:
    online, target = hand_tables(name)
    return TrainState.create(
        apply_fn=hand_apply(name),
        params=jax.tree.map(jnp.asarray, online),
        target_params=jax.tree.map(jnp.asarray, target),
        tx=optax.sgd(1.0),
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def expected_bootstrap(name: str, next_ids, action: int, key: jax.Array) -> np.ndarray:
    """What the target network gives at ``(next_ids, action)``, in numpy: C51 probabilities,
    QR-DQN quantiles, or IQN quantiles at the ``N'`` levels drawn from ``key``."""
    _, target = hand_tables(name)
    next_ids = np.asarray(next_ids)
    if name == "c51":
        return softmax(target["logits"][next_ids, action].astype(np.float64))
    if name == "qrdqn":
        return target["quantiles"][next_ids, action]
    _, k_target = jax.random.split(key)  # (level draws for the action choice, for the target)
    taus = np.asarray(jax.random.uniform(k_target, (len(next_ids), 3)))
    base, slope = target["base"][next_ids, action], target["slope"][next_ids, action]
    return base[:, None] + slope[:, None] * taus


def bootstrap_of(name: str, batch) -> np.ndarray:
    return np.asarray(batch.target_probs if name == "c51" else batch.target_quantiles)


def table_transitions() -> Experience:
    """From observation 0: an ordinary step to 1, a termination at 2, a truncation whose true
    final observation is 3."""
    return Experience(
        observation=jnp.zeros((3, 1)),
        action=jnp.array([1, 0, 1], jnp.int32),
        reward=jnp.array([0.3, -1.0, 0.3]),
        done=jnp.array([False, True, False]),
        next_observation=jnp.array([[1.0], [2.0], [3.0]]),
        truncated=jnp.array([False, False, True]),
    )


@pytest.mark.parametrize("double_q", [True, False], ids=["double-q", "greedy-target"])
@pytest.mark.parametrize("name", list(DIST_AGENTS))
def test_distributional_bootstrap_uses_the_target_network_and_cuts_terminations(name, double_q):
    module = DIST_AGENTS[name][0]
    config = distributional_config(name, double_q=double_q)
    key = jax.random.PRNGKey(3)
    batch = jax.jit(module.process_experience_factory(config))(
        hand_state(name), key, table_transitions()
    )
    np.testing.assert_allclose(batch.reward, [0.3, -1.0, 0.3], rtol=1e-6)
    # termination cuts the bootstrap; the truncation bootstraps like an ordinary step
    np.testing.assert_array_equal(batch.discount, [GAMMA, 0.0, GAMMA])
    np.testing.assert_array_equal(batch.action, [1, 0, 1])
    # the bootstrap action: the online net's choice (0) under double-Q, else the target's (1);
    # its distribution is always the target network's, at the true next observations
    action = 0 if double_q else 1
    expected = expected_bootstrap(name, [1, 2, 3], action, key)
    np.testing.assert_allclose(bootstrap_of(name, batch), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(DIST_AGENTS))
def test_distributional_n_step_windows_are_cut_at_episode_ends(name):
    module = DIST_AGENTS[name][0]
    config = distributional_config(name, n_step=2, double_q=True)
    f, t = False, True
    windows = Experience(
        observation=jnp.array([[0.0, 1.0], [0.0, 5.0], [0.0, 5.0]])[..., None],
        action=jnp.array([[1, 0], [0, 0], [1, 0]], jnp.int32),
        reward=jnp.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]),
        done=jnp.array([[f, f], [t, f], [f, f]]),
        next_observation=jnp.array([[1.0, 4.0], [2.0, 1.0], [3.0, 1.0]])[..., None],
        truncated=jnp.array([[f, f], [f, f], [t, f]]),
    )
    key = jax.random.PRNGKey(4)
    batch = jax.jit(module.process_experience_factory(config))(hand_state(name), key, windows)
    # full window: 1 + 0.5 * 2, bootstrap gamma^2 from observation 4; terminated after the first
    # step: 1, no bootstrap; truncated after the first step: 1, bootstrap gamma from 3
    np.testing.assert_allclose(batch.reward, [2.0, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(batch.discount, [0.25, 0.0, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(batch.observation)[:, 0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(batch.action, [1, 0, 1])
    expected = expected_bootstrap(name, [4, 2, 3], 0, key)  # double-Q: the online choice
    np.testing.assert_allclose(bootstrap_of(name, batch), expected, rtol=1e-5, atol=1e-6)


def test_c51_update_projects_the_target_distribution_by_hand():
    config = distributional_config("c51")
    state = hand_state("c51")
    process = jax.jit(c51_module.process_experience_factory(config))
    batch = process(state, jax.random.PRNGKey(0), table_transitions())
    _, info = jax.jit(c51_module.update_step_factory(config))(state, jax.random.PRNGKey(1), batch)
    online, target = hand_tables("c51")
    # Sample 0: r = 0.3, discount 0.5, target distribution PROBS_T (observation 1, action 0):
    # projected as in test_categorical_projection_by_hand.
    projected = [
        np.array([0.0, 0.11, 0.45, 0.395, 0.045]),
        np.array([0.0, 1.0, 0.0, 0.0, 0.0]),  # terminal, r = -1: all mass on the atom -1
        c51_algorithm_1(0.3, GAMMA, softmax(target["logits"][3, 0]), DIST_ATOMS),
    ]
    log_probs = np.log(softmax(online["logits"][0].astype(np.float64)))  # [A, atoms]
    losses = [-np.sum(m * log_probs[a]) for m, a in zip(projected, [1, 0, 1], strict=True)]
    np.testing.assert_allclose(float(info["loss_qvalue"]), np.mean(losses), rtol=1e-5)


def quantile_huber_by_hand(theta, taus, targets, kappa=1.0):
    """The quantile Huber loss in numpy: ``sum_i mean_j |tau_i - 1{d_ij < 0}| huber(d_ij) / kappa``
    with ``d_ij = targets_j - theta_i``."""
    d = np.asarray(targets)[None, :] - np.asarray(theta)[:, None]
    huber = np.where(np.abs(d) <= kappa, 0.5 * d**2, kappa * (np.abs(d) - 0.5 * kappa))
    weight = np.abs(np.asarray(taus)[:, None] - (d < 0))
    return np.sum(np.mean(weight * huber / kappa, axis=1))


def test_qr_dqn_update_regresses_on_reward_plus_discounted_target_quantiles_by_hand():
    config = distributional_config("qrdqn")
    state = hand_state("qrdqn")
    batch = jax.jit(qrdqn_module.process_experience_factory(config))(
        state, jax.random.PRNGKey(0), table_transitions()
    )
    _, info = jax.jit(qrdqn_module.update_step_factory(config))(state, jax.random.PRNGKey(1), batch)
    online, target = hand_tables("qrdqn")
    theta_next = target["quantiles"][[1, 2, 3], 0]  # double-Q: the online net's action 0
    targets = np.array([0.3, -1.0, 0.3])[:, None] + np.array([GAMMA, 0.0, GAMMA])[:, None] * (
        theta_next
    )
    taus = np.array([1 / 6, 1 / 2, 5 / 6])
    losses = [
        quantile_huber_by_hand(online["quantiles"][0, a], taus, targets[i])
        for i, a in enumerate([1, 0, 1])
    ]
    np.testing.assert_allclose(float(info["loss_qvalue"]), np.mean(losses), rtol=1e-5)
