#!/usr/bin/env bash
# The equal-budget MARS ladder of docs/results.md (its history: research/log.md): every row trains STEPS
# optimizer steps x 8, seed 0, fp32, 1 thread, then evaluates on dev. Two lanes run side by side on a 2-core machine:
#   research/mars/mars_ladder.sh A & research/mars/mars_ladder.sh B & wait
# Needs the MarKG graph: .venv/bin/mrmkg kg build ../shared/data/markg --format markg -o runs/graphs/markg
set -u
case "${1:-}" in A|B) ;; *) echo "usage: $0 A|B (the two lanes)" >&2; exit 2;; esac
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/ladder2}
mkdir -p "$OUT"
STEPS=${STEPS:-300}
run() { name=$1; shift; echo "=== $name $(date -u +%FT%TZ)"; s=$(date +%s); OMP_NUM_THREADS=1 .venv/bin/mrmkg train "$@" --set max_steps=$STEPS --set epochs=1 --set num_threads=1 --set progress=false --set checkpoint_every=0 -o $OUT/$name --overwrite > $OUT/$name.log 2>&1; echo "rc=$? wall=$(( $(date +%s) - s ))s $(date -u +%FT%TZ)"; }
R=configs/mars-smollm2-cpu-rgat-noalign.yaml
if [ "$1" = A ]; then
run i-question -c configs/mars-smollm2-cpu-question.yaml
run ii-kgtext -c configs/mars-smollm2-cpu-kg-text.yaml
run iv-align -c configs/mars-smollm2-cpu.yaml
run v-stage1 -c configs/markg-smollm2-cpu-pretrain.yaml --set eval_at_end=false
run v-pretrain -c configs/mars-smollm2-cpu.yaml --set init_from=$OUT/v-stage1
run layers3 -c $R --set model.gnn_layers=3
else
run iii-rgat -c $R
run enc-gcn -c $R --set model.graph_encoder=gcn
run enc-gat -c $R --set model.graph_encoder=gat
run enc-none -c $R --set model.graph_encoder=none
run adapter-text -c $R --set model.adapter_length=text
run N5 -c $R --set task_args.N=5
run N20 -c $R --set task_args.N=20
run layers1 -c $R --set model.gnn_layers=1
fi
