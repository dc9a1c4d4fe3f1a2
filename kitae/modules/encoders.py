"""Observation encoders: the first stage of every kitae network, from observations to features.

Every network in :mod:`kitae.modules` (and AlphaZero's) applies :class:`Encoder` to its
observations, then its MLP torso and heads. An encoder is described by an :class:`EncoderSpec`,
a frozen, hashable dataclass (so it can be a flax module attribute), usually built from the
observation space by :func:`encoder_spec` or, for an agent, by :func:`network_encoder`.

Kinds:

* ``"flatten"``: cast to float32 and flatten (any space).
* ``"nature_cnn"``: the Nature DQN convolutions for 84x84 frame stacks.
* ``"minatar_cnn"``: the MinAtar convolution for 10x10xC grids.
* ``"impala"``: the IMPALA ResNet.
* ``"dict"``: one encoder per key of a ``Dict`` space, features concatenated in sorted key order.

Conventions:

* Observations are batched: an array ``[B, ...]``, or for a ``Dict`` space a dict of such
  arrays. Features are ``float32[B, F]``.
* The convolutions read channels-last frames ``[B, H, W, C]``. A spec's ``layout`` says how an
  observation is laid out, and the encoder transposes it: ``"hwc"`` (channels-last),
  ``"chw"`` (channels-first, e.g. gymnasium's ``FrameStackObservation`` over
  ``AtariPreprocessing``: ``(4, 84, 84)``), ``"hw"`` (one grayscale frame, one channel) and
  ``"shwc"`` (a stack of channels-last frames ``(S, H, W, C)``, stacked on the channel axis into
  ``S * C`` channels). :func:`image_layout` decides it from the shape: a 3-D shape is
  channels-first when its first axis is smaller than both others, channels-last otherwise.
* ``uint8`` observations of the convolutional kinds are scaled by 1/255 (pixels); other dtypes
  are only cast to float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("flatten", "nature_cnn", "minatar_cnn", "impala")
"""The encoders of one array observation."""

ENCODER_NAMES = ("auto", *KINDS)
"""The values of ``algo_params.encoder``."""

LAYOUTS = ("hwc", "chw", "hw", "shwc")
"""How image observations are laid out (see the module docstring)."""

CONV_KINDS = {"nature_cnn": 36, "minatar_cnn": 3, "impala": 1}
"""Convolutional kinds and the smallest height and width they accept (the Nature CNN's unpadded
8x8/4, 4x4/2 and 3x3/1 convolutions need 36 pixels to leave one)."""

SUPPORTED_SPACES = "Box, Discrete, MultiDiscrete, MultiBinary, or a Dict of these"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """What :class:`Encoder` does to an observation.

    Attributes:
        kind: one of :data:`KINDS`, or ``"dict"`` for a ``Dict`` space.
        layout: convolutional kinds: the observation's layout (one of :data:`LAYOUTS`).
        keys: ``"dict"``: ``(key, spec)`` pairs in sorted key order.
    """

    kind: str = "flatten"
    layout: str = "hwc"
    keys: tuple[tuple[str, EncoderSpec], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (*KINDS, "dict"):
            raise ValueError(f"EncoderSpec.kind={self.kind!r} is invalid: use one of {KINDS}.")
        if self.layout not in LAYOUTS:
            raise ValueError(
                f"EncoderSpec.layout={self.layout!r} is invalid: use one of {LAYOUTS}."
            )
        if (self.kind == "dict") != bool(self.keys):
            raise ValueError("EncoderSpec.keys is for kind='dict', which needs at least one key.")
        names = [k for k, _ in self.keys]
        if names != sorted(names):
            raise ValueError(f"EncoderSpec.keys must be in sorted key order, got {names}.")


FLATTEN = EncoderSpec()
"""The ``flatten`` encoder (the networks' default)."""


# ---- spaces -------------------------------------------------------------------------------------


def image_layout(shape: Sequence[int]) -> str | None:
    """The layout of an image observation of ``shape`` (without the batch axis), ``None`` when
    the shape cannot be an image.

    ``(H, W)``: ``"hw"``; ``(S, H, W, C)``: ``"shwc"``; ``(A, B, C)``: ``"chw"`` when
    ``A < min(B, C)`` (e.g. ``(4, 84, 84)``), else ``"hwc"`` (e.g. ``(84, 84, 4)``,
    ``(10, 10, 4)``).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2:
        return "hw"
    if len(shape) == 3:
        return "chw" if shape[0] < min(shape[1], shape[2]) else "hwc"
    if len(shape) == 4:
        return "shwc"
    return None


def image_size(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """``(H, W)`` of an image observation of ``shape`` laid out as ``layout``."""
    shape = tuple(int(n) for n in shape)
    return {"hw": shape, "hwc": shape[:2], "chw": shape[1:], "shwc": shape[1:3]}[layout]


def _auto_kind(shape: tuple[int, ...] | None) -> tuple[str, str]:
    """``(kind, layout)`` that ``"auto"`` picks for an array observation of ``shape`` (``None``:
    not an image, e.g. a Discrete space)."""
    layout = None if shape is None else image_layout(shape)
    if layout is None:
        return "flatten", "hwc"
    size = image_size(shape, layout)
    if size == (84, 84):
        return "nature_cnn", layout
    if size == (10, 10) and len(shape) >= 3:
        return "minatar_cnn", layout
    return "flatten", "hwc"


def _fits(kind: str, shape: tuple[int, ...] | None) -> str | None:
    """The layout under which ``kind`` encodes an observation of ``shape``, ``None`` if it
    cannot (flatten fits any shape)."""
    if kind == "flatten":
        return "hwc"
    layout = None if shape is None else image_layout(shape)
    if layout is None:
        return None
    if min(image_size(shape, layout)) < CONV_KINDS[kind]:
        return None
    return layout


def _unsupported(where: str, space: Any) -> ValueError:
    return ValueError(
        f"{where}={space} is not supported by kitae's observation encoders: use "
        f"{SUPPORTED_SPACES} observation spaces (convert it with a gymnasium observation wrapper, "
        "e.g. a Tuple space into a Dict)."
    )


def _leaf_shape(leaf: Any, where: str) -> tuple[int, ...] | None:
    """The shape an image encoder would see for a space or a shape tuple, ``None`` for
    non-image spaces (Discrete, MultiDiscrete, MultiBinary)."""
    if isinstance(leaf, gym.spaces.Box):
        return tuple(int(n) for n in leaf.shape)
    if isinstance(leaf, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return None
    if isinstance(leaf, tuple) and all(isinstance(n, (int, np.integer)) for n in leaf):
        return leaf
    raise _unsupported(where, leaf)


def _is_dict(tree: Any) -> bool:
    return isinstance(tree, (gym.spaces.Dict, Mapping))


def _sorted_items(tree: Any, where: str) -> list[tuple[str, Any]]:
    items = sorted((tree.spaces if isinstance(tree, gym.spaces.Dict) else tree).items())
    if not items:
        raise ValueError(f"{where}={tree} is an empty Dict: there is nothing to encode.")
    return items


def _auto_spec(tree: Any, where: str) -> EncoderSpec:
    """``"auto"``'s spec of an observation tree: a gymnasium space, or shapes (see
    :func:`resolve_encoder`)."""
    if _is_dict(tree):
        items = _sorted_items(tree, where)
        return EncoderSpec(
            "dict", keys=tuple((k, _auto_spec(s, f"{where}[{k!r}]")) for k, s in items)
        )
    return EncoderSpec(*_auto_kind(_leaf_shape(tree, where)))


def _explicit_spec(tree: Any, kind: str, where: str) -> tuple[EncoderSpec, bool]:
    """The spec of an observation tree for an explicit ``kind``: ``kind`` wherever it fits,
    ``"auto"``'s choice elsewhere; and whether it fits anywhere."""
    if _is_dict(tree):
        specs, fitted = [], False
        for k, sub in _sorted_items(tree, where):
            spec, sub_fitted = _explicit_spec(sub, kind, f"{where}[{k!r}]")
            specs.append((k, spec))
            fitted |= sub_fitted
        return EncoderSpec("dict", keys=tuple(specs)), fitted
    shape = _leaf_shape(tree, where)
    layout = _fits(kind, shape)
    if layout is None:
        return EncoderSpec(*_auto_kind(shape)), False
    return EncoderSpec(kind, layout), True


def _check_name(encoder: Any) -> None:
    if not isinstance(encoder, str) or encoder not in ENCODER_NAMES:
        raise ValueError(
            f"algo_params.encoder={encoder!r} is invalid: use one of {list(ENCODER_NAMES)}."
        )


def _tree_spec(tree: Any, encoder: str, where: str) -> EncoderSpec:
    """The spec of an observation tree: a gymnasium space, or a shape tuple or a dict of them
    (see :func:`resolve_encoder`)."""
    if encoder == "auto":
        return _auto_spec(tree, where)
    spec, fitted = _explicit_spec(tree, encoder, where)
    if not fitted:
        raise ValueError(
            f"algo_params.encoder={encoder!r} does not fit {where}={tree}: {encoder} needs "
            "image observations of shape (H, W), (H, W, C), (C, H, W) or (S, H, W, C) with H and "
            f"W >= {CONV_KINDS.get(encoder, 1)}. Use encoder='auto' or 'flatten', or another "
            "observation space."
        )
    return spec


def encoder_spec(
    observation_space: gym.Space,
    encoder: str = "auto",
    *,
    where: str = "env_cfg.observation_space",
) -> EncoderSpec:
    """The :class:`EncoderSpec` for observations of ``observation_space``.

    ``"auto"`` picks ``nature_cnn`` for 84x84 images (``(84, 84)``, ``(84, 84, C)``,
    ``(C, 84, 84)`` or ``(S, 84, 84, C)``), ``minatar_cnn`` for 10x10 grids with channels
    (``(10, 10, C)``, ``(C, 10, 10)`` or ``(S, 10, 10, C)``), ``flatten`` for every other Box
    and for Discrete, MultiDiscrete and MultiBinary spaces, and one encoder per key of a Dict
    space. An explicit kind is checked against the space; on a Dict space it encodes every key
    it fits (the other keys, nested Dicts included, get their ``"auto"`` choice) and must fit
    one.

    Args:
        observation_space: the space of one observation.
        encoder: ``"auto"`` or one of :data:`KINDS`.
        where: how errors name the space.

    Returns:
        The spec.

    Raises:
        ValueError: for an unknown name, a convolutional kind on a space it does not fit, or an
            unsupported space (e.g. Tuple).
    """
    _check_name(encoder)
    return _tree_spec(observation_space, encoder, where)


def resolve_encoder(
    observation_space: gym.Space,
    encoder: str | EncoderSpec = "auto",
    preprocess_fn: Callable[[Any], Any] | None = None,
) -> EncoderSpec:
    """The spec of a network that applies ``preprocess_fn`` (if any) to observations of
    ``observation_space``, then its encoder: ``encoder`` itself when it is a spec, else
    :func:`encoder_spec` of the observations as ``preprocess_fn`` returns them (their shapes
    and structure, found with ``jax.eval_shape``).

    Raises:
        ValueError: as :func:`encoder_spec`.
    """
    if isinstance(encoder, EncoderSpec):
        return encoder
    if preprocess_fn is None:
        return encoder_spec(observation_space, encoder)
    _check_name(encoder)
    out = jax.eval_shape(preprocess_fn, dummy_observation(observation_space))
    tree = jax.tree.map(lambda x: tuple(int(n) for n in x.shape[1:]), out)
    return _tree_spec(tree, encoder, "env_cfg.observation_space after preprocess_fn (shapes)")


def network_encoder(config: Any, preprocess_fn: Callable[[Any], Any] | None = None) -> EncoderSpec:
    """The encoder of an agent's networks: ``config.algo_params.encoder`` (``"auto"`` when the
    params have no such field) resolved against ``config.env_cfg.observation_space`` as seen
    after ``preprocess_fn`` (see :func:`resolve_encoder`). Every built-in train-state factory
    uses it.

    Raises:
        ValueError: as :func:`encoder_spec`.
    """
    name = getattr(config.algo_params, "encoder", "auto")
    return resolve_encoder(config.env_cfg.observation_space, name, preprocess_fn)


def dummy_observation(space: gym.Space, batch_shape: Sequence[int] = (1,)) -> Any:
    """Zero observations of ``space`` with leading ``batch_shape``, with the space's dtype and
    structure (a dict for a Dict space), e.g. to initialise a network.

    Raises:
        ValueError: for spaces other than Box, Discrete, MultiDiscrete, MultiBinary and Dict.
    """
    batch_shape = tuple(batch_shape)
    if isinstance(space, gym.spaces.Dict):
        return {k: dummy_observation(s, batch_shape) for k, s in space.spaces.items()}
    if isinstance(
        space,
        (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary),
    ):
        dtype = np.dtype(space.dtype)
        if dtype == np.int64 and not jax.config.jax_enable_x64:
            dtype = np.dtype(np.int32)
        elif dtype == np.float64 and not jax.config.jax_enable_x64:
            dtype = np.dtype(np.float32)
        return jnp.zeros((*batch_shape, *space.shape), dtype)
    raise ValueError(
        f"observation space {space} is not supported: use {SUPPORTED_SPACES} observation spaces."
    )


def observation_shapes(space: Any) -> Any:
    """The shape of one observation of ``space`` (a dict of shapes for a Dict space, a tuple of
    them for a Tuple space): what the networks were built for."""
    if isinstance(space, gym.spaces.Dict):
        return {k: observation_shapes(s) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(observation_shapes(s) for s in space.spaces)
    shape = getattr(space, "shape", None)
    return None if shape is None else tuple(int(n) for n in shape)


# ---- networks -----------------------------------------------------------------------------------


def flatten(x: jax.Array) -> jax.Array:
    """``[B, ...] -> float32[B, prod(...)]``."""
    return jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)


def to_channels_last(x: jax.Array, layout: str) -> jax.Array:
    """Images ``[B, ...]`` laid out as ``layout`` to channels-last ``[B, H, W, C]``.

    Raises:
        ValueError: if the rank does not match the layout.
    """
    rank = {"hw": 3, "hwc": 4, "chw": 4, "shwc": 5}[layout]
    if x.ndim != rank:
        raise ValueError(
            f"observations of shape {x.shape} do not match the encoder's layout {layout!r} "
            f"(expected rank {rank} with the batch axis)."
        )
    if layout == "hw":
        return x[..., None]
    if layout == "chw":
        return jnp.transpose(x, (0, 2, 3, 1))
    if layout == "shwc":
        b, s, h, w, c = x.shape
        return jnp.transpose(x, (0, 2, 3, 1, 4)).reshape((b, h, w, s * c))
    return x


def scale_pixels(x: jax.Array) -> jax.Array:
    """float32 ``x``; ``uint8`` pixels are scaled by 1/255 into ``[0, 1]``."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    return x.astype(jnp.float32)


def _conv_as_matmul() -> bool:
    """Whether :class:`Conv` runs as patches times a matrix (the CPU backend, where XLA's
    convolution gradients inside ``lax.scan`` are several times slower than a matmul)."""
    return jax.default_backend() == "cpu"


class Conv(nn.Module):
    """A 2-D convolution with :class:`flax.linen.Conv`'s parameters (``kernel [kh, kw, C, F]``,
    ``bias [F]``, the same initialisers and names), computed on the CPU as image patches times
    the kernel matrix, elsewhere with ``lax.conv_general_dilated``.

    Written by hand because flax's ``Conv`` always lowers to XLA's convolution, whose weight
    gradient in a scanned update is 6x slower on the CPU than the equivalent matmul (MinAtar PPO).

    Attributes:
        features: output channels ``F``.
        kernel_size: ``(kh, kw)``.
        strides: ``(sh, sw)``.
        padding: ``"VALID"`` or ``"SAME"``.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: ``x`` float32 ``[B, H, W, C]``. Returns: ``float32[B, H', W', F]``."""
        kh, kw = self.kernel_size
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (kh, kw, channels, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        numbers = ("NHWC", "HWIO", "NHWC")
        if not _conv_as_matmul():
            y = jax.lax.conv_general_dilated(
                x, kernel, self.strides, self.padding, dimension_numbers=numbers
            )
            return y + bias
        patches = jax.lax.conv_general_dilated_patches(
            x, (kh, kw), self.strides, self.padding, dimension_numbers=numbers
        )  # features ordered (C, kh, kw)
        matrix = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(channels * kh * kw, self.features)
        return patches @ matrix + bias


class NatureCNN(nn.Module):
    """The convolutions of the Nature DQN: 32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1
    (unpadded), each followed by a ReLU, then flattened (84x84 frames give 7x7x64 = 3136
    features; the 512-unit dense layer is the MLP torso on top).

    See "Human-level control through deep reinforcement learning", Mnih et al., 2015.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: ``x`` float32 ``[B, H, W, C]``. Returns: ``float32[B, F]``."""
        for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            x = nn.relu(Conv(features, (kernel, kernel), (stride, stride), "VALID")(x))
        return flatten(x)


class MinAtarCNN(nn.Module):
    """The MinAtar network's convolution: 16 3x3 stride 1 (unpadded) and a ReLU, flattened
    (10x10 grids give 8x8x16 = 1024 features; the 128-unit dense layer is the MLP torso on top).

    See "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible Reinforcement Learning
    Experiments", Young & Tian, 2019.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: ``x`` float32 ``[B, H, W, C]``. Returns: ``float32[B, F]``."""
        return flatten(nn.relu(Conv(16, (3, 3), (1, 1), "VALID")(x)))


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 same-padded convolutions of ``features``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = Conv(self.features, (3, 3), padding="SAME")(nn.relu(x))
        y = Conv(self.features, (3, 3), padding="SAME")(nn.relu(y))
        return x + y


class ImpalaCNN(nn.Module):
    """The IMPALA ResNet: for each stack (16, 32, 32 channels) a 3x3 convolution, a 3x3 max-pool
    of stride 2 and two :class:`ResidualBlock`; then a ReLU and a flatten (the 256-unit dense
    layer is the MLP torso on top).

    See "IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner
    Architectures", Espeholt et al., 2018.

    Attributes:
        channels: channels of each stack.
    """

    channels: Sequence[int] = (16, 32, 32)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: ``x`` float32 ``[B, H, W, C]``. Returns: ``float32[B, F]``."""
        for features in self.channels:
            x = Conv(features, (3, 3), padding="SAME")(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            x = ResidualBlock(features)(x)
            x = ResidualBlock(features)(x)
        return flatten(nn.relu(x))


CONV_NETWORKS: dict[str, type[nn.Module]] = {
    "nature_cnn": NatureCNN,
    "minatar_cnn": MinAtarCNN,
    "impala": ImpalaCNN,
}


class Encoder(nn.Module):
    """Observations (an array ``[B, ...]`` or a dict of them) to features ``float32[B, F]``, as
    ``spec`` says (see the module docstring). ``flatten`` has no parameters; a convolutional
    kind's parameters sit under its name (e.g. ``nature_cnn``), a Dict's under each key.

    Attributes:
        spec: the encoder.
    """

    spec: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> jax.Array:
        """Args: ``observations`` ``[B, ...]`` or a dict of them. Returns: ``float32[B, F]``."""
        spec = self.spec
        if spec.kind == "dict":
            if not isinstance(observations, Mapping):
                raise ValueError(
                    f"the encoder expects dict observations with keys {[k for k, _ in spec.keys]},"
                    f" got {type(observations).__name__}."
                )
            features = [Encoder(sub, name=key)(observations[key]) for key, sub in spec.keys]
            return jnp.concatenate(features, axis=-1)
        if spec.kind == "flatten":
            return flatten(observations)
        x = scale_pixels(to_channels_last(observations, spec.layout))
        return CONV_NETWORKS[spec.kind](name=spec.kind)(x)


__all__ = [
    "CONV_KINDS",
    "ENCODER_NAMES",
    "FLATTEN",
    "Encoder",
    "EncoderSpec",
    "ImpalaCNN",
    "KINDS",
    "LAYOUTS",
    "MinAtarCNN",
    "NatureCNN",
    "ResidualBlock",
    "dummy_observation",
    "encoder_spec",
    "flatten",
    "image_layout",
    "image_size",
    "network_encoder",
    "observation_shapes",
    "resolve_encoder",
    "scale_pixels",
    "to_channels_last",
]
