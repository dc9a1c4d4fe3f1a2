"""Peer benchmark: rejax PPO / DQN on gymnax CartPole-v1.

Trains ``rejax.PPO`` or ``rejax.DQN`` with the hyperparameters of rejax's
``configs/gymnax/cartpole.yaml`` on K seeds at once
(``jax.jit(jax.vmap(algo.train))``), then evaluates each seed's greedy policy
(argmax of the PPO actor logits / of the DQN Q-values) on 128 gymnax
CartPole-v1 episodes and prints a single JSON line to stdout.

rejax's in-training evaluation is switched off (no initial evaluation, a no-op
evaluation callback, ``eval_freq = total_timesteps``), so the timed function
only trains. ``compile_s`` is the time of ``train_fn.lower(keys).compile()``;
``train_s`` is the best of two executions of the compiled function, or a
single execution when the first one takes longer than
``SINGLE_RUN_THRESHOLD_S`` (field ``timing``). ``sps`` is the aggregate
``seeds * steps / train_s``.

Usage::

    python benchmarks/peers/rejax_cartpole.py --algo ppo --seeds 5
    python benchmarks/peers/rejax_cartpole.py --algo dqn --buffer 10000

Run it from the rejax virtualenv (see ``benchmarks/peers/requirements-rejax.txt``).
"""

import argparse
import json
import os
import platform
import time
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np
import rejax

ENV_ID = "CartPole-v1"
EVAL_EPISODES = 128
EVAL_STEPS = 500
EVAL_KEY = 10_000
SINGLE_RUN_THRESHOLD_S = 90.0

# rejax configs/gymnax/cartpole.yaml (total_timesteps and eval_freq set per run).
PPO_CONFIG = {
    "env": ENV_ID,
    "agent_kwargs": {"activation": "tanh", "hidden_layer_sizes": (64, 64)},
    "num_envs": 5,
    "num_steps": 100,
    "num_epochs": 5,
    "num_minibatches": 5,
    "learning_rate": 7.5e-4,
    "max_grad_norm": 0.5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_eps": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
}
DQN_CONFIG = {
    "env": ENV_ID,
    "agent": "DuelingQNetwork",
    "agent_kwargs": {"activation": "swish"},
    "num_envs": 10,
    "buffer_size": 50_000,
    "fill_buffer": 5_000,
    "batch_size": 100,
    "max_grad_norm": 10.0,
    "learning_rate": 1e-3,
    "num_epochs": 5,
    "polyak": 0.98,
    "eps_start": 1.0,
    "eps_end": 0.05,
    "exploration_fraction": 0.5,
    "gamma": 0.99,
    "ddqn": True,
    "normalize_observations": False,
}


def make_algo(algo: str, steps: int, buffer: int | None):
    """rejax algorithm with the CartPole config and in-training evaluation disabled."""
    config = dict(PPO_CONFIG if algo == "ppo" else DQN_CONFIG)
    config.update(total_timesteps=steps, eval_freq=steps, skip_initial_evaluation=True)
    if buffer is not None:
        config["buffer_size"] = buffer
    agent = rejax.get_algo(algo).create(**config)
    return agent.replace(eval_callback=lambda agent, ts, rng: ())


def greedy_scores(agent, algo: str):
    """Function mapping one seed's train state to greedy action scores for a batch of obs."""
    if algo == "ppo":

        def logits(module, obs):
            return module.action_logits(module.features(obs))

        return lambda ts, obs: agent.actor.apply(ts.actor_ts.params, obs, method=logits)
    return lambda ts, obs: agent.agent.apply(ts.q_ts.params, obs)


def make_evaluate(agent, algo: str):
    """Jitted ``ts -> returns``: greedy return of each of EVAL_EPISODES episodes, per seed."""
    env, env_params = agent.env, agent.env_params
    scores = greedy_scores(agent, algo)
    reset_keys = jax.random.split(jax.random.PRNGKey(EVAL_KEY), EVAL_EPISODES)

    def evaluate_one(ts):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)
        step_keys = jax.random.split(jax.random.PRNGKey(EVAL_KEY + 1), EVAL_STEPS)

        def step(carry, key):
            obs, state, total, alive = carry
            action = jnp.argmax(scores(ts, obs), axis=-1)
            keys = jax.random.split(key, EVAL_EPISODES)
            obs, state, reward, done, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys, state, action, env_params
            )
            total = total + reward * alive
            alive = alive * (1.0 - done)
            return (obs, state, total, alive), None

        init = (obs, state, jnp.zeros(EVAL_EPISODES), jnp.ones(EVAL_EPISODES))
        (_, _, total, _), _ = jax.lax.scan(step, init, step_keys)
        return total

    return jax.jit(jax.vmap(evaluate_one))


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("ppo", "dqn"), required=True)
    parser.add_argument("--seeds", type=int, default=1, help="seeds trained in one vmap")
    parser.add_argument(
        "--steps", type=int, default=100_000, help="environment steps per seed (total_timesteps)"
    )
    parser.add_argument(
        "--buffer", type=int, default=None, help="DQN replay buffer size (default: 50000)"
    )
    args = parser.parse_args()
    if args.buffer is not None and args.algo != "dqn":
        parser.error("--buffer applies to dqn only")

    loadavg = list(os.getloadavg())
    agent = make_algo(args.algo, args.steps, args.buffer)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    train_fn = jax.jit(jax.vmap(agent.train))

    start = time.perf_counter()
    compiled = train_fn.lower(keys).compile()
    compile_s = time.perf_counter() - start

    times = []
    while len(times) < 2:
        start = time.perf_counter()
        ts, _ = jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - start)
        if times[0] > SINGLE_RUN_THRESHOLD_S:
            break
    train_s = min(times)

    returns = np.asarray(make_evaluate(agent, args.algo)(ts))
    per_seed = [float(r) for r in returns.mean(axis=1)]
    print(
        json.dumps(
            {
                "system": "rejax",
                "algo": args.algo,
                "config": "rejax",
                "seeds": args.seeds,
                "steps": args.steps,
                "env_steps": int(np.asarray(ts.global_step)[0]),
                "buffer": agent.buffer_size if args.algo == "dqn" else None,
                "compile_s": compile_s,
                "train_s": train_s,
                "train_s_runs": times,
                "timing": "best_of_2" if len(times) == 2 else "single",
                "sps": args.seeds * args.steps / train_s,
                "eval_mean": float(np.mean(per_seed)),
                "eval_per_seed": per_seed,
                "loadavg": loadavg,
                "machine": {
                    "platform": platform.platform(),
                    "cpu": cpu_model(),
                    "cpu_count": os.cpu_count(),
                    "affinity": len(os.sched_getaffinity(0)),
                    "jax_backend": jax.default_backend(),
                },
                "versions": {
                    name: version(name)
                    for name in ("rejax", "gymnax", "jax", "jaxlib", "flax", "optax")
                },
            }
        )
    )


if __name__ == "__main__":
    main()
