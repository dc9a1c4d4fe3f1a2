"""Mutants of the observation encoders and of dict observations in the loop."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

import kitae.algos.dqn as dqn
import kitae.base as base
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
    [T + "test_dict_encoder_concatenates_each_keys_features_in_sorted_key_order"],
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
        T + "test_every_agent_builds_its_networks_on_an_image_space_with_the_minatar_cnn",
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
    original = base._set_observation_row

    def _set_observation_row(batch, i, obs):
        if not isinstance(batch, dict):
            original(batch, i, obs)

    monkeypatch.setattr(base, "_set_observation_row", _set_observation_row)


@mutant(
    "loop-checks-only-the-top-level-shape",
    "the gymnasium loop compares only observation_space.shape (None for every Dict space)",
    [T + "test_the_loop_rejects_an_env_whose_dict_keys_differ_from_the_config"],
)
def _(monkeypatch):
    monkeypatch.setattr(base, "observation_shapes", lambda space: getattr(space, "shape", None))
