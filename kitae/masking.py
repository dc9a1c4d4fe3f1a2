"""Action masking: invalid actions are never explored, chosen greedily or bootstrapped from.

Conventions:

* A mask travels in the observation: a ``Dict`` observation with the key ``"action_mask"``
  (PettingZoo's convention), ``bool`` or ``int8[n_actions]`` per observation (``[B, n_actions]``
  batched), nonzero for the valid actions. Every next observation in a replay buffer then
  carries the mask its bootstrap target needs. An env that reports the mask in
  ``info["action_mask"]`` instead is wrapped in :class:`ActionMaskObservation`, which moves it
  into such a Dict observation.
* The networks encode the whole Dict observation, the mask included (one more flattened key),
  so they also see which actions are valid.
* Masked logits and Q-values are :data:`MASKED_VALUE`, a large finite negative number rather
  than ``-inf``: probabilities of invalid actions are exactly 0 in float32, and entropies and
  expectations ``pi * log pi`` stay finite (``0 * -inf`` would be NaN). Every observation must
  allow at least one action.
* Masks apply to ``Discrete`` action spaces only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import distrax
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

ACTION_MASK_KEY = "action_mask"
"""The key of the mask in a Dict observation."""

MASKED_VALUE = -1e9
"""The logit / Q-value given to invalid actions."""


def has_action_mask(observation_space: gym.Space) -> bool:
    """Whether observations of ``observation_space`` carry an action mask."""
    return isinstance(observation_space, gym.spaces.Dict) and (
        ACTION_MASK_KEY in observation_space.spaces
    )


def action_mask(observations: Any) -> jax.Array | None:
    """The action mask of a batch of observations, ``bool[B, n_actions]``, or ``None`` when they
    carry none (an array, or a dict without ``"action_mask"``)."""
    if isinstance(observations, Mapping) and ACTION_MASK_KEY in observations:
        return jnp.asarray(observations[ACTION_MASK_KEY]).astype(bool)
    return None


def apply_mask(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``values`` with invalid actions set to :data:`MASKED_VALUE`.

    Args:
        values: logits or Q-values ``[..., n_actions]``.
        mask: ``bool[..., n_actions]`` broadcastable to ``values``, or ``None`` (no mask).

    Returns:
        ``[..., n_actions]``, ``values`` itself when ``mask`` is ``None``.
    """
    if mask is None:
        return values
    if mask.shape[-1] != values.shape[-1]:
        raise ValueError(
            f"the action mask has {mask.shape[-1]} entries but there are {values.shape[-1]} "
            "actions; the mask needs one entry per action."
        )
    return jnp.where(mask, values, jnp.asarray(MASKED_VALUE, values.dtype))


def masked_argmax(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``int32[...]``: the best valid action of ``values [..., n_actions]``."""
    return jnp.argmax(apply_mask(values, mask), axis=-1).astype(jnp.int32)


def epsilon_greedy(
    key: jax.Array,
    qvalues: jax.Array,
    epsilon: float | jax.Array,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Epsilon-greedy ``(actions int32[B], log_probs float32[B])`` over the valid actions.

    With probability ``1 - epsilon`` the best valid action, else a uniformly random valid one.
    Without a mask it is ``distrax.EpsilonGreedy``; with one, the same mixture is built over the
    valid actions only (``distrax.EpsilonGreedy`` spreads ``epsilon`` over every action).

    Args:
        key: PRNG key.
        qvalues: ``[B, n_actions]``.
        epsilon: exploration rate in ``[0, 1]``.
        mask: ``bool[B, n_actions]`` or ``None``.
    """
    if mask is None:
        return distrax.EpsilonGreedy(qvalues, epsilon).sample_and_log_prob(seed=key)
    n_actions = qvalues.shape[-1]
    greedy = jax.nn.one_hot(masked_argmax(qvalues, mask), n_actions, dtype=jnp.float32)
    valid = mask.astype(jnp.float32)
    uniform = valid / jnp.maximum(valid.sum(axis=-1, keepdims=True), 1.0)
    probs = (1.0 - epsilon) * greedy + epsilon * uniform
    actions, log_probs = distrax.Categorical(probs=probs).sample_and_log_prob(seed=key)
    return actions.astype(jnp.int32), log_probs


MULTI_DISCRETE_AGENTS = ("PPO",)
"""The built-in agents that act in ``MultiDiscrete`` action spaces (their params class sets
``multi_discrete = True``)."""


def validate_action_mask(config: Any) -> None:
    """Checks a ``MultiDiscrete`` action space against the agent, and an action mask declared by
    ``config.env_cfg.observation_space`` against the action space.

    Raises:
        ValueError: a MultiDiscrete action space for params without ``multi_discrete = True``, a
            mask on a non-Discrete action space, or a mask whose shape is not ``(n_actions,)``.
    """
    obs_space, act_space = config.env_cfg.observation_space, config.env_cfg.action_space
    params = config.algo_params
    if isinstance(act_space, gym.spaces.MultiDiscrete) and not getattr(
        params, "multi_discrete", False
    ):
        raise ValueError(
            f"env_cfg.action_space={act_space} is MultiDiscrete, which "
            f"{type(params).__name__} does not support: use one of {list(MULTI_DISCRETE_AGENTS)}, "
            "or flatten the action space into a Discrete one."
        )
    if not has_action_mask(obs_space):
        return
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(
            f"env_cfg.observation_space has an {ACTION_MASK_KEY!r} key but env_cfg.action_space="
            f"{act_space} is not Discrete: action masks apply to Discrete actions only; drop the "
            "mask from the observations."
        )
    mask_space = obs_space.spaces[ACTION_MASK_KEY]
    shape = tuple(getattr(mask_space, "shape", None) or ())
    if shape != (int(act_space.n),):
        raise ValueError(
            f"env_cfg.observation_space[{ACTION_MASK_KEY!r}]={mask_space} has shape {shape} but "
            f"env_cfg.action_space={act_space} has {int(act_space.n)} actions: the mask needs "
            f"shape ({int(act_space.n)},), one entry per action."
        )


class ActionMaskObservation(gym.Wrapper):
    """Moves ``info["action_mask"]`` into the observation: observations become
    ``{"observation": obs, "action_mask": int8[n_actions]}``.

    Wrap each single env before vectorising it, so every observation (final ones included)
    carries its mask.

    Raises:
        ValueError: if the action space is not Discrete, or (at reset / step) the info has no
            ``"action_mask"`` of shape ``(n_actions,)``.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"ActionMaskObservation needs a Discrete action space, got {env.action_space}: "
                "action masks apply to Discrete actions only."
            )
        self.n_actions = int(env.action_space.n)
        self.observation_space = gym.spaces.Dict(
            {
                "observation": env.observation_space,
                ACTION_MASK_KEY: gym.spaces.Box(0, 1, (self.n_actions,), np.int8),
            }
        )

    def _observe(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        if ACTION_MASK_KEY not in info:
            raise ValueError(
                f"ActionMaskObservation expects info[{ACTION_MASK_KEY!r}] from the env at every "
                "reset and step; the env reported none."
            )
        mask = np.asarray(info[ACTION_MASK_KEY], np.int8)
        if mask.shape != (self.n_actions,):
            raise ValueError(
                f"info[{ACTION_MASK_KEY!r}] has shape {mask.shape} but the action space has "
                f"{self.n_actions} actions: the mask needs shape ({self.n_actions},)."
            )
        return {"observation": obs, ACTION_MASK_KEY: mask}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._observe(obs, info), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(obs, info), reward, terminated, truncated, info


def check_info_mask(infos: Mapping[str, Any], observation_space: gym.Space) -> None:
    """Raises a ``ValueError`` when an env reports ``info["action_mask"]`` that the observations
    do not carry (the agent would ignore it)."""
    if ACTION_MASK_KEY in infos and not has_action_mask(observation_space):
        raise ValueError(
            f"the env reports info[{ACTION_MASK_KEY!r}] but its observations carry no mask, so "
            "the agent would ignore it: wrap each env in kitae.masking.ActionMaskObservation "
            "before vectorising it."
        )


__all__ = [
    "ACTION_MASK_KEY",
    "MASKED_VALUE",
    "MULTI_DISCRETE_AGENTS",
    "ActionMaskObservation",
    "action_mask",
    "apply_mask",
    "check_info_mask",
    "epsilon_greedy",
    "has_action_mask",
    "masked_argmax",
    "validate_action_mask",
]
