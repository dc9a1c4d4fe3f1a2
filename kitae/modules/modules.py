"""Building blocks: parameter initialisation and MLP torsos."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kitae.types import Params


def init_params(
    key: jax.Array,
    module: nn.Module,
    input_shapes: Sequence[Sequence[int]],
    tabulate: bool = False,
) -> Params:
    """Initialises ``module`` on zero inputs of batch size 1.

    Args:
        key: PRNG key.
        module: the flax module.
        input_shapes: the shape of each positional input *without* the batch axis.
        tabulate: print a table of the module's layers and parameter counts.

    Returns:
        The parameter tree.
    """
    dummy = [jnp.zeros((1, *shape), jnp.float32) for shape in input_shapes]
    if tabulate:
        print(module.tabulate(key, *dummy, console_kwargs={"width": 120}))
    return module.init(key, *dummy)


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
                x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(self.kernel_scale))(x)
            x = act(x)
        return x


SQRT2 = float(np.sqrt(2.0))
