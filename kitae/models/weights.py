"""Exchange the weights of dense networks between flax and PyTorch through safetensors.

A flax network made of ``nn.Dense`` layers and a torch network made of ``nn.Linear`` layers
with the same architecture share their weights: the ``i``-th Dense layer *called* by the flax
module (found by intercepting the calls on an example input, so the order does not depend on
dict ordering) matches the ``i``-th torch layer named in ``torch_names``. A flax kernel
``[in, out]`` is the transpose of a torch weight ``[out, in]``; biases are equal. Files hold
torch-named tensors (``"<name>.weight"``, ``"<name>.bias"``), so
``torch_module.load_state_dict(safetensors.torch.load_file(path))`` reads them.

:func:`tree_arrays` and :func:`tree_from_arrays` name the arrays of any pytree by their path,
which is how models save their weights (:meth:`kitae.models.BaseModel.save`).

safetensors (and torch, for the torch helpers) are imported lazily: install ``kitae[torch]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from kitae.types import Params


def dense_layer_paths(module: nn.Module, variables: Params, *inputs: Any) -> list[tuple[str, ...]]:
    """Paths of the ``nn.Dense`` layers of ``module`` in the order ``module.apply(variables,
    *inputs)`` calls them (each layer once)."""
    order: list[tuple[str, ...]] = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            path = tuple(context.module.path)
            if path not in order:
                order.append(path)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(module.apply, variables, *inputs)
    return order


def _layer(params: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        params = params[name]
    return params


def _check_names(paths: list[tuple[str, ...]], torch_names: Sequence[str]) -> None:
    if len(paths) != len(torch_names):
        raise ValueError(
            f"the flax module calls {len(paths)} Dense layers {paths}, but torch_names names "
            f"{len(torch_names)} layers {list(torch_names)}."
        )


def flax_to_torch_state_dict(
    module: nn.Module,
    variables: Params,
    example_input: Any,
    torch_names: Sequence[str],
) -> dict[str, np.ndarray]:
    """Torch-named ``float32`` arrays of the flax Dense layers.

    Args:
        module: the flax module.
        variables: its variables (``{"params": ...}``).
        example_input: an input batch ``[B, ...]`` the module accepts.
        torch_names: the torch Linear layers' names, in the same order (see
            :func:`torch_linear_names`).

    Returns:
        ``{"<name>.weight": [out, in], "<name>.bias": [out]}`` for each layer.
    """
    paths = dense_layer_paths(module, variables, example_input)
    _check_names(paths, torch_names)
    out: dict[str, np.ndarray] = {}
    for path, name in zip(paths, torch_names, strict=True):
        layer = _layer(variables["params"], path)
        out[f"{name}.weight"] = np.ascontiguousarray(np.asarray(layer["kernel"], np.float32).T)
        if "bias" in layer:
            out[f"{name}.bias"] = np.asarray(layer["bias"], np.float32)
    return out


def torch_state_dict_to_flax(
    state_dict: dict[str, Any],
    module: nn.Module,
    variables: Params,
    example_input: Any,
    torch_names: Sequence[str],
) -> Params:
    """``variables`` with the Dense layers' parameters replaced by the torch ones.

    Args:
        state_dict: torch-named arrays or tensors (``"<name>.weight"`` ``[out, in]``).
        module: the flax module.
        variables: its variables (``{"params": ...}``), whose Dense layers are replaced.
        example_input: an input batch ``[B, ...]`` the module accepts.
        torch_names: the torch Linear layers' names, in the order of
            :func:`flax_to_torch_state_dict`.

    Raises:
        ValueError: if a layer is missing or a shape differs.
    """
    paths = dense_layer_paths(module, variables, example_input)
    _check_names(paths, torch_names)
    replacements: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    for path, name in zip(paths, torch_names, strict=True):
        layer = _layer(variables["params"], path)
        new = {}
        for field, key, transpose in (("kernel", "weight", True), ("bias", "bias", False)):
            if field not in layer:
                continue
            if f"{name}.{key}" not in state_dict:
                raise ValueError(f"the state dict has no {name}.{key!s} for flax layer {path}.")
            value = _to_numpy(state_dict[f"{name}.{key}"])
            value = value.T if transpose else value
            if value.shape != tuple(layer[field].shape):
                raise ValueError(
                    f"{name}.{key} has shape {value.shape}, flax layer {path} {field} needs "
                    f"{tuple(layer[field].shape)}."
                )
            new[field] = np.ascontiguousarray(value, np.float32)
        replacements[path] = new

    def rebuild(tree: Any, prefix: tuple[str, ...]) -> Any:
        if prefix in replacements:
            return {**tree, **{k: jax.numpy.asarray(v) for k, v in replacements[prefix].items()}}
        if isinstance(tree, Mapping):
            return {k: rebuild(v, (*prefix, k)) for k, v in tree.items()}
        return tree

    return {**variables, "params": rebuild(variables["params"], ())}


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float32)


def save_flax_safetensors(
    path: str | Path,
    module: nn.Module,
    variables: Params,
    example_input: Any,
    torch_names: Sequence[str],
) -> None:
    """Writes the flax Dense layers as a torch-named safetensors file (see
    :func:`flax_to_torch_state_dict`)."""
    from safetensors.numpy import save_file

    save_file(flax_to_torch_state_dict(module, variables, example_input, torch_names), str(path))


def load_flax_safetensors(
    path: str | Path,
    module: nn.Module,
    variables: Params,
    example_input: Any,
    torch_names: Sequence[str],
) -> Params:
    """``variables`` with the Dense layers read from a torch-named safetensors file (see
    :func:`torch_state_dict_to_flax`)."""
    from safetensors.numpy import load_file

    return torch_state_dict_to_flax(
        load_file(str(path)), module, variables, example_input, torch_names
    )


def torch_linear_names(torch_module: Any) -> list[str]:
    """Names of the ``torch.nn.Linear`` layers of ``torch_module``, in registration order
    (for ``nn.Sequential``, the forward order)."""
    import torch

    return [n for n, m in torch_module.named_modules() if isinstance(m, torch.nn.Linear)]


def save_torch_safetensors(torch_module: Any, path: str | Path) -> None:
    """Writes ``torch_module.state_dict()`` to a safetensors file."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in torch_module.state_dict().items()}, str(path))


def load_torch_safetensors(torch_module: Any, path: str | Path) -> None:
    """Loads a safetensors file into ``torch_module`` (strict: every parameter must be there)."""
    from safetensors.torch import load_file

    torch_module.load_state_dict(load_file(str(path)))


def tree_arrays(tree: Any) -> dict[str, np.ndarray]:
    """The array leaves of a pytree by their path (``jax.tree_util.keystr``), as numpy arrays.

    Args:
        tree: a pytree of arrays (e.g. a flax ``TrainState``, whose static fields are not
            leaves).

    Returns:
        ``{path: array}`` for every leaf, in the tree's order.
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def tree_from_arrays(template: Any, arrays: Mapping[str, Any]) -> Any:
    """``template`` with every leaf replaced by the array of the same path in ``arrays``.

    Args:
        template: the pytree giving the structure, names, shapes and dtypes.
        arrays: ``{path: array}`` as :func:`tree_arrays` names them.

    Returns:
        The new pytree, each leaf of the kind and dtype of the template's (JAX array, numpy
        array or Python scalar).

    Raises:
        ValueError: if a name is missing or extra, or a shape differs.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(path) for path, _ in leaves]
    missing, extra = set(names) - set(arrays), set(arrays) - set(names)
    if missing or extra:
        raise ValueError(
            f"the arrays do not match the model: missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}."
        )
    new = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        value = np.asarray(arrays[name])
        if value.shape != np.shape(leaf):
            raise ValueError(f"{name} has shape {value.shape}, the model needs {np.shape(leaf)}.")
        new.append(_like(leaf, value))
    return jax.tree_util.tree_unflatten(treedef, new)


def _like(leaf: Any, value: np.ndarray) -> Any:
    """``value`` as the kind of ``leaf``: a JAX array of its dtype, a numpy array of its dtype,
    or a Python scalar of its type (e.g. a train state's ``step`` before the first update)."""
    if isinstance(leaf, jax.Array):
        return jax.numpy.asarray(value, dtype=leaf.dtype)
    if isinstance(leaf, np.ndarray | np.generic):
        return np.asarray(value, dtype=leaf.dtype)
    return type(leaf)(value.item())
