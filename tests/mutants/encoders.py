"""Mutants of the observation encoders and of dict observations in the loop."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

import kitae.algos.dqn as dqn
import kitae.envs.vector as vector
import kitae.host_loop as host_loop
import kitae.models.q_models as q_models
import kitae.modules.encoders as encoders
import kitae.modules.modules as modules
from mutants import mutant

T = "tests/test_encoders.py::"


@mutant(
    "encoders-uint8-not-scaled",
    "convolutional encoders feed raw uint8 pixels (0..255) instead of scaling them by 1/255",
    [T + "test_uint8_pixels_are_scaled_to_the_unit_interval"],
)
def _(monkeypatch):
    monkeypatch.setattr(encoders, "scale_pixels", lambda x: x.astype(jnp.float32))


@mutant(
    "encoders-flatten-scales-pixels",
    "flatten scales uint8 observations by 1/255 (today's flatten only casts)",
    [T + "test_flatten_casts_without_scaling"],
)
def _(monkeypatch):
    def flatten(x):
        x = x.reshape((x.shape[0], -1))
        return x.astype(jnp.float32) / (255.0 if x.dtype == jnp.uint8 else 1.0)

    monkeypatch.setattr(encoders, "flatten", flatten)


@mutant(
    "encoders-channels-first-reshaped",
    "channels-first frames are reshaped to channels-last instead of transposed",
    [T + "test_channels_first_and_stacked_frames_give_the_channels_last_features"],
)
def _(monkeypatch):
    original = encoders.to_channels_last

    def to_channels_last(x, layout):
        if layout == "chw":
            b, c, h, w = x.shape
            return x.reshape((b, h, w, c))
        return original(x, layout)

    monkeypatch.setattr(encoders, "to_channels_last", to_channels_last)


@mutant(
    "encoders-layout-always-channels-last",
    "3-D image shapes are always read as channels-last, (4, 84, 84) included",
    [T + "test_auto_picks_the_encoder_from_the_space", T + "test_image_layout_convention"],
)
def _(monkeypatch):
    original = encoders.image_layout
    monkeypatch.setattr(
        encoders, "image_layout", lambda shape: "hwc" if len(shape) == 3 else original(shape)
    )


@mutant(
    "encoders-auto-always-flattens",
    "encoder='auto' flattens every observation, images included",
    [
        T + "test_auto_picks_the_encoder_from_the_space",
        T + "test_breakout_minatar_trains_with_the_automatic_minatar_cnn",
    ],
)
def _(monkeypatch):
    monkeypatch.setattr(encoders, "_auto_kind", lambda shape: ("flatten", "hwc"))


@mutant(
    "encoders-explicit-kind-not-checked",
    "an explicit convolutional encoder is accepted on any space (no ValueError)",
    [T + "test_bad_encoders_and_spaces_raise_clear_errors"],
)
def _(monkeypatch):
    monkeypatch.setattr(encoders, "_fits", lambda kind, shape: "hwc")


@mutant(
    "encoders-dict-keys-in-insertion-order",
    "dict features are concatenated in the space's key order instead of sorted key order",
    [
        T + "test_dict_features_do_not_depend_on_the_key_order",
        T + "test_dict_encoder_concatenates_each_keys_features_in_sorted_key_order",
    ],
)
def _(monkeypatch):
    original = encoders._tree_spec

    def _tree_spec(tree, encoder, where):
        spec = original(tree, encoder, where)
        if spec.kind == "dict" and hasattr(tree, "spaces"):
            order = list(tree.spaces)
            keys = tuple(sorted(spec.keys, key=lambda kv: order.index(kv[0])))
            object.__setattr__(spec, "keys", keys)  # bypass the frozen check on purpose
        return spec

    monkeypatch.setattr(encoders, "_tree_spec", _tree_spec)


@mutant(
    "encoders-nature-cnn-same-padding",
    "the Nature CNN pads its convolutions (84x84 would give 11x11x64 features)",
    [T + "test_nature_cnn_has_the_papers_layers_and_parameter_count"],
)
def _(monkeypatch):
    class PaddedNatureCNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
                x = nn.relu(nn.Conv(features, (kernel, kernel), (stride, stride), "SAME")(x))
            return encoders.flatten(x)

    monkeypatch.setitem(encoders.CONV_NETWORKS, "nature_cnn", PaddedNatureCNN)


@mutant(
    "encoders-impala-without-skip",
    "the IMPALA residual block drops its skip connection",
    [T + "test_impala_residual_block_adds_its_input"],
)
def _(monkeypatch):
    class SkiplessBlock(nn.Module):
        features: int

        @nn.compact
        def __call__(self, x):
            y = nn.Conv(self.features, (3, 3), padding="SAME")(nn.relu(x))
            return nn.Conv(self.features, (3, 3), padding="SAME")(nn.relu(y))

    monkeypatch.setattr(encoders, "ResidualBlock", SkiplessBlock)


@mutant(
    "encoders-conv-kinds-flatten",
    "the networks flatten image observations whatever the spec says",
    [
        T + "test_every_agent_trains_its_minatar_cnns_on_image_observations",
        T + "test_encoders_map_observations_to_float32_features_of_the_papers_sizes",
    ],
)
def _(monkeypatch):
    class Flatten(nn.Module):
        @nn.compact
        def __call__(self, x):
            return encoders.flatten(x)

    for kind in ("nature_cnn", "minatar_cnn", "impala"):
        monkeypatch.setitem(encoders.CONV_NETWORKS, kind, Flatten)


@mutant(
    "encoders-config-field-ignored",
    "the train-state factories ignore algo_params.encoder and always use 'auto'",
    [T + "test_the_encoder_field_overrides_the_automatic_choice"],
)
def _(monkeypatch):
    def network_encoder(config, preprocess_fn=None):
        space = config.env_cfg.observation_space
        return encoders.resolve_encoder(space, "auto", preprocess_fn)

    monkeypatch.setattr(encoders, "network_encoder", network_encoder)
    monkeypatch.setattr(dqn, "network_encoder", network_encoder)


@mutant(
    "init-params-float-zeros-of-the-shape",
    "parameters are initialised on float32 zeros of observation_space.shape (no dict dummies)",
    [T + "test_every_agent_trains_on_dict_observations_on_the_gymnasium_loop"],
)
def _(monkeypatch):
    monkeypatch.setattr(
        modules, "dummy_observation", lambda space: jnp.zeros((1, *space.shape), jnp.float32)
    )


@mutant(
    "loop-final-observation-ignored-for-dicts",
    "true_next_observation keeps the reset observation of ended envs in dict observations",
    [T + "test_true_next_observation_replaces_the_rows_of_ended_envs_in_every_key"],
)
def _(monkeypatch):
    original = vector._set_observation_row

    def _set_observation_row(batch, i, obs):
        if not isinstance(batch, dict):
            original(batch, i, obs)

    monkeypatch.setattr(vector, "_set_observation_row", _set_observation_row)


@mutant(
    "loop-checks-only-the-top-level-shape",
    "the gymnasium loop compares only observation_space.shape (None for every Dict space)",
    [T + "test_the_loop_rejects_an_env_whose_dict_keys_differ_from_the_config"],
)
def _(monkeypatch):
    monkeypatch.setattr(
        host_loop, "observation_shapes", lambda space: getattr(space, "shape", None)
    )


@mutant(
    "encoders-auto-flattens-84x84-stacks",
    "encoder='auto' flattens 84x84 frame stacks instead of picking the Nature CNN",
    [T + "test_auto_picks_the_encoder_from_the_space"],
)
def _(monkeypatch):
    original = encoders._auto_kind

    def _auto_kind(shape):
        kind, layout = original(shape)
        return ("flatten", "hwc") if kind == "nature_cnn" else (kind, layout)

    monkeypatch.setattr(encoders, "_auto_kind", _auto_kind)


@mutant(
    "encoders-auto-skips-minatar-stacks",
    "encoder='auto' flattens stacks of 10x10xC frames (S, 10, 10, C), e.g. a model's stacks",
    [
        T + "test_auto_picks_the_encoder_from_the_space",
        T + "test_q_models_pick_the_encoder_of_their_frames_and_train_it",
    ],
)
def _(monkeypatch):
    original = encoders._auto_kind

    def _auto_kind(shape):
        if shape is not None and len(shape) == 4:
            return "flatten", "hwc"
        return original(shape)

    monkeypatch.setattr(encoders, "_auto_kind", _auto_kind)


@mutant(
    "encoders-minatar-cnn-same-padding",
    "the MinAtar convolution pads (10x10 grids would give 10x10x16 features, not 8x8x16)",
    [
        T + "test_q_networks_on_frames_have_the_papers_layers",
        T + "test_encoders_map_observations_to_float32_features_of_the_papers_sizes",
    ],
)
def _(monkeypatch):
    class PaddedMinAtarCNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return encoders.flatten(nn.relu(nn.Conv(16, (3, 3), (1, 1), "SAME")(x)))

    monkeypatch.setitem(encoders.CONV_NETWORKS, "minatar_cnn", PaddedMinAtarCNN)


@mutant(
    "encoders-impala-without-max-pool",
    "the IMPALA stacks skip their 3x3/2 max-pool (features stay at the input resolution)",
    [T + "test_impala_stacks_have_the_papers_layers_and_resolutions"],
)
def _(monkeypatch):
    monkeypatch.setattr(encoders.nn, "max_pool", lambda x, *args, **kwargs: x)


@mutant(
    "encoders-impala-channels-16-32-64",
    "the IMPALA stacks have 16, 32, 64 channels (the paper: 16, 32, 32)",
    [T + "test_impala_stacks_have_the_papers_layers_and_resolutions"],
)
def _(monkeypatch):
    wide = functools.partial(encoders.ImpalaCNN, channels=(16, 32, 64))
    monkeypatch.setitem(encoders.CONV_NETWORKS, "impala", wide)


@mutant(
    "models-flat-stacks",
    "the Q models' agents see flat stacks (n_frames * prod(obs_shape),): always flattened",
    [
        T + "test_q_models_pick_the_encoder_of_their_frames_and_train_it",
        T + "test_model_stacks_are_laid_out_as_images",
    ],
)
def _(monkeypatch):
    def stacked_observation_shape(obs_shape, n_frames):
        return (n_frames * int(np.prod(obs_shape)),)

    monkeypatch.setattr(q_models, "stacked_observation_shape", stacked_observation_shape)


@mutant(
    "models-channels-first-frames-stacked-as-frames",
    "the Q models stack (C, H, W) frames as (n, C, H, W), read as channels-last (S, H, W, C)",
    [
        T + "test_model_stacks_are_laid_out_as_images",
        T + "test_model_stacks_keep_each_frames_channels_together",
    ],
)
def _(monkeypatch):
    original = q_models.stacked_observation_shape

    def stacked_observation_shape(obs_shape, n_frames):
        if n_frames > 1 and encoders.image_layout(obs_shape) == "chw":
            return (n_frames, *obs_shape)
        return original(obs_shape, n_frames)

    monkeypatch.setattr(q_models, "stacked_observation_shape", stacked_observation_shape)


@mutant(
    "encoders-conv-patches-misordered",
    "the CPU convolution reads its patches as (kh, kw, C) while they are laid out (C, kh, kw)",
    [T + "test_conv_computes_flax_conv_with_the_same_parameters"],
)
def _(monkeypatch):
    original = encoders.jax.lax.conv_general_dilated_patches

    def reordered(lhs, filter_shape, *args, **kwargs):
        patches = original(lhs, filter_shape, *args, **kwargs)
        split = (*patches.shape[:-1], lhs.shape[-1], filter_shape[0] * filter_shape[1])
        return patches.reshape(split).swapaxes(-1, -2).reshape(patches.shape)

    monkeypatch.setattr(encoders.jax.lax, "conv_general_dilated_patches", reordered)
