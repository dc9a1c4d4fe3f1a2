#!/usr/bin/env bash
# Runs every benchmark of benchmarks/README.md, one process at a time, peers interleaved with
# kitae so that both see the same machine state. Results go to benchmarks/results/*.jsonl.
#
#   KITAE_PY=python PEERS_PY=/path/to/peers/venv/bin/python REJAX_PY=/path/to/rejax/venv/bin/python \
#     bash benchmarks/run_all.sh
set -euo pipefail
cd "$(dirname "$0")"
KITAE_PY=${KITAE_PY:-python}
PEERS_PY=${PEERS_PY:-}
REJAX_PY=${REJAX_PY:-}
OUT=results
mkdir -p "$OUT"
SEEDS=${SEEDS:-"0 1 2 3 4"}

for seed in $SEEDS; do
  "$KITAE_PY" dqn_cartpole.py --seed "$seed" --config rl-zoo >> "$OUT/dqn_cartpole.jsonl"
  [ -n "$PEERS_PY" ] && "$PEERS_PY" peers/sbx_cartpole.py --algo dqn --seed "$seed" >> "$OUT/sbx_cartpole.jsonl"
  "$KITAE_PY" dqn_cartpole.py --seed "$seed" --config default --eval-every 5000 >> "$OUT/dqn_cartpole.jsonl"
done
"$KITAE_PY" dqn_floor.py >> "$OUT/dqn_floor.jsonl"
for seed in $SEEDS; do
  "$KITAE_PY" ppo_cartpole.py --seed "$seed" --eval-every 10000 >> "$OUT/ppo_cartpole.jsonl"
  [ -n "$PEERS_PY" ] && "$PEERS_PY" peers/sbx_cartpole.py --algo ppo --seed "$seed" >> "$OUT/sbx_cartpole.jsonl"
done

# Compiled path (gymnax).
"$KITAE_PY" compiled.py --algo ppo --config rejax --seeds 1 >> "$OUT/compiled.jsonl"
[ -n "$REJAX_PY" ] && "$REJAX_PY" peers/rejax_cartpole.py --algo ppo --seeds 1 >> "$OUT/rejax_cartpole.jsonl"
"$KITAE_PY" compiled.py --algo ppo --config rejax --seeds 5 >> "$OUT/compiled.jsonl"
[ -n "$REJAX_PY" ] && "$REJAX_PY" peers/rejax_cartpole.py --algo ppo --seeds 5 >> "$OUT/rejax_cartpole.jsonl"
"$KITAE_PY" compiled.py --algo ppo --config purejaxrl --seeds 1 >> "$OUT/compiled.jsonl"
"$KITAE_PY" compiled.py --algo ppo --config purejaxrl --seeds 5 >> "$OUT/compiled.jsonl"
"$KITAE_PY" compiled.py --algo ppo --config purejaxrl --seeds 8 >> "$OUT/compiled.jsonl"
for buffer in 10000 100000; do
  "$KITAE_PY" compiled.py --algo dqn --config purejaxrl --seeds 1 --buffer "$buffer" >> "$OUT/compiled.jsonl"
done
"$KITAE_PY" compiled.py --algo dqn --config purejaxrl --seeds 5 >> "$OUT/compiled.jsonl"
for buffer in 10000 50000; do
  [ -n "$REJAX_PY" ] && "$REJAX_PY" peers/rejax_cartpole.py --algo dqn --seeds 1 --buffer "$buffer" >> "$OUT/rejax_cartpole.jsonl"
done
"$KITAE_PY" summarize.py
