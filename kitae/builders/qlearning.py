"""kitae's Q-learning builders in jax-neurorl's shape (see :mod:`kitae.builders`): DQN's network,
optimizer, loss and epsilon-greedy actor, feed-forward or recurrent (``DQNParams(torso="lstm")``,
R2D2's sequence machinery), and a logger of the metrics rows: preload them into
:func:`kitae.compiled.make_train` with ``functools.partial`` as :mod:`kitae.builders` shows, then
``runner, metrics = jax.jit(make_train_preloaded(config, env))(key)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import optax

from kitae.algos import dqn, r2d2
from kitae.config import AlgoConfig
from kitae.modules.modules import init_params
from kitae.modules.optimizer import make_optimizer as adam_optimizer
from kitae.modules.qvalue import qvalue_factory
from kitae.schedules import off_policy_gradient_steps
from kitae.types import Params


def make_agent(config: AlgoConfig, env: Any, key: jax.Array) -> tuple[nn.Module, Params]:
    """DQN's Q-network and its initial params: an encoder and MLP torso with a Q head, or with
    ``torso="lstm"`` R2D2's recurrent Q-network (an LSTM core of ``lstm_size`` units).

    Args:
        config: the agent's config (its ``env_cfg`` spaces size the network).
        env: the JAX env (unused: the spaces come from ``config``).
        key: PRNG key of the initial params.
    """
    del env
    if dqn.is_recurrent(config):
        return r2d2.init_recurrent_q_network(key, r2d2.recurrent_q_config(config))
    network = dqn.build_q_network(config, qvalue_factory)
    return network, init_params(key, network, [config.env_cfg.observation_space])


def make_optimizer(config: AlgoConfig) -> optax.GradientTransformation:
    """kitae's Adam from ``config.update_cfg`` (clipping, learning-rate annealing over the run's
    gradient steps)."""
    return adam_optimizer(config.update_cfg, off_policy_gradient_steps(config))


def make_loss_fn_class(config: AlgoConfig) -> Callable:
    """``loss_fn(state, params, key, batch) -> (losses [B], priorities [B], info)``: DQN's
    per-sample TD losses, or with ``torso="lstm"`` R2D2's window losses."""
    if dqn.is_recurrent(config):
        return r2d2.r2d2_sample_losses(r2d2.recurrent_q_config(config))
    return dqn.dqn_sample_losses(config)


def make_actor(config: AlgoConfig) -> Callable:
    """Epsilon-greedy ``explore_fn(state, key, observations, [core_state,] exploration)`` (see
    :func:`kitae.algos.dqn.explore_factory`)."""
    return dqn.explore_factory(config)


def make_logger(
    config: AlgoConfig, env: Any, logger: Any = None, stream: str = "train"
) -> Callable[[Any], None]:
    """The ``log_callback`` writing each metrics row to ``stream`` of ``logger`` (a
    :class:`kitae.logger.Logger`; default: one printing to the console).

    Args:
        config: the agent's config (unused).
        env: the JAX env (unused).
        logger: where rows go; preload it with ``functools.partial``.
        stream: the logger's stream.
    """
    from kitae.compiled import metrics_logger
    from kitae.logger import Logger

    del config, env
    return metrics_logger(logger if logger is not None else Logger(backends=("console",)), stream)


__all__ = ["make_actor", "make_agent", "make_logger", "make_loss_fn_class", "make_optimizer"]
