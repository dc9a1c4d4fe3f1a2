"""jax-neurorl-style builders for :func:`kitae.compiled.make_train`.

jax-neurorl's ``make_train(config, env, ...)`` takes builder functions, preloaded with
``functools.partial``; kitae's :func:`~kitae.compiled.make_train` takes the same keywords and maps
them onto its four factories:

.. code-block:: python

    make_train_preloaded = functools.partial(
        make_train,
        make_agent=qlearning.make_agent,
        make_optimizer=qlearning.make_optimizer,
        make_loss_fn_class=qlearning.make_loss_fn_class,
        make_actor=qlearning.make_actor,
        make_logger=qlearning.make_logger,
    )
    train = make_train_preloaded(config, env)

=========================================  ==================================================
builder                                    what it builds, and which factory it stands for
=========================================  ==================================================
``make_agent(config, env, key)``           ``(network, params)``: the network (anything with
                                           ``network.apply(params, ...)``) and its initial
                                           params; with ``make_optimizer``, the
                                           ``train_state_factory``: a
                                           :class:`~kitae.modules.train_state.TrainState` with
                                           ``target_params = params``
``make_optimizer(config)``                 the ``optax.GradientTransformation`` of that
                                           TrainState
``make_loss_fn_class(config)``             ``loss_fn(state, params, key, batch) -> (losses [B],
                                           priorities [B], info)``, the per-sample losses of
                                           the online ``params`` on a processed batch;
                                           the ``update_step_factory`` is one gradient step
                                           on ``mean(batch.weight * losses)`` and the target
                                           update (:func:`kitae.algos.dqn.q_learning_update_step`)
``make_actor(config)``                     the ``explore_factory``: ``explore_fn(state, key,
                                           observations, [core_state,] exploration) ->
                                           (actions, log_probs[, core_state])``
``make_logger(config, env)``               the ``log_callback``: called on the host with each
                                           :class:`~kitae.compiled.Metrics` row
=========================================  ==================================================

A builder left out falls back to the algorithm that ``config.algo_params`` belongs to (the kitae
agent whose ``params_type`` it is): its factories, its epsilon schedule as
``explore_hyperparams`` (``exploration``, for the epsilon-greedy agents) and, for a recurrent
agent, its zero core states as ``init_actor_state``; no logger. :mod:`kitae.builders.qlearning`
holds kitae's own Q-learning builders (DQN's, feed-forward or ``torso="lstm"``).
``make_loss_fn_class`` needs Q-learning params (``tau``, ``target_update_period``,
``prioritized``: with prioritized replay the ``priorities`` are written back). A learning-rate
sweep through ``hyperparams={"learning_rate": ...}`` needs the optimizer of
:func:`kitae.modules.optimizer.make_optimizer` (the default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from kitae.config import AlgoConfig, builtin_agent_classes
from kitae.modules.train_state import TrainState

BUILDERS = ("make_agent", "make_optimizer", "make_loss_fn_class", "make_actor", "make_logger")


class TrainPieces(NamedTuple):
    """What :func:`kitae.compiled.make_train` needs, resolved from factories and builders.

    Attributes:
        train_state_factory: ``(key, config) -> state``.
        explore_factory: ``config -> explore_fn``.
        process_experience_factory: ``config -> process_experience_fn``.
        update_step_factory: ``config -> update_step_fn``.
        algo_type: ``"off_policy"`` or ``"on_policy"``.
        explore_hyperparams: ``(env_steps, hyperparams) -> kwargs`` of ``explore_fn``, or None.
        init_actor_state: ``n_envs -> actor_state`` of a recurrent agent, or None.
        log_callback: called with each metrics row, or None.
    """

    train_state_factory: Callable[..., Any]
    explore_factory: Callable[[AlgoConfig], Callable]
    process_experience_factory: Callable[[AlgoConfig], Callable]
    update_step_factory: Callable[[AlgoConfig], Callable]
    algo_type: str
    explore_hyperparams: Callable[[jax.Array, dict], dict] | None
    init_actor_state: Callable[[int], Any] | None
    log_callback: Callable[[Any], None] | None


def algorithm_of(config: AlgoConfig) -> type | None:
    """The built-in kitae agent class whose ``params_type`` is ``type(config.algo_params)``, or
    ``None``."""
    for cls in builtin_agent_classes():
        if getattr(cls, "params_type", None) is type(config.algo_params):
            return cls
    return None


def default_explore_hyperparams(config: AlgoConfig) -> Callable[[jax.Array, dict], dict] | None:
    """``(env_steps, hyperparams) -> {"exploration": epsilon}`` with the linear epsilon schedule
    of epsilon-greedy params (``exploration_start`` / ``_end`` / ``_fraction``; a compiled
    sweep's traced ends replace the schedule's), or ``None`` for other params."""
    from kitae.algos.dqn import epsilon_schedule, traced_epsilon

    p = config.algo_params
    fields = ("exploration_start", "exploration_end", "exploration_fraction")
    if not all(hasattr(p, name) for name in fields):
        return None
    schedule = epsilon_schedule(p, config.train_cfg.n_env_steps)
    return lambda env_steps, hyperparams: {
        "exploration": traced_epsilon(schedule, hyperparams, env_steps)
    }


def default_init_actor_state(config: AlgoConfig) -> Callable[[int], jax.Array] | None:
    """``n_envs -> float32[n_envs, D]`` zero core states of a recurrent Q-learning config (R2D2
    params, or ``torso="lstm"``), or ``None`` for a feed-forward one."""
    import jax.numpy as jnp

    from kitae.algos.dqn import is_recurrent
    from kitae.algos.r2d2 import R2D2Params
    from kitae.modules.recurrent import core_state_size

    p = config.algo_params
    if isinstance(p, R2D2Params):
        width = core_state_size(p.cell, p.core_size)
    elif is_recurrent(config):
        width = core_state_size("lstm", p.lstm_size)
    else:
        return None
    return lambda n_envs: jnp.zeros((n_envs, width), jnp.float32)


def _check_callable(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise ValueError(
            f"make_train's {name}={value!r} is not callable: pass a function (preload its "
            "extra arguments with functools.partial)."
        )


def builder_train_state_factory(
    env: Any,
    make_agent: Callable | None,
    make_optimizer: Callable | None,
    fallback: Callable[..., Any],
) -> Callable[[jax.Array, AlgoConfig], Any]:
    """``(key, config) -> TrainState`` from ``make_agent`` / ``make_optimizer``.

    Args:
        env: the env, passed to ``make_agent``.
        make_agent: ``(config, env, key) -> (network, params)``, or ``None``: the network and
            params of ``fallback``'s state (its target params too).
        make_optimizer: ``config -> optax.GradientTransformation``, or ``None``: kitae's Adam
            (:func:`kitae.modules.optimizer.make_optimizer` over the run's gradient steps).
        fallback: the algorithm's own ``train_state_factory``.
    """
    from kitae.modules.optimizer import make_optimizer as kitae_optimizer
    from kitae.schedules import off_policy_gradient_steps

    if make_agent is None and make_optimizer is None:
        return fallback

    def train_state_factory(key: jax.Array, config: AlgoConfig) -> TrainState:
        if make_agent is None:
            base = fallback(key, config)
            apply_fn, params, target_params = base.apply_fn, base.params, base.target_params
        else:
            built = make_agent(config, env, key)
            if not (isinstance(built, tuple) and len(built) == 2 and hasattr(built[0], "apply")):
                raise ValueError(
                    f"make_agent returned {type(built).__name__}; it must return (network, "
                    "params), the network having an apply(params, ...) method."
                )
            network, params = built
            apply_fn, target_params = network.apply, params
        tx = (
            make_optimizer(config)
            if make_optimizer is not None
            else kitae_optimizer(config.update_cfg, off_policy_gradient_steps(config))
        )
        return TrainState.create(
            apply_fn=apply_fn, params=params, target_params=target_params, tx=tx
        )

    return train_state_factory


def builder_update_step_factory(make_loss_fn_class: Callable) -> Callable[[AlgoConfig], Callable]:
    """``config -> update_step_fn(state, key, batch) -> (state, info)``: one gradient step on
    the loss of ``make_loss_fn_class(config)``, then the target update (see
    :func:`kitae.algos.dqn.q_learning_update_step`)."""
    from kitae.algos.dqn import q_learning_update_step

    def update_step_factory(config: AlgoConfig) -> Callable:
        return q_learning_update_step(config.algo_params, make_loss_fn_class(config))

    return update_step_factory


def resolve_train_pieces(
    config: AlgoConfig,
    env: Any,
    factories: tuple[Callable | None, Callable | None, Callable | None, Callable | None],
    *,
    algo_type: str | None,
    explore_hyperparams: Callable | None,
    init_actor_state: Callable | None,
    log_callback: Callable | None,
    **builders: Callable | None,
) -> TrainPieces:
    """Maps neurorl's builders and kitae's factories onto one set of :class:`TrainPieces`.

    A factory given explicitly is used as is; a builder replaces the factory it stands for (see
    the module doc); everything else comes from the algorithm of ``config.algo_params``.

    Args:
        config: the agent's config.
        env: the JAX env (passed to ``make_agent`` and ``make_logger``).
        factories: the four factories given to ``make_train`` (``None`` where left out).
        algo_type: ``make_train``'s argument (``None``: the algorithm's).
        explore_hyperparams: ``make_train``'s argument (``None``: the algorithm's).
        init_actor_state: ``make_train``'s argument (``None``: the algorithm's).
        log_callback: ``make_train``'s argument (``None``: ``make_logger``'s, if given).
        builders: ``make_agent``, ``make_optimizer``, ``make_loss_fn_class``, ``make_actor``,
            ``make_logger`` (see the module doc).

    Raises:
        ValueError: naming the argument: an unknown builder name, a builder that is not
            callable, a builder given with the factory it stands for, ``make_loss_fn_class``
            with params that are not Q-learning params, or a missing factory with params that
            no kitae agent declares.
    """
    from kitae.algos.dqn import QLearningParams

    unknown = sorted(set(builders) - set(BUILDERS))
    if unknown:
        raise ValueError(
            f"make_train got unknown keyword(s) {unknown}: the builders are {list(BUILDERS)}."
        )
    builders = {name: builders.get(name) for name in BUILDERS}
    make_agent, make_optimizer = builders["make_agent"], builders["make_optimizer"]
    make_loss_fn_class, make_actor = builders["make_loss_fn_class"], builders["make_actor"]
    make_logger = builders["make_logger"]
    for name, value in builders.items():
        _check_callable(name, value)
    train_state, explore, process, update = factories
    names = ("train_state_factory", "explore_factory", "process_experience_factory")
    for factory_name, factory, builder_name in (
        (names[0], train_state, "make_agent"),
        (names[0], train_state, "make_optimizer"),
        (names[1], explore, "make_actor"),
        ("update_step_factory", update, "make_loss_fn_class"),
    ):
        if factory is not None and builders[builder_name] is not None:
            raise ValueError(
                f"make_train got both {factory_name} and {builder_name}: {builder_name} builds "
                f"the {factory_name}; pass one of them."
            )
    if make_loss_fn_class is not None and not isinstance(config.algo_params, QLearningParams):
        raise ValueError(
            f"make_train's make_loss_fn_class needs Q-learning params (tau, target_update_period,"
            f" prioritized); config.algo_params is {type(config.algo_params).__name__}. Pass an "
            "update_step_factory instead."
        )
    algorithm = algorithm_of(config)
    needs_default = (
        (train_state is None and make_agent is None)
        or (explore is None and make_actor is None)
        or process is None
        or (update is None and make_loss_fn_class is None)
    )
    if algorithm is None and needs_default:
        raise ValueError(
            f"config.algo_params is {type(config.algo_params).__name__}, which no kitae agent "
            "declares as its params_type, so make_train has no default factories for it: pass "
            "the four factories (or the builders)."
        )
    defaults = algorithm.factories if algorithm is not None else (None, None, None, None)
    fallback_state = train_state or defaults[0]
    if fallback_state is None and make_agent is None:
        raise ValueError("make_train needs a train_state_factory or make_agent.")
    return TrainPieces(
        train_state_factory=builder_train_state_factory(
            env, make_agent, make_optimizer, fallback_state
        ),
        explore_factory=explore or make_actor or defaults[1],
        process_experience_factory=process or defaults[2],
        update_step_factory=(
            update
            or (builder_update_step_factory(make_loss_fn_class) if make_loss_fn_class else None)
            or defaults[3]
        ),
        algo_type=algo_type or (algorithm.algo_type if algorithm is not None else "off_policy"),
        explore_hyperparams=(
            explore_hyperparams
            if explore_hyperparams is not None or algorithm is None
            else default_explore_hyperparams(config)
        ),
        init_actor_state=(
            init_actor_state if init_actor_state is not None else default_init_actor_state(config)
        ),
        log_callback=(
            log_callback
            if log_callback is not None or make_logger is None
            else make_logger(config, env)
        ),
    )


__all__ = [
    "BUILDERS",
    "TrainPieces",
    "algorithm_of",
    "builder_train_state_factory",
    "builder_update_step_factory",
    "default_explore_hyperparams",
    "default_init_actor_state",
    "resolve_train_pieces",
]
