"""Tests for kitae.modules.encoders and image / Dict observations through every agent.

Two tiny one-step contextual bandits, one for gymnasium and one gymnax-style for the compiled
path: a context ``(a, b)`` is drawn at reset; the observation is either ``"image"``
(``uint8[10, 10, 2]``, channel ``a`` lit) or ``"dict"`` (``image: uint8[10, 10, 3]`` with channel
``a`` lit, ``vector: float32[4]`` filled with ``2b - 1``). Discrete actions: action ``2a + b``
pays 1. Continuous actions ``[2]``: the reward is highest at ``(2a - 1, 2b - 1)``.

The Q models (``kitae.models``) get their encoder the same way, from their stacked frames; and
DQN learns ``envs.PixelGoal`` (the goal's quadrant, shown by one lit pixel) with the MinAtar CNN.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import PixelGoal, make_vec, pixel_goal_observations
from flax import struct
from gymnax.environments import spaces as gymnax_spaces
from helpers import assert_trees_equal, small_config

import kitae.models.q_models as q_models
from kitae.algos.alphazero import AlphaZero, AlphaZeroParams
from kitae.algos.c51 import C51, C51Params
from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.iqn import IQN, IQNParams
from kitae.algos.ppo import PPO, PPOParams
from kitae.algos.qrdqn import QRDQN, QRDQNParams
from kitae.algos.r2d2 import R2D2, R2D2Params
from kitae.algos.sac import SAC, SACParams
from kitae.algos.td3 import DDPG, TD3, DDPGParams, TD3Params
from kitae.base import true_next_observation
from kitae.compiled import config_for_jax_env
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, validate_config
from kitae.envs.jax_env import make_jax_env
from kitae.evaluation import evaluate
from kitae.models import DDQNModel, IQNModel, QModelParams
from kitae.modules import encoders as encoders_module
from kitae.modules.encoders import (
    Encoder,
    EncoderSpec,
    dummy_observation,
    encoder_spec,
    image_layout,
    network_encoder,
    resolve_encoder,
)
from kitae.modules.modules import init_params
from kitae.modules.policy import actor_critic_factory
from kitae.modules.qvalue import qvalue_factory
from kitae.modules.train_state import TrainState

KEY = jax.random.PRNGKey(0)
U8 = np.uint8


def box(shape, dtype=np.float32, low=0, high=1) -> gym.spaces.Box:
    return gym.spaces.Box(low, high, shape, dtype)


def init_encoder(spec: EncoderSpec, space: gym.Space, key=KEY):
    module = Encoder(spec)
    return module, jax.jit(module.init)(key, dummy_observation(space))


def n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---- the encoders --------------------------------------------------------------------------------

DICT_SPACE = gym.spaces.Dict(  # an OrderedDict keeps its (unsorted) key order
    OrderedDict([("vector", box((4,), low=-1)), ("image", box((10, 10, 3), U8, high=255))])
)


@pytest.mark.parametrize(
    ("kind", "space", "n_features"),
    [
        ("flatten", box((3, 4), U8, high=255), 12),
        ("nature_cnn", box((84, 84, 4), U8, high=255), 7 * 7 * 64),
        ("minatar_cnn", box((10, 10, 4), np.bool_), 8 * 8 * 16),
    ],
    ids=["flatten", "nature", "minatar"],
)
def test_encoders_map_observations_to_float32_features_of_the_papers_sizes(kind, space, n_features):
    module, params = init_encoder(encoder_spec(space, kind), space)
    x = jax.random.uniform(KEY, (2, *space.shape), maxval=255).astype(space.dtype)
    features = jax.jit(module.apply)(params, x)
    assert features.shape == (2, n_features) and features.dtype == jnp.float32


def test_flatten_casts_without_scaling():
    space = box((2, 3), U8, high=255)
    module, params = init_encoder(encoder_spec(space, "flatten"), space)
    assert params == {}  # no parameters
    x = np.arange(6, dtype=U8).reshape(1, 2, 3) * 50
    np.testing.assert_array_equal(module.apply(params, x), [[0, 50, 100, 150, 200, 250]])


def test_nature_cnn_has_the_papers_layers_and_parameter_count():
    # 84x84x4 -> 20x20x32 (8x8/4) -> 9x9x64 (4x4/2) -> 7x7x64 (3x3/1) = 3136 features
    space = box((84, 84, 4), U8, high=255)
    module, params = init_encoder(encoder_spec(space, "nature_cnn"), space)
    convs = params["params"]["nature_cnn"]
    assert [convs[f"Conv_{i}"]["kernel"].shape for i in range(3)] == [
        (8, 8, 4, 32),
        (4, 4, 32, 64),
        (3, 3, 64, 64),
    ]
    assert n_params(params) == (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (9 * 64 * 64 + 64)
    _, state = module.apply(params, dummy_observation(space), capture_intermediates=True)
    shapes = [
        state["intermediates"]["nature_cnn"][f"Conv_{i}"]["__call__"][0].shape for i in (0, 1, 2)
    ]
    assert shapes == [(1, 20, 20, 32), (1, 9, 9, 64), (1, 7, 7, 64)]


def test_minatar_cnn_parameter_count():
    grid = box((10, 10, 4), np.bool_)
    _, params = init_encoder(encoder_spec(grid, "minatar_cnn"), grid)
    assert params["params"]["minatar_cnn"]["Conv_0"]["kernel"].shape == (3, 3, 4, 16)
    assert n_params(params) == 3 * 3 * 4 * 16 + 16


def test_impala_resnet_stacks_parameters_features_and_pixel_scaling():
    frames = box((64, 64, 3), U8, high=255)
    module, params = init_encoder(encoder_spec(frames, "impala"), frames)

    def stack(c_in: int, c: int) -> int:  # a conv, then two residual blocks of two convs
        return (9 * c_in * c + c) + 4 * (9 * c * c + c)

    assert n_params(params) == stack(3, 16) + stack(16, 32) + stack(32, 32)
    apply = jax.jit(module.apply)
    pixels = jax.random.randint(KEY, (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
    features = apply(params, pixels)
    assert features.shape == (2, 8 * 8 * 32) and features.dtype == jnp.float32  # 64/2/2/2 = 8
    assert bool(jnp.all(features >= 0.0))  # the final ReLU
    np.testing.assert_allclose(features, apply(params, pixels / 255.0), rtol=1e-5, atol=1e-6)
    small = apply(params, jnp.ones((1, 10, 10, 3), jnp.float32))  # 10 -> 5 -> 3 -> 2
    assert small.shape == (1, 2 * 2 * 32)


@pytest.mark.parametrize("matmul", [True, False], ids=["patches", "lax-conv"])
@pytest.mark.parametrize(
    ("features", "kernel", "strides", "padding", "shape"),
    [
        (16, (3, 3), (1, 1), "VALID", (3, 10, 10, 4)),  # MinAtar
        (32, (8, 8), (4, 4), "VALID", (2, 84, 84, 4)),  # Nature, first layer
        (64, (4, 4), (2, 2), "VALID", (2, 20, 20, 32)),  # Nature, second layer
        (8, (3, 3), (1, 1), "SAME", (2, 9, 9, 3)),  # IMPALA
        (8, (3, 2), (2, 1), "SAME", (2, 9, 8, 5)),  # odd sizes and unequal strides
    ],
)
def test_conv_computes_flax_conv_with_the_same_parameters(
    monkeypatch, matmul, features, kernel, strides, padding, shape
):
    monkeypatch.setattr(encoders_module, "_conv_as_matmul", lambda: matmul)
    x = jax.random.normal(KEY, shape)
    ours = encoders_module.Conv(features, kernel, strides, padding)
    reference = nn.Conv(features, kernel, strides, padding)
    params = reference.init(jax.random.PRNGKey(1), x)
    assert_trees_equal(ours.init(jax.random.PRNGKey(1), x), params)  # names, shapes, init
    params = jax.tree.map(lambda v: v + jax.random.normal(KEY, v.shape), params)  # bias != 0
    np.testing.assert_allclose(
        ours.apply(params, x), reference.apply(params, x), rtol=1e-4, atol=1e-4
    )


def test_impala_residual_block_adds_its_input():
    block = encoders_module.ResidualBlock(4)  # looked up where ImpalaCNN finds it
    x = jax.random.normal(KEY, (1, 5, 5, 4))
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(block.init, KEY, x))
    apply = jax.jit(block.apply)
    np.testing.assert_array_equal(apply(zeros, x), x)  # both convs output 0: the skip
    bias = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.ones_like(v) if "Conv_1" in str(p) and "bias" in str(p) else v, zeros
    )
    np.testing.assert_allclose(apply(bias, x), x + 1.0)


def shapes_of(module, space) -> dict:
    """Parameter shapes of ``module`` on observations of ``space``, without computing them."""
    params = jax.eval_shape(module.init, KEY, dummy_observation(space))["params"]
    return jax.tree.map(lambda x: x.shape, params)


@pytest.mark.parametrize(
    ("shape", "hidden", "conv_kernels", "dense"),
    [
        # Mnih et al. 2015: 32 8x8/4, 64 4x4/2, 64 3x3/1 on 84x84x4, then 512 units
        ((84, 84, 4), 512, [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64)], (7 * 7 * 64, 512)),
        # Young & Tian 2019: 16 3x3/1 on 10x10xC, then 128 units
        ((10, 10, 4), 128, [(3, 3, 4, 16)], (8 * 8 * 16, 128)),
    ],
    ids=["nature", "minatar"],
)
def test_q_networks_on_frames_have_the_papers_layers(shape, hidden, conv_kernels, dense):
    space = box(shape, U8, high=255)
    module = qvalue_factory(space, gym.spaces.Discrete(6), hidden_sizes=(hidden,))
    params = shapes_of(module, space)
    kind = "nature_cnn" if shape[0] == 84 else "minatar_cnn"
    convs = params["Encoder_0"][kind]
    assert [convs[f"Conv_{i}"]["kernel"] for i in range(len(convs))] == conv_kernels
    assert params["MLP_0"]["Dense_0"]["kernel"] == dense
    assert params["Dense_0"]["kernel"] == (hidden, 6)  # one Q-value per action


def test_impala_stacks_have_the_papers_layers_and_resolutions():
    # Espeholt et al. 2018: 3 stacks of [conv 3x3, max-pool 3x3/2, 2 residual blocks of 2 convs]
    # with 16, 32, 32 channels
    frames = box((64, 64, 3), U8, high=255)
    module = Encoder(encoder_spec(frames, "impala"))
    params = shapes_of(module, frames)["impala"]
    assert [params[f"Conv_{i}"]["kernel"] for i in range(3)] == [
        (3, 3, 3, 16),
        (3, 3, 16, 32),
        (3, 3, 32, 32),
    ]
    blocks = [params[f"ResidualBlock_{i}"] for i in range(6)]
    assert len(params) == 3 + 6
    for i, c in enumerate((16, 16, 32, 32, 32, 32)):
        assert blocks[i]["Conv_0"]["kernel"] == blocks[i]["Conv_1"]["kernel"] == (3, 3, c, c)
    variables = module.init(KEY, dummy_observation(frames))
    _, state = module.apply(variables, dummy_observation(frames), capture_intermediates=True)
    out = state["intermediates"]["impala"]
    assert [out[f"ResidualBlock_{i}"]["__call__"][0].shape for i in (1, 3, 5)] == [
        (1, 32, 32, 16),  # 64 -> 32 -> 16 -> 8: each stack's pool halves the resolution
        (1, 16, 16, 32),
        (1, 8, 8, 32),
    ]


@pytest.mark.parametrize("kind", ["nature_cnn", "minatar_cnn"])
def test_uint8_pixels_are_scaled_to_the_unit_interval(kind):
    size = 84 if kind == "nature_cnn" else 10
    space = box((size, size, 2), U8, high=255)
    module, params = init_encoder(encoder_spec(space, kind), space)
    pixels = jax.random.randint(KEY, (2, size, size, 2), 0, 256).astype(jnp.uint8)
    scaled = module.apply(params, pixels.astype(jnp.float32) / 255.0)
    np.testing.assert_allclose(module.apply(params, pixels), scaled, rtol=1e-5, atol=1e-6)
    white = module.apply(params, jnp.full((1, size, size, 2), 255, jnp.uint8))
    np.testing.assert_allclose(white, module.apply(params, jnp.ones((1, size, size, 2))), rtol=1e-6)
    assert not np.allclose(white, module.apply(params, jnp.full((1, size, size, 2), 255.0)))


@pytest.mark.parametrize("kind", ["nature_cnn", "minatar_cnn"])
def test_channels_first_and_stacked_frames_give_the_channels_last_features(kind):
    size = 84 if kind == "nature_cnn" else 10
    last = box((size, size, 4), U8, high=255)
    first = box((4, size, size), U8, high=255)
    stacked = box((2, size, size, 2), U8, high=255)  # 2 frames of 2 channels
    assert encoder_spec(first, kind).layout == "chw"
    assert encoder_spec(stacked, kind).layout == "shwc"
    module, params = init_encoder(encoder_spec(last, kind), last)
    x = jax.random.randint(KEY, (3, size, size, 4), 0, 256).astype(jnp.uint8)
    expected = module.apply(params, x)
    for space, observations in [
        (first, jnp.transpose(x, (0, 3, 1, 2))),
        (stacked, jnp.stack([x[..., :2], x[..., 2:]], axis=1)),
    ]:
        out = Encoder(encoder_spec(space, kind)).apply(params, observations)  # same parameters
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    single = box((size, size), U8, high=255)  # one grayscale frame: one channel
    module, params = init_encoder(encoder_spec(single, kind), single)
    assert params["params"][kind]["Conv_0"]["kernel"].shape[2] == 1
    np.testing.assert_allclose(
        module.apply(params, x[..., 0]),
        Encoder(EncoderSpec(kind, "hwc")).apply(params, x[..., :1]),
        rtol=1e-6,
    )


def test_dict_encoder_concatenates_each_keys_features_in_sorted_key_order():
    spec = encoder_spec(DICT_SPACE)
    assert spec == EncoderSpec(
        "dict",
        keys=(("image", EncoderSpec("minatar_cnn", "hwc")), ("vector", EncoderSpec("flatten"))),
    )
    module, params = init_encoder(spec, DICT_SPACE)
    assert set(params["params"]) == {"image"}  # the flattened vector has no parameters
    image = jax.random.randint(KEY, (2, 10, 10, 3), 0, 256).astype(jnp.uint8)
    vector = jnp.array([[0.1, 0.2, 0.3, 0.4], [-1.0, 0.0, 1.0, 0.5]])
    features = module.apply(params, {"vector": vector, "image": image})
    assert features.shape == (2, 1024 + 4)
    np.testing.assert_array_equal(features[:, 1024:], vector)
    image_only = Encoder(spec.keys[0][1]).apply({"params": params["params"]["image"]}, image)
    np.testing.assert_array_equal(features[:, :1024], image_only)


def test_dict_features_do_not_depend_on_the_key_order():
    image, vector = box((10, 10, 3), U8, high=255), box((4,), low=-1)
    forward = gym.spaces.Dict(OrderedDict([("image", image), ("vector", vector)]))
    backward = gym.spaces.Dict(OrderedDict([("vector", vector), ("image", image)]))
    assert list(backward.spaces) == ["vector", "image"]
    spec = encoder_spec(forward)
    assert encoder_spec(backward) == spec
    module, params = init_encoder(encoder_spec(backward), backward)
    observations = {
        "image": jax.random.randint(KEY, (2, 10, 10, 3), 0, 256).astype(jnp.uint8),
        "vector": jnp.array([[0.5, -0.5, 0.25, 1.0], [1.0, 0.0, -1.0, 0.5]]),
    }
    reordered = {"vector": observations["vector"], "image": observations["image"]}
    features = module.apply(params, observations)
    np.testing.assert_array_equal(module.apply(params, reordered), features)
    np.testing.assert_array_equal(Encoder(spec).apply(params, observations), features)
    np.testing.assert_array_equal(features[:, -4:], observations["vector"])  # "vector" sorts last


# ---- choosing the encoder ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "kind", "layout"),
    [
        (box((4,)), "flatten", "hwc"),
        (gym.spaces.Discrete(5), "flatten", "hwc"),
        (gym.spaces.MultiBinary(3), "flatten", "hwc"),
        (gym.spaces.MultiDiscrete([2, 3]), "flatten", "hwc"),
        (box((84, 84, 4), U8, high=255), "nature_cnn", "hwc"),
        (box((4, 84, 84), U8, high=255), "nature_cnn", "chw"),
        (box((84, 84), U8, high=255), "nature_cnn", "hw"),
        (box((4, 84, 84, 1), U8, high=255), "nature_cnn", "shwc"),
        (box((10, 10, 4), np.bool_), "minatar_cnn", "hwc"),
        (box((4, 10, 10)), "minatar_cnn", "chw"),
        (box((2, 10, 10, 4)), "minatar_cnn", "shwc"),  # a stack of MinAtar frames
        (box((10, 10)), "flatten", "hwc"),  # a 10x10 grid without channels is no MinAtar frame
        (box((64, 64, 3), U8, high=255), "flatten", "hwc"),  # other images: name a kind
    ],
    ids=lambda v: str(getattr(v, "shape", v)) if not isinstance(v, str) else v,
)
def test_auto_picks_the_encoder_from_the_space(space, kind, layout):
    assert encoder_spec(space, "auto") == EncoderSpec(kind, layout)


def test_image_layout_convention():
    assert image_layout((84, 84, 4)) == "hwc" and image_layout((4, 84, 84)) == "chw"
    assert image_layout((3, 3, 3)) == "hwc" and image_layout((5,)) is None


def test_explicit_encoder_on_a_dict_space_encodes_every_key_it_fits():
    space = gym.spaces.Dict(
        {"a": box((10, 10, 2)), "b": box((3,)), "c": box((12, 12, 1)), "d": box((84, 84, 4))}
    )
    spec = encoder_spec(space, "impala")
    kinds = {k: s.kind for k, s in spec.keys}
    assert kinds == {"a": "impala", "b": "flatten", "c": "impala", "d": "impala"}
    flat = encoder_spec(space, "flatten")
    assert {s.kind for _, s in flat.keys} == {"flatten"}
    nested = gym.spaces.Dict(
        {"inner": gym.spaces.Dict({"frames": box((84, 84, 4))}), "v": box((3,))}
    )
    spec = encoder_spec(nested, "nature_cnn")
    assert spec.keys[0][1].keys == (("frames", EncoderSpec("nature_cnn", "hwc")),)
    assert spec.keys[1] == ("v", EncoderSpec("flatten"))


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_actor_critic_torsos_share_the_encoder_only_when_shared(shared):
    module = actor_critic_factory(
        IMAGE_SPACE, gym.spaces.Discrete(2), hidden_sizes=(4,), shared_encoder=shared
    )
    shapes = jax.eval_shape(module.init, KEY, dummy_observation(IMAGE_SPACE))["params"]
    encoders = [name for name in shapes if name.startswith("Encoder")]
    assert len(encoders) == (1 if shared else 2)
    assert all("minatar_cnn" in shapes[name] for name in encoders)


@pytest.mark.parametrize(
    ("space", "encoder", "match"),
    [
        (box((4,)), "nature_cnn", r"algo_params.encoder='nature_cnn' does not fit.*Box"),
        (box((10, 10, 4)), "nature_cnn", r"does not fit.*\(10, 10, 4\).*>= 36"),
        (gym.spaces.Discrete(3), "minatar_cnn", r"algo_params.encoder='minatar_cnn'.*Discrete"),
        (gym.spaces.Dict({"v": box((4,))}), "impala", r"'impala' does not fit.*Dict"),
        (box((4,)), "cnn", r"algo_params.encoder='cnn' is invalid.*nature_cnn"),
        (gym.spaces.Tuple([box((2,))]), "auto", r"Tuple.*not supported.*Box, Discrete"),
        (gym.spaces.Dict({"t": gym.spaces.Text(4)}), "auto", r"\['t'\].*Text.*not supported"),
        (gym.spaces.Dict({}), "auto", "empty Dict"),
    ],
    ids=[
        "cnn-on-vector",
        "too-small",
        "discrete",
        "dict-no-image",
        "unknown",
        "tuple",
        "text",
        "empty-dict",
    ],
)
def test_bad_encoders_and_spaces_raise_clear_errors(space, encoder, match):
    with pytest.raises(ValueError, match=match):
        encoder_spec(space, encoder)


def test_validate_config_rejects_an_unknown_encoder_name_before_anything_is_built():
    config = dqn_like_config(bandit("image"), encoder="natur_cnn")
    with pytest.raises(ValueError, match=r"algo_params.encoder='natur_cnn' is invalid"):
        validate_config(config)
    with pytest.raises(ValueError, match=r"algo_params.encoder='impala' does not fit"):
        DQN("x", dqn_like_config(ContextBandit("vector"), encoder="impala"))


def test_encoder_is_keyword_only_and_positional_params_are_unchanged():
    assert DQNParams(0.5).gamma == 0.5 and DQNParams(0.5).encoder == "auto"
    assert "encoder" in {f.name for f in dataclasses.fields(PPOParams)}
    for params_type in (
        QRDQNParams,
        C51Params,
        IQNParams,
        R2D2Params,
        SACParams,
        TD3Params,
        DDPGParams,
        AlphaZeroParams,
    ):
        assert params_type(encoder="impala").encoder == "impala"


def test_preprocess_fn_output_decides_the_encoder():
    flat = box((400,), U8, high=255)
    to_grid = lambda x: x.reshape((x.shape[0], 10, 10, 4))  # noqa: E731
    assert resolve_encoder(flat, "auto") == EncoderSpec("flatten")
    assert resolve_encoder(flat, "auto", to_grid) == EncoderSpec("minatar_cnn", "hwc")
    with pytest.raises(ValueError, match="after preprocess_fn"):
        resolve_encoder(flat, "nature_cnn", to_grid)
    spec = EncoderSpec("impala")
    assert resolve_encoder(flat, spec, to_grid) is spec


def test_dummy_observations_have_the_spaces_dtypes_and_structure():
    space = gym.spaces.Dict({"image": box((2, 2, 1), U8, high=255), "n": gym.spaces.Discrete(3)})
    dummy = dummy_observation(space, (1, 5))
    assert set(dummy) == {"image", "n"}
    assert dummy["image"].shape == (1, 5, 2, 2, 1) and dummy["image"].dtype == jnp.uint8
    assert dummy["n"].shape == (1, 5) and jnp.issubdtype(dummy["n"].dtype, jnp.integer)
    params = init_params(KEY, Encoder(encoder_spec(space)), [space])
    assert params == {}  # flatten everywhere: nothing to learn


# ---- the gymnasium loop with dict observations ---------------------------------------------------


def test_true_next_observation_replaces_the_rows_of_ended_envs_in_every_key():
    next_obs = {"image": np.zeros((3, 2, 2), U8), "vector": np.zeros((3, 2), np.float32)}
    final = {"image": np.full((2, 2), 7, U8), "vector": np.array([1.0, 2.0], np.float32)}
    infos = {"final_obs": np.array([None, final, None], object), "_final_obs": [False, True, False]}
    real = true_next_observation(next_obs, infos, np.array([False, True, False]))
    np.testing.assert_array_equal(real["image"][1], final["image"])
    np.testing.assert_array_equal(real["vector"], [[0, 0], [1, 2], [0, 0]])
    assert real["image"][0].sum() == 0 and next_obs["vector"].sum() == 0  # a copy


def test_the_loop_rejects_an_env_whose_dict_keys_differ_from_the_config():
    agent = DQN("x", dqn_like_config(bandit("dict")))
    other = gym.spaces.Dict({"image": box((10, 10, 3), U8, high=255), "v": box((4,))})
    env = gym.vector.SyncVectorEnv(
        [lambda: ContextBandit("dict", space=other)] * 2,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    with pytest.raises(ValueError, match=r"observation_space has shape.*'vector'.*'v'"):
        agent.train(env, 8)


# ---- test environments ---------------------------------------------------------------------------

IMAGE_SPACE = box((10, 10, 2), U8, high=255)
BANDIT_DICT = gym.spaces.Dict(
    {"image": box((10, 10, 3), U8, high=255), "vector": box((4,), low=-1)}
)


def bandit_observation(kind: str, a, b, xp=np):
    """The observation of context ``(a, b)``; ``xp`` is numpy or jax.numpy."""
    channels = 2 if kind == "image" else 3
    image = (xp.arange(channels) == a).astype(xp.uint8) * 255
    image = xp.broadcast_to(image, (10, 10, channels)).astype(xp.uint8)
    if kind == "image":
        return image
    vector = xp.full(4, 2.0 * b - 1.0, dtype=xp.float32)
    return vector if kind == "vector" else {"image": image, "vector": vector}


def bandit_reward(action, a, b, continuous: bool, xp=np):
    if continuous:
        target = xp.stack([2.0 * a - 1.0, 2.0 * b - 1.0])
        return 1.0 - xp.sum((xp.asarray(action, xp.float32) - target) ** 2) / 8.0
    return xp.where(action == 2 * a + b, 1.0, 0.0)


class ContextBandit(gym.Env):
    """The gymnasium bandit (see the module docstring); ``kind`` "image", "dict" or "vector"."""

    def __init__(self, kind: str = "dict", continuous: bool = False, space=None):
        self.kind, self.continuous = kind, continuous
        default = {"image": IMAGE_SPACE, "dict": BANDIT_DICT, "vector": box((4,), low=-1)}[kind]
        self.observation_space = space or default
        self.action_space = (
            gym.spaces.Box(-1.0, 1.0, (2,)) if continuous else gym.spaces.Discrete(4)
        )

    def _draw(self):
        self.a, self.b = (int(x) for x in self.np_random.integers(0, 2, 2))
        return bandit_observation(self.kind, self.a, self.b)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._draw(), {}

    def step(self, action):
        reward = float(bandit_reward(action, self.a, self.b, self.continuous))
        return self._draw(), reward, True, False, {}


def bandit(kind: str, continuous: bool = False, n_envs: int = 2) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv(
        [lambda: ContextBandit(kind, continuous)] * n_envs,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


@struct.dataclass
class BanditState:
    a: jax.Array
    b: jax.Array


@struct.dataclass
class BanditParams:
    pass


class JaxContextBandit:
    """The gymnax-style bandit, for the compiled path."""

    def __init__(self, kind: str = "dict", continuous: bool = False):
        self.kind, self.continuous = kind, continuous
        self.name = f"bandit-{kind}"

    @property
    def default_params(self):
        return BanditParams()

    def reset_env(self, key, params):
        a, b = jax.random.randint(key, (2,), 0, 2)
        state = BanditState(a, b)
        return bandit_observation(self.kind, a, b, jnp), state

    def step_env(self, key, state, action, params):
        reward = bandit_reward(action, state.a, state.b, self.continuous, jnp)
        obs, state = self.reset_env(key, params)
        return obs, state, reward.astype(jnp.float32), jnp.bool_(True), {}

    def observation_space(self, params):
        image = gymnax_spaces.Box(0, 255, (10, 10, 3 if self.kind == "dict" else 2), jnp.uint8)
        if self.kind == "image":
            return image
        return gymnax_spaces.Dict(
            {"image": image, "vector": gymnax_spaces.Box(-1.0, 1.0, (4,), jnp.float32)}
        )

    def action_space(self, params):
        if self.continuous:
            return gymnax_spaces.Box(-1.0, 1.0, (2,), jnp.float32)
        return gymnax_spaces.Discrete(4)


# ---- every agent on image and dict observations --------------------------------------------------

OFF_POLICY_UPDATE = {"learning_rate": 1e-3, "max_buffer_size": 64, "batch_size": 4, "n_epochs": 1}
ON_POLICY_UPDATE = {"learning_rate": 1e-3, "max_buffer_size": 8, "batch_size": 4, "n_epochs": 1}
Q_LEARNING = {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4}
SMALL_DISTRIBUTIONS = {
    C51Params: {"n_atoms": 5, "v_min": -1.0, "v_max": 1.0},
    QRDQNParams: {"n_quantiles": 4},
    IQNParams: {
        "n_tau_samples": 4,
        "n_tau_prime_samples": 4,
        "n_quantile_samples": 4,
        "n_cosines": 4,
        "head_hidden_sizes": (8,),
    },
}

AGENTS = {  # id: (agent class, params class, params, update, continuous actions)
    "dqn": (DQN, DQNParams, Q_LEARNING, OFF_POLICY_UPDATE, False),
    "c51": (
        C51,
        C51Params,
        {**Q_LEARNING, **SMALL_DISTRIBUTIONS[C51Params]},
        OFF_POLICY_UPDATE,
        False,
    ),
    "qrdqn": (
        QRDQN,
        QRDQNParams,
        {**Q_LEARNING, **SMALL_DISTRIBUTIONS[QRDQNParams]},
        OFF_POLICY_UPDATE,
        False,
    ),
    "iqn": (
        IQN,
        IQNParams,
        {**Q_LEARNING, **SMALL_DISTRIBUTIONS[IQNParams]},
        OFF_POLICY_UPDATE,
        False,
    ),
    "r2d2": (
        R2D2,
        R2D2Params,
        {**Q_LEARNING, "sequence_length": 2, "burn_in": 0, "n_step": 1, "core_size": 4},
        OFF_POLICY_UPDATE,
        False,
    ),
    "ppo": (PPO, PPOParams, {"hidden_sizes": (8,)}, ON_POLICY_UPDATE, False),
    "sac-discrete": (
        SAC,
        SACParams,
        {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4},
        OFF_POLICY_UPDATE,
        False,
    ),
    "sac": (
        SAC,
        SACParams,
        {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4},
        OFF_POLICY_UPDATE,
        True,
    ),
    "td3": (
        TD3,
        TD3Params,
        {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4, "policy_delay": 1},
        OFF_POLICY_UPDATE,
        True,
    ),
    "ddpg": (
        DDPG,
        DDPGParams,
        {"hidden_sizes": (8,), "start_step": -1, "skip_steps": 4},
        OFF_POLICY_UPDATE,
        True,
    ),
}
N_ENV_STEPS = 8  # 2 envs: 4 vector steps, one update (off-policy: batch 4; on-policy: rollout 8)


def dqn_like_config(env, **params) -> AlgoConfig:
    return small_config(
        DQNParams,
        env,
        params={**Q_LEARNING, **params},
        update=OFF_POLICY_UPDATE,
        n_env_steps=N_ENV_STEPS,
    )


N_NETWORKS = {"sac-discrete": 2, "sac": 2, "td3": 2, "ddpg": 2}
"""Networks with an encoder per agent (actor and critics); one otherwise."""

ALPHAZERO = (
    AlphaZero,
    AlphaZeroParams,
    {"num_simulations": 2, "max_num_considered_actions": 2, "hidden_sizes": (8,)},
    ON_POLICY_UPDATE,
    False,
)


def encoder_leaves(params) -> list[tuple[str, np.ndarray]]:
    """The MinAtar CNN's parameters in a parameter tree, by path."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [(jax.tree_util.keystr(p), np.asarray(x)) for p, x in flat if "minatar_cnn" in str(p)]


def assert_the_encoder_learned(before, after, n_networks: int):
    """Every network has a MinAtar CNN, and the update moved some of its parameters."""
    old, new = encoder_leaves(before), encoder_leaves(after)
    assert len(old) == len(new) >= 2 * n_networks  # kernel and bias per network
    assert any(not np.array_equal(x, y) for (_, x), (_, y) in zip(old, new, strict=True))


def gymnasium_agent(name: str, kind: str):
    agent_cls, params_cls, params, update, continuous = AGENTS[name]
    env = bandit(kind, continuous)
    config = small_config(params_cls, env, params=params, update=update, n_env_steps=N_ENV_STEPS)
    return agent_cls(name, config), env


def compiled_agent(name: str, kind: str):
    agent_cls, params_cls, params, update, continuous = (
        ALPHAZERO if name == "alphazero" else (AGENTS[name])
    )
    jax_env = make_jax_env(JaxContextBandit(kind, continuous))
    config = AlgoConfig(
        seed=0,
        algo_params=params_cls(**params),
        update_cfg=UpdateConfig(**update),
        train_cfg=TrainConfig(n_env_steps=N_ENV_STEPS, progress_bar=False),
        env_cfg=EnvConfig("bandit", jax_env.observation_space, jax_env.action_space, n_envs=2),
    )
    config = config_for_jax_env(config, jax_env)
    kwargs = {"env": jax_env} if name == "alphazero" else {}
    return agent_cls(name, config, **kwargs), jax_env


def online_params(agent) -> list:
    """The online params of every TrainState of ``agent``."""
    states = jax.tree.leaves(agent.state, is_leaf=lambda x: isinstance(x, TrainState))
    return [s.params for s in states if isinstance(s, TrainState)]


@pytest.mark.parametrize("name", [*AGENTS, "alphazero"])
def test_every_agent_trains_its_minatar_cnns_on_image_observations(name):
    # the gymnasium loop; AlphaZero plans on JAX envs only: the compiled path
    agent, env = (
        compiled_agent(name, "image") if name == "alphazero" else gymnasium_agent(name, "image")
    )
    assert agent.config.env_cfg.observation_space.shape == (10, 10, 2)
    kernels = [x for path, x in encoder_leaves(online_params(agent)) if "kernel" in path]
    assert len(kernels) == N_NETWORKS.get(name, 1) * (2 if name == "ppo" else 1)  # actor, critic
    n_critics = {"sac": 2, "sac-discrete": 2, "td3": 2, "ddpg": 1}
    for x in kernels:  # the critic ensembles stack their members' kernels
        assert x.shape[-4:] == (3, 3, 2, 16) and x.ndim in (4, 5)
        if x.ndim == 5:
            assert x.shape[0] == n_critics[name]
    before = jax.device_get(agent.state)
    assert agent.train(env, N_ENV_STEPS)["n_updates"] >= 1
    assert_the_encoder_learned(before, jax.device_get(agent.state), N_NETWORKS.get(name, 1))
    if name != "alphazero":
        actions, _ = agent.select_action(env.reset(seed=1)[0])
        assert np.shape(actions)[0] == 2


def test_the_encoder_field_overrides_the_automatic_choice():
    env = bandit("dict")
    impala = network_encoder(dqn_like_config(env, encoder="impala"))
    assert impala.keys == (("image", EncoderSpec("impala")), ("vector", EncoderSpec("flatten")))
    flat = DQN("x", dqn_like_config(env, encoder="flatten"))
    assert "Encoder_0" not in flat.state.params["params"]  # flatten has no parameters
    assert flat.state.params["params"]["MLP_0"]["Dense_0"]["kernel"].shape == (300 + 4, 8)


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_agent_trains_on_dict_observations_on_the_gymnasium_loop(name):
    agent, env = gymnasium_agent(name, "dict")
    before = jax.device_get(agent.state)
    assert agent.train(env, N_ENV_STEPS)["n_updates"] >= 1
    assert_the_encoder_learned(before, jax.device_get(agent.state), N_NETWORKS.get(name, 1))
    actions, _ = agent.select_action(env.reset(seed=1)[0])
    assert np.shape(actions)[0] == 2


@pytest.mark.parametrize("name", [*AGENTS, "alphazero"])
def test_every_agent_trains_on_dict_observations_on_the_compiled_path(name):
    agent, jax_env = compiled_agent(name, "dict")
    assert isinstance(agent.config.env_cfg.observation_space, gym.spaces.Dict)
    before = jax.device_get(agent.state)
    assert agent.train(jax_env, N_ENV_STEPS)["n_updates"] >= 1
    assert_the_encoder_learned(before, jax.device_get(agent.state), N_NETWORKS.get(name, 1))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AGENTS))
def test_every_agent_trains_on_image_observations_on_the_compiled_path(name):
    agent, jax_env = compiled_agent(name, "image")
    before = jax.device_get(agent.state)
    assert agent.train(jax_env, N_ENV_STEPS)["n_updates"] >= 1
    assert_the_encoder_learned(before, jax.device_get(agent.state), N_NETWORKS.get(name, 1))


# ---- checkpoints and evaluation with dict observations -------------------------------------------

BANDIT_ID = "kitae-tests/ContextBandit-v0"
if BANDIT_ID not in gym.registry:
    gym.register(BANDIT_ID, entry_point=ContextBandit)


def test_dict_observation_runs_checkpoint_and_evaluate(tmp_path):
    agent, env = gymnasium_agent("dqn", "dict")
    agent.train(env, N_ENV_STEPS + 2)  # the last vector step stays staged until the save
    agent.save(tmp_path)
    stored = agent.buffer_state.data.observation
    assert set(stored) == {"image", "vector"} and stored["image"].dtype == jnp.uint8
    restored, _ = gymnasium_agent("dqn", "dict")
    restored.restore(tmp_path)
    assert_trees_equal(restored.state, agent.state)
    assert_trees_equal(restored.buffer_state, agent.buffer_state)
    returns = evaluate(restored, BANDIT_ID, n_episodes=4, kind="dict")
    assert returns.shape == (4,) and set(returns.tolist()) <= {0.0, 1.0}


# ---- learning from both keys ---------------------------------------------------------------------

CONTEXTS = [(a, b) for a in (0, 1) for b in (0, 1)]


def greedy_actions(agent) -> list[int]:
    """The greedy action in each of the four contexts, all in one batch."""
    observations = [bandit_observation("dict", a, b) for a, b in CONTEXTS]
    batch = {k: np.stack([o[k] for o in observations]) for k in ("image", "vector")}
    actions, _ = agent.select_action(batch)
    return np.asarray(actions).tolist()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_greedy_actions_read_both_keys_of_a_dict_observation(name):
    # Action 2a + b pays: a is only in the image, b only in the vector.
    env = bandit("dict", n_envs=4)
    if name == "dqn":
        params = {
            "hidden_sizes": (32,),
            "start_step": 64,
            "skip_steps": 4,
            "exploration_fraction": 0.5,
            "exploration_end": 0.05,
        }
        update = {"learning_rate": 3e-3, "max_buffer_size": 1024, "batch_size": 32, "n_epochs": 1}
        config = small_config(DQNParams, env, params=params, update=update, n_env_steps=1200)
        agent = DQN(name, config)
    else:
        update = {"learning_rate": 3e-3, "max_buffer_size": 64, "batch_size": 16, "n_epochs": 4}
        params = {"hidden_sizes": (32,), "entropy_coef": 0.05}  # no early collapse onto a
        config = small_config(PPOParams, env, params=params, update=update, n_env_steps=1536)
        agent = PPO(name, config)
    agent.train(env)
    assert greedy_actions(agent) == [2 * a + b for a, b in CONTEXTS]
    assert evaluate(agent, BANDIT_ID, n_episodes=8, kind="dict").mean() == 1.0


# ---- MinAtar on the compiled path ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_breakout_minatar_trains_with_the_automatic_minatar_cnn(name):
    env = make_jax_env("Breakout-MinAtar")
    if name == "dqn":
        agent_cls, params = DQN, DQNParams(hidden_sizes=(16,), start_step=64, skip_steps=4)
        update = UpdateConfig(learning_rate=1e-3, max_buffer_size=512, batch_size=32)
    else:
        agent_cls, params = PPO, PPOParams(hidden_sizes=(16,))
        update = UpdateConfig(learning_rate=1e-3, max_buffer_size=128, batch_size=32)
    config = AlgoConfig(
        seed=0,
        algo_params=params,
        update_cfg=update,
        train_cfg=TrainConfig(n_env_steps=384, progress_bar=False),
        env_cfg=EnvConfig("Breakout-MinAtar", env.observation_space, env.action_space, n_envs=4),
    )
    assert params.encoder == "auto"
    assert network_encoder(config) == EncoderSpec("minatar_cnn", "hwc")
    agent = agent_cls("breakout", config)
    before = jax.device_get(agent.state)
    summary = agent.train(env)
    assert summary["n_updates"] >= 3 and summary["episodes"] > 0
    assert_the_encoder_learned(before, jax.device_get(agent.state), 2 if name == "ppo" else 1)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(agent.state.params)))


# ---- models: the same encoder option on stacked frames -------------------------------------------


@pytest.mark.parametrize(
    ("frame", "n_frames", "stacked"),
    [
        ((3,), 2, (6,)),  # vectors stay flat
        (5, 3, (15,)),
        ((10, 10, 4), 1, (10, 10, 4)),  # one frame: its own shape
        ((84, 84), 4, (4, 84, 84)),  # grayscale frames: one channel each
        ((10, 10, 4), 2, (2, 10, 10, 4)),  # channels-last frames: a stack
        ((4, 10, 10), 2, (8, 10, 10)),  # channels-first frames: their channels in a row
        ((2, 84, 84, 1), 2, (4, 84, 84, 1)),
    ],
    ids=["vector", "int", "one-frame", "hw", "hwc", "chw", "shwc"],
)
def test_model_stacks_are_laid_out_as_images(frame, n_frames, stacked):
    assert q_models.stacked_observation_shape(frame, n_frames) == stacked


def test_model_stacks_keep_each_frames_channels_together():
    # the memory's stack is frame 0 then frame 1, each flattened; channels-first frames
    frames = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    stack = frames.reshape(-1).reshape(q_models.stacked_observation_shape((3, 4, 4), 2))
    np.testing.assert_array_equal(stack[:3], frames[0])
    np.testing.assert_array_equal(stack[3:], frames[1])
    frames = frames.reshape(2, 4, 4, 3)  # channels-last frames
    stack = frames.reshape(-1).reshape(q_models.stacked_observation_shape((4, 4, 3), 2))
    np.testing.assert_array_equal(stack, frames)


def test_q_models_pick_the_encoder_of_their_frames_and_train_it():
    params = QModelParams(n_frames=2, memory_size=32, batch_size=4, epsilon=0.0)
    iqn = IQNModel((10, 10, 1), 4, params, IQNParams(hidden_sizes=(8,), n_cosines=4))
    model = DDQNModel((10, 10, 1), 4, params, DQNParams(hidden_sizes=(8,)))
    for agent in (iqn.agent, model.agent):
        assert network_encoder(agent.config) == EncoderSpec("minatar_cnn", "shwc")
        kernels = [x for p, x in encoder_leaves(agent.state.params) if "kernel" in p]
        assert [x.shape for x in kernels] == [(3, 3, 2, 16)]  # two stacked frames: two channels
    images, _ = pixel_goal_observations()
    for t in range(8):  # frames scaled to [0, 1]: the memory stores float32
        obs = images[t].astype(np.float32) / 255.0
        model.memory.add(obs, model.take_action(obs), 1.0, True)
    before = jax.device_get(model.agent.state)
    assert float(model.train_step()) > 0.0
    assert_the_encoder_learned(before, jax.device_get(model.agent.state), 1)


def test_q_models_take_the_encoder_field_and_reject_one_that_does_not_fit():
    params = QModelParams(memory_size=8, batch_size=2)
    impala = DDQNModel((12, 12, 3), 2, params, DQNParams(hidden_sizes=(8,), encoder="impala"))
    assert network_encoder(impala.agent.config) == EncoderSpec("impala", "hwc")
    assert "impala" in impala.agent.state.params["params"]["Encoder_0"]
    flat = DDQNModel((10, 10, 4), 2, params, DQNParams(hidden_sizes=(8,), encoder="flatten"))
    assert flat.agent.state.params["params"]["MLP_0"]["Dense_0"]["kernel"].shape == (400, 8)
    with pytest.raises(ValueError, match=r"algo_params.encoder='nature_cnn' does not fit"):
        DDQNModel((3,), 2, params, DQNParams(encoder="nature_cnn"))


# ---- a tiny pixel env, learned ------------------------------------------------------------------


def greedy_accuracy(agent) -> float:
    """The fraction of the goal cells of :class:`PixelGoal` whose greedy action pays."""
    images, best = pixel_goal_observations()
    actions, _ = agent.select_action(images)
    return float(np.mean(np.asarray(actions) == best))


@pytest.mark.slow
def test_dqn_with_the_minatar_cnn_learns_where_the_goal_is_from_pixels():
    env = make_vec(PixelGoal, 8)
    params = {
        "hidden_sizes": (64,),
        "start_step": 64,
        "skip_steps": 4,
        "exploration_fraction": 0.3,
        "exploration_end": 0.05,
        "gamma": 0.9,
    }
    update = {"learning_rate": 3e-3, "max_buffer_size": 1024, "batch_size": 32, "n_epochs": 1}
    config = small_config(DQNParams, env, params=params, update=update, n_env_steps=1600)
    agent = DQN("pixel-goal", config)
    assert network_encoder(config) == EncoderSpec("minatar_cnn", "hwc")
    assert greedy_accuracy(agent) < 0.5  # untrained: the bar is not met
    agent.train(env)
    assert greedy_accuracy(agent) >= 0.95
