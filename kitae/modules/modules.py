"""Building blocks: parameter initialisation and MLP torsos."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from kitae.modules.encoders import dummy_observation
from kitae.types import Params


def init_params(
    key: jax.Array,
    module: nn.Module,
    inputs: Sequence[gym.Space | Sequence[int]],
    tabulate: bool = False,
) -> Params:
    """Initialises ``module`` on zero inputs of batch size 1.

    Args:
        key: PRNG key.
        module: the flax module.
        inputs: one entry per positional input: a gymnasium space (zero observations of its
            dtype and structure, a dict for a Dict space, see
            :func:`~kitae.modules.encoders.dummy_observation`) or a shape *without* the batch
            axis (float32 zeros).
        tabulate: print a table of the module's layers and parameter counts.

    Returns:
        The parameter tree.
    """
    dummy = [
        dummy_observation(x) if isinstance(x, gym.Space) else jnp.zeros((1, *x), jnp.float32)
        for x in inputs
    ]
    if tabulate:
        print(module.tabulate(key, *dummy, console_kwargs={"width": 120}))
    return module.init(key, *dummy)


def orthogonal(scale: float = 1.0) -> Callable[..., jax.Array]:
    """Orthogonal initializer: ``scale`` times a uniformly random (semi-)orthogonal matrix.

    Written here rather than with ``flax.linen.initializers.orthogonal`` because that one calls
    LAPACK's QR, a custom call that, batched under ``vmap`` inside a compiled training program,
    can deadlock XLA's CPU thread pool; this one orthonormalises Gaussian columns with
    Gram-Schmidt (applied twice, for stability) using plain matrix products.
    See "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
    Saxe et al., 2014.

    Returns:
        ``init(key, shape, dtype) -> [*shape]`` where the last axis is the output dimension.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        n_rows, n_cols = int(np.prod(shape[:-1])), int(shape[-1])
        tall = n_rows >= n_cols
        rows, cols = (n_rows, n_cols) if tall else (n_cols, n_rows)
        a = jax.random.normal(key, (cols, rows), jnp.float32)  # one Gaussian vector per row

        def orthonormalise(q: jax.Array, j: jax.Array) -> tuple[jax.Array, None]:
            v = a[j]
            for _ in range(2):
                v = v - q.T @ (q @ v)
            return q.at[j].set(v / jnp.linalg.norm(v)), None

        q, _ = jax.lax.scan(orthonormalise, jnp.zeros((cols, rows), jnp.float32), jnp.arange(cols))
        matrix = q.T if tall else q  # [n_rows, n_cols] with orthonormal columns (or rows)
        return (scale * matrix).reshape(shape).astype(dtype)

    return init


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation by name; raises ``ValueError`` listing the known ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is unknown; use one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Flattens its input and applies ``Dense -> activation`` for each hidden size.

    Attributes:
        hidden_sizes: widths of the hidden layers.
        activation: activation name (see :data:`ACTIVATIONS`).
        kernel_scale: orthogonal-init scale of the hidden layers (``None``: flax default init).
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    kernel_scale: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
        for size in self.hidden_sizes:
            if self.kernel_scale is None:
                x = nn.Dense(size)(x)
            else:
                x = nn.Dense(size, kernel_init=orthogonal(self.kernel_scale))(x)
            x = act(x)
        return x


SQRT2 = float(np.sqrt(2.0))
