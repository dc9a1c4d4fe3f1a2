#!/usr/bin/env bash
# Runs the learning benchmark of benchmarks/README.md: every algorithm of the family on its
# reference env, one process per seed, pinned to CPUs 0-1, each SBX peer run right after the
# kitae runs it compares with. Appends to benchmarks/results/learning.jsonl (kitae) and
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
  taskset -c 0,1 "$KITAE_PY" learning.py --seeds 1 "$@" >> "$OUT/learning.jsonl"
}

peer() {
  if [ -n "$PEERS_PY" ]; then
    taskset -c 0,1 "$PEERS_PY" peers/sbx_learning.py --seeds 1 "$@" >> "$OUT/learning_sbx.jsonl"
  fi
}

for seed in $SEEDS; do
  # CartPole-v1, 100k steps, threshold 475.
  for algo in dqn double-dueling-dqn rainbow-dqn c51 qrdqn iqn ppo; do
    kitae --algo "$algo" --env CartPole-v1 --seed "$seed"
  done
  peer --algo dqn --env CartPole-v1 --seed "$seed"
  peer --algo ppo --env CartPole-v1 --seed "$seed"
  # Acrobot-v1, 100k steps, threshold -100.
  kitae --algo double-dueling-dqn --env Acrobot-v1 --seed "$seed"
  kitae --algo dqn --env Acrobot-v1 --seed "$seed"
  peer --algo dqn --env Acrobot-v1 --seed "$seed"
  # Pendulum-v1, 20k steps, threshold -200 (SAC, TD3) or -250 (DDPG).
  for algo in sac td3 ddpg; do
    kitae --algo "$algo" --env Pendulum-v1 --seed "$seed"
    peer --algo "$algo" --env Pendulum-v1 --seed "$seed"
  done
  # Pendulum-v1, 500k steps, threshold -250; kitae trains on gymnax's Pendulum-v1, compiled.
  kitae --algo ppo-continuous --env Pendulum-v1 --compiled --seed "$seed"
  peer --algo ppo-continuous --env Pendulum-v1 --seed "$seed"
done

learning_files=("$OUT/learning.jsonl")
[ -f "$OUT/learning_sbx.jsonl" ] && learning_files+=("$OUT/learning_sbx.jsonl")
"$KITAE_PY" summarize.py --learning "${learning_files[@]}"
