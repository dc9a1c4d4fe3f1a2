"""Parameter-shared DQN on MPE simple_spread (PettingZoo ParallelEnv), with per-agent returns.

Three agents must cover three landmarks without colliding; one DQN acts for all of them (its
observation is the agent's own plus a one-hot agent id). The script prints the greedy per-agent
returns on 20 evaluation episodes before and after training, and those of a uniformly random
policy for reference.

Needs the MPE package (``pip install -e ".[mpe]"``, i.e. mpe2; PettingZoo >= 1.25 ships MPE
separately)::

    python examples/multiagent_simple_spread.py --n-steps 40000 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from mpe2 import simple_spread_v3

from kitae.algos.dqn import DQN, DQNParams
from kitae.config import TrainConfig, UpdateConfig
from kitae.multiagent import MultiAgentTrainer


def make_env():
    """simple_spread with 3 agents, 25-step episodes, discrete actions."""
    return simple_spread_v3.parallel_env(N=3, max_cycles=25, continuous_actions=False)


def random_returns(n_episodes: int, seed: int) -> dict[str, float]:
    """Mean per-agent returns of uniformly random actions (episode ``i`` reset with
    ``seed + i``)."""
    env = make_env()
    totals: dict[str, float] = {a: 0.0 for a in env.possible_agents}
    for episode in range(n_episodes):
        env.reset(seed=seed + episode)
        for agent in env.possible_agents:
            env.action_space(agent).seed(seed + episode)
        while env.agents:
            actions = {a: env.action_space(a).sample() for a in env.agents}
            _, rewards, _, _, _ = env.step(actions)
            for agent, reward in rewards.items():
                totals[agent] += reward / n_episodes
    return {"return": sum(totals.values()), **{f"return/{a}": v for a, v in totals.items()}}


def show(label: str, returns: dict[str, float]) -> None:
    parts = " | ".join(f"{name} {value:8.2f}" for name, value in returns.items())
    print(f"{label:>8}: {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-steps", type=int, default=40_000, help="env steps to train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default=None, help="write the logs (episodes, train) here")
    args = parser.parse_args()

    trainer = MultiAgentTrainer(
        make_env(),
        DQN,
        n_steps=args.n_steps,
        grouping="shared",
        agent_id=True,
        seed=args.seed,
        algo_params=DQNParams(
            gamma=0.95,
            exploration_start=1.0,
            exploration_end=0.05,
            exploration_fraction=0.3,
            tau=0.01,
            skip_steps=4,
            start_step=2_000,
            hidden_sizes=(64, 64),
        ),
        update_cfg=UpdateConfig(
            learning_rate=1e-3,
            learning_rate_annealing=True,
            max_grad_norm=10.0,
            max_buffer_size=100_002,
            batch_size=128,
            n_epochs=1,
        ),
        train_cfg=TrainConfig(progress_bar=True, log_frequency=30_000, loggers=("jsonl",)),
        run_name=f"simple_spread_dqn_seed{args.seed}",
        run_dir=args.run_dir,
    )
    eval_seed, n_episodes = 10_000, 20

    def greedy() -> dict[str, float]:
        results = trainer.evaluate(make_env(), n_episodes, seed=eval_seed)
        return {name: float(np.mean(values)) for name, values in results.items()}

    show("random", random_returns(n_episodes, eval_seed))
    show("before", greedy())
    start = time.perf_counter()
    summary = trainer.train()
    elapsed = time.perf_counter() - start
    show("after", greedy())
    updates = sum(summary["n_updates"].values())
    print(
        f"trained {summary['env_steps']:,} env steps ({summary['episodes']} episodes, "
        f"{updates:,} updates) in {elapsed:.0f} s"
    )


if __name__ == "__main__":
    main()
