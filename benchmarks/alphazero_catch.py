"""AlphaZero (search over the true dynamics) vs compiled DQN on gymnax Catch-bsuite, same
env-step budget; prints one JSON line per seed.

Both agents train on the compiled path (``jax.jit(jax.vmap(...))`` over seeds), in chunks of
``--eval-every`` transitions; after each chunk (and before the first) the greedy agent is
evaluated on 128 episodes, outside the training time. AlphaZero is evaluated twice: ``search``
acts with the argmax of the noiseless search (``greedy=True``: Gumbel scale 0), ``policy`` with
the argmax of the policy head alone; DQN with the argmax of its Q-values. ``first_step_0_9`` is
the first env-step count at which the greedy mean return is >= 0.9 (``null``: never).

``compile_s`` compiles one training chunk (vmapped over seeds); ``train_s`` sums the chunks'
execution times; ``sps`` counts the transitions of all seeds together. AlphaZero also reports
``model_steps``: env transitions simulated inside its searches (``num_simulations`` per real
step), which DQN does not use.

AlphaZero: 16 envs, rollouts of 16 steps, 8 epochs (``--epochs``) of minibatches of 64, Adam
1e-3 annealed to 0, grad norm 1, Gumbel search with 8 simulations (``--simulations``), gamma
0.99, λ-returns (0.95), scalar value head, 64-64 ReLU. DQN: 8 envs, double-Q, MSE, Polyak
0.01, buffer 10k, batch 64, 2 gradient steps every 8 transitions from 500 on, epsilon 1 ->
0.05 over 20% of the run, Adam 1e-3, 64-64 ReLU.

Usage::

    python benchmarks/alphazero_catch.py --algo alphazero --seeds 3 --steps 16384
    python benchmarks/alphazero_catch.py --algo dqn --seeds 3 --steps 16384
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import emit, learning_start

from kitae.algos.alphazero import AlphaZeroParams, explore_factory
from kitae.algos.alphazero import make_train as make_alphazero_train
from kitae.algos.dqn import DQN, DQNParams
from kitae.compiled import evaluate_compiled, make_agent_train
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
from kitae.envs.jax_env import make_jax_env
from kitae.planning import planning_env

EVAL_EPISODES = 128


def catch_config(params, update: UpdateConfig, n_envs: int, steps: int, env) -> AlgoConfig:
    return AlgoConfig(
        seed=0,
        algo_params=params,
        update_cfg=update,
        train_cfg=TrainConfig(n_env_steps=steps, progress_bar=False),
        env_cfg=EnvConfig(
            task_name="Catch-bsuite",
            observation_space=env.observation_space,
            action_space=env.action_space,
            n_envs=n_envs,
        ),
    )


def build_alphazero(steps: int, eval_every: int, simulations: int, n_epochs: int):
    """``(train, {name: act(state, key, observations) -> actions}, env, config)``."""
    env = planning_env("Catch-bsuite")
    params = AlphaZeroParams(
        num_simulations=simulations, gamma=0.99, td_lambda=0.95, hidden_sizes=(64, 64)
    )
    update = UpdateConfig(
        learning_rate=1e-3,
        learning_rate_annealing=True,
        max_grad_norm=1.0,
        max_buffer_size=256,
        batch_size=64,
        n_epochs=n_epochs,
    )
    config = catch_config(params, update, 16, steps, env)
    train = make_alphazero_train(config, env, log_interval=eval_every)
    search = explore_factory(config, env)

    def act_search(state, key, observations):
        return search(state, key, observations, True)[0]

    def act_policy(state, key, observations):
        del key
        return jnp.argmax(state.apply_fn(state.params, observations.observation)[0], axis=-1)

    return train, {"search": act_search, "policy": act_policy}, env, config


def build_dqn(steps: int, eval_every: int):
    env = make_jax_env("Catch-bsuite")
    params = DQNParams(
        gamma=0.99,
        exploration_start=1.0,
        exploration_end=0.05,
        exploration_fraction=0.2,
        double_q=True,
        loss="mse",
        tau=0.01,
        skip_steps=8,
        start_step=learning_start(500, steps),
        hidden_sizes=(64, 64),
    )
    update = UpdateConfig(learning_rate=1e-3, max_buffer_size=10_000, batch_size=64, n_epochs=2)
    config = catch_config(params, update, 8, steps, env)
    agent = DQN("dqn-catch", config)
    train = make_agent_train(agent, env, steps, log_interval=eval_every)
    greedy = agent.act_fn(greedy=True)

    def act_greedy(state, key, observations):
        return greedy(state, key, observations, jnp.zeros((), jnp.int32), {})[0]

    return train, {"greedy": act_greedy}, env, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("alphazero", "dqn"), default="alphazero")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=16_384)
    parser.add_argument("--eval-every", type=int, default=512)
    parser.add_argument("--simulations", type=int, default=8, help="AlphaZero")
    parser.add_argument("--epochs", type=int, default=8, help="AlphaZero: passes per rollout")
    args = parser.parse_args()

    if args.algo == "alphazero":
        train, actors, env, config = build_alphazero(
            args.steps, args.eval_every, args.simulations, args.epochs
        )
    else:
        train, actors, env, config = build_dqn(args.steps, args.eval_every)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(args.seed, args.seed + args.seeds))
    runner = jax.jit(jax.vmap(train.init))(keys)
    start = time.perf_counter()
    run_chunk = jax.jit(jax.vmap(train.run_chunk)).lower(runner).compile()
    compile_s = time.perf_counter() - start
    evaluators = {
        name: jax.jit(
            jax.vmap(
                lambda s, k, act=act: evaluate_compiled(act, s, env, k, EVAL_EPISODES, 10).mean()
            )
        )
        for name, act in actors.items()
    }
    eval_keys = jax.vmap(jax.random.PRNGKey)(np.arange(args.seeds) + 777)

    def evaluate(agent_state) -> dict[str, np.ndarray]:
        return {n: np.asarray(f(agent_state, eval_keys)) for n, f in evaluators.items()}

    curves = {name: [] for name in actors}
    steps_axis = [0]
    for name, values in evaluate(runner.agent_state).items():
        curves[name].append(values)
    train_s = 0.0
    for _ in range(train.n_chunks):
        start = time.perf_counter()
        runner, metrics = run_chunk(runner)
        jax.block_until_ready(runner)
        train_s += time.perf_counter() - start
        steps_axis.append(int(np.asarray(metrics.env_steps)[0]))
        for name, values in evaluate(runner.agent_state).items():
            curves[name].append(values)
    env_steps = steps_axis[-1]
    simulations = args.simulations if args.algo == "alphazero" else 0
    for i in range(args.seeds):
        record = {
            "system": "kitae",
            "algo": args.algo,
            "env": "Catch-bsuite",
            "seed": args.seed + i,
            "env_steps": env_steps,
            "n_envs": config.env_cfg.n_envs,
            "model_steps": env_steps * simulations,
            "num_simulations": simulations or None,
            "compile_s": round(compile_s, 3),
            "train_s": round(train_s, 3),
            "sps": round(args.seeds * env_steps / train_s, 1),
            "eval_every": args.eval_every,
        }
        for name, curve in curves.items():
            values = [float(v[i]) for v in curve]
            reached = [s for s, v in zip(steps_axis, values, strict=True) if v >= 0.9]
            record[f"final_eval_{name}"] = round(values[-1], 3)
            record[f"first_step_0_9_{name}"] = reached[0] if reached else None
            record[f"curve_{name}"] = [round(v, 2) for v in values]
        record["curve_steps"] = steps_axis
        emit(record)


if __name__ == "__main__":
    main()
