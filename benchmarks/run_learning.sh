#!/usr/bin/env bash
# Runs the learning benchmark of benchmarks/README.md: every algorithm of the family on its
# reference env, one process per seed, pinned to CPUs 0-1, each SBX peer run right after the
# kitae runs it compares with. Appends to benchmarks/results/learning_tuned.jsonl (kitae) and
# benchmarks/results/learning_sbx.jsonl (SBX), then prints the summary table.
#
#   KITAE_PY=python PEERS_PY=/path/to/peers/venv/bin/python bash benchmarks/run_learning.sh
#
# SEEDS (default "0 1 2 3 4") picks the seeds; without PEERS_PY the SBX runs are skipped.
set -euo pipefail
cd "$(dirname "$0")"
KITAE_PY=${KITAE_PY:-python}
PEERS_PY=${PEERS_PY:-}
OUT=results
mkdir -p "$OUT"
SEEDS=${SEEDS:-"0 1 2 3 4"}

kitae() {
  taskset -c 0,1 "$KITAE_PY" learning.py --seeds 1 "$@" >> "$OUT/learning_tuned.jsonl"
}

peer() {
  if [ -n "$PEERS_PY" ]; then
    taskset -c 0,1 "$PEERS_PY" peers/sbx_learning.py --seeds 1 "$@" >> "$OUT/learning_sbx.jsonl"
  fi
}

for seed in $SEEDS; do
  # The reference pairs: each agent of `kitae train` with its defaults on the env (the tuned
  # entry of kitae.zoo.TUNED where the table has the pair).
  # CartPole-v1, threshold 475 at 100k steps.
  for algo in dqn c51 qrdqn iqn ppo; do
    kitae --algo "$algo" --env CartPole-v1 --seed "$seed"
  done
  # Acrobot-v1, threshold -100 at 100k steps.
  for algo in dqn c51 qrdqn iqn ppo; do
    kitae --algo "$algo" --env Acrobot-v1 --seed "$seed"
  done
  # Pendulum-v1, threshold -200 (SAC, TD3) or -250 (DDPG) at 20k steps, -250 (PPO) at 500k.
  for algo in sac td3 ddpg ppo; do
    kitae --algo "$algo" --env Pendulum-v1 --seed "$seed"
  done
  # DQN variants and the peers.
  for algo in plain-dqn double-dueling-dqn rainbow-dqn; do
    kitae --algo "$algo" --env CartPole-v1 --seed "$seed"
  done
  kitae --algo double-dueling-dqn --env Acrobot-v1 --seed "$seed"
  peer --algo dqn --env CartPole-v1 --seed "$seed"
  peer --algo ppo --env CartPole-v1 --seed "$seed"
  peer --algo dqn --env Acrobot-v1 --seed "$seed"
  for algo in sac td3 ddpg; do
    peer --algo "$algo" --env Pendulum-v1 --seed "$seed"
  done
  # PPO on Pendulum-v1 trained on gymnax's Pendulum-v1 (compiled), and SBX's with gSDE.
  kitae --algo ppo-continuous --env Pendulum-v1 --compiled --seed "$seed"
  peer --algo ppo-continuous --env Pendulum-v1 --seed "$seed"
done

learning_files=("$OUT/learning_tuned.jsonl")
[ -f "$OUT/learning_sbx.jsonl" ] && learning_files+=("$OUT/learning_sbx.jsonl")
"$KITAE_PY" summarize.py --learning "${learning_files[@]}"
