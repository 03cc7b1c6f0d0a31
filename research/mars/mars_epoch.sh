#!/usr/bin/env bash
# One-epoch (and one 3-epoch) MARS rows of research/log.md (from "MARS at one epoch" on): seed 0,
# fp32, 1 thread per row, two lanes side by side on a 2-core machine:
#   research/mars/mars_epoch.sh A & research/mars/mars_epoch.sh B & wait
# Needs the MarKG graph (runs/graphs/markg) and the 300-step stage-1 weights of research/mars/mars_ladder.sh
# (STAGE1, default runs/ladder2/v-stage1).
set -u
case "${1:-}" in A|B|A2|B2|C|D|E|F|G|H|I|J|K1|M|M1|M2|N|P0|P1|P2|P3|P4|R0|R1|R2|R3|R4|S0|S1|S2|S3|S4|S5|S6|U0|U1|U2|U3|U4|U5|U6|V0|V1|V2|V3|V4|V5|V6|W0|W1|W2|W3|W4|W5|W6|II|X3|X4|X5|X6|X7|X8|X4S1|X7S1|II2|II3|II4|II5|S1C|II6) ;; *) echo "usage: $0 A|B|A2|B2|C|D|E|F|G|H|I|J|K1|M|M1|M2|N|P0..P4|R0..R4|S0..S6|U0..U6|V0..V6|W0..W6|II|X3|X4|X5|X6|X7|X8|X4S1|X7S1|II2|II3|II4|II5|S1C|II6 (two lanes a round)" >&2; exit 2;; esac
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/epoch1}
STAGE1=${STAGE1:-runs/ladder2/v-stage1}
mkdir -p "$OUT"
T=${THREADS:-1}
run() { name=$1; shift; echo "=== $name $(date -u +%FT%TZ)"; s=$(date +%s); OMP_NUM_THREADS=$T .venv/bin/mrmkg train "$@" --set epochs=${EPOCHS:-1} --set num_threads=$T --set progress=false --set checkpoint_every=${CKPT:-0} -o $OUT/$name $([ -n "${RESUME:-}" ] && echo --resume || echo --overwrite) > $OUT/$name.log 2>&1; echo "rc=$? wall=$(( $(date +%s) - s ))s $(date -u +%FT%TZ)"; }
M=configs/mars-smollm2-cpu.yaml
X="--set task_args.graph=${STANDIN:-runs/graphs/markg-standin} --set task_args.use_images=false"
C="--set task_args.prompt=kg_text_graph --set task_args.N=15 --set task_args.text_triples=15 --set task_args.fact_tokens=true --set model.max_prompt_tokens=256 --set model.pack_sequences=true"
case "$1" in
II) run ii-kgtext-1epoch -c configs/mars-smollm2-cpu-kg-text.yaml ;;
X3) run iii-rgat-standin -c configs/mars-smollm2-cpu-rgat-noalign.yaml $X ;;
X4) run iv-align-standin -c $M $X ;;
X5) run v-stage1-standin -c configs/markg-smollm2-cpu-pretrain.yaml $X --set max_steps=300 --set eval_at_end=false
    run v-align-standin -c $M $X --set init_from=$OUT/v-stage1-standin ;;
X6) run v-stage1-standin-1500 -c configs/markg-smollm2-cpu-pretrain.yaml $X --set max_steps=1500 --set eval_at_end=false
    run v-align-standin-1500 -c $M $X --set init_from=$OUT/v-stage1-standin-1500 ;;
X7) run v-align-standin-1500-noent -c $M $X --set init_from=${S1:-$OUT/v-stage1-standin-1500} --set "init_skip=[mrmkg.entity_head.]" ;;
II3) run iii-kgtextgraph -c configs/mars-smollm2-cpu-rgat-noalign.yaml $X $C ;;
II4) run iv-kgtextgraph-align -c $M $X $C ;;
II5) run v-kgtextgraph-align-stage1 -c $M $X $C --set init_from=${S1:-runs/s10/v-stage1-standin-1500} --set "init_skip=[mrmkg.entity_head.]" ;;
S1C) run v-stage1-kgtextgraph-1500 -c configs/markg-smollm2-cpu-pretrain.yaml $X --set task_args.prompt=kg_text_graph \
     --set task_args.N=15 --set task_args.text_triples=15 --set model.max_prompt_tokens=256 --set model.pack_sequences=true \
     --set max_steps=1500 --set eval_at_end=false ;;
II6) run v-kgtextgraph-align-stage1c -c $M $X $C --set init_from=${S1:-$OUT/v-stage1-kgtextgraph-1500} --set "init_skip=[mrmkg.entity_head.]" ;;
X4S1) run iv-align-standin-seed1 -c $M $X --set seed=1 ;;
X7S1) run v-align-standin-1500-noent-seed1 -c $M $X --set seed=1 --set init_from=${S1:-$OUT/v-stage1-standin-1500} --set "init_skip=[mrmkg.entity_head.]" ;;
X8) run v-stage1-standin -c configs/markg-smollm2-cpu-pretrain.yaml $X --set max_steps=300 --set eval_at_end=false
    run v-align-standin-noent -c $M $X --set init_from=$OUT/v-stage1-standin --set "init_skip=[mrmkg.entity_head.]" ;;
II2) run ii-kgtext-tokens -c configs/mars-smollm2-cpu-kg-text.yaml --set task_args.fact_tokens=true --set model.pack_sequences=true ;;
A) run i-question -c configs/mars-smollm2-cpu-question.yaml
   run v-memory -c $M --set init_from=$STAGE1 --set task_args.memory=true --set task_args.memory_keep_gold=0.4 ;;
B) run v-memory-pointer -c $M --set init_from=$STAGE1 --set task_args.memory=true --set task_args.memory_keep_gold=0.4 --set model.graph_pointer=true
   run v-pointer -c $M --set init_from=$STAGE1 --set model.graph_pointer=true ;;
A2) run iii-rgat -c configs/mars-smollm2-cpu-rgat-noalign.yaml ;;
B2) EPOCHS=3 run i-question-3epochs -c configs/mars-smollm2-cpu-question.yaml ;;
C) run v-mp-copy-node -c $M --set init_from=$STAGE1 --set task_args.memory=true --set task_args.copy_node=true \
     --set model.graph_pointer=true --set model.pointer_features=focus,memory,near,copy,node ;;
D) run v-first-keep04 -c $M --set init_from=$STAGE1 --set task_args.memory=true --set task_args.memory_keep_gold=0.4 \
     --set task_args.copy_node=true --set model.graph_pointer=true --set model.pointer_mode=first \
     --set model.pointer_features=focus,memory,near,copy ;;
E|F) run v-first-keep04-s$([ "$1" = E ] && echo 10 || echo 30)-aug -c $M --set init_from=$STAGE1 --set task_args.memory=true \
     --set task_args.memory_keep_gold=0.4 --set task_args.copy_node=true --set task_args.copy_augment=0.05 \
     --set model.graph_pointer=true --set model.pointer_mode=first --set model.pointer_features=focus,memory,near,copy \
     --set model.pointer_scale=$([ "$1" = E ] && echo 10 || echo 30) ;;
G|H|I|J) S=$(case $1 in G|J) echo 30;; H) echo 10;; I) echo 100;; esac); SEED=$([ "$1" = J ] && echo 1 || echo 0)
   run v-first-keep04-s$S-aug-rel$([ $SEED = 0 ] || echo -seed$SEED) -c $M --set seed=$SEED --set init_from=$STAGE1 --set task_args.memory=true \
     --set task_args.memory_keep_gold=0.4 --set task_args.copy_node=true --set task_args.copy_augment=0.05 \
     --set model.graph_pointer=true --set model.pointer_mode=first --set model.pointer_features=focus,memory,near,copy,relation \
     --set model.pointer_scale=$S ;;
K1|M|M1|M2|N) P="-c configs/mars-smollm2-cpu-pointer.yaml --set model.pack_sequences=false --set optim.fused=false"
   # row M's settings as measured in session 5 (padded batches, foreach AdamW); K rows: copy_augment 0.05
   case $1 in
   K1) run k-seed1 $P --set init_from=$STAGE1 --set task_args.copy_augment=0.05 --set seed=1 ;;
   M) run k-aug10 $P --set init_from=$STAGE1 ;;
   M1) run k-aug10-seed1 $P --set init_from=$STAGE1 --set seed=1 ;;
   M2) run k-aug10-seed2 $P --set init_from=$STAGE1 --set seed=2 ;;
   N) run k-aug10-freq $P --set init_from=$STAGE1 --set model.pointer_features=focus,memory,near,copy,relation,frequency ;;
   esac ;;
P0|P1|P2|P3|P4) SEED=${1#P}   # session 6: configs/mars-smollm2-cpu-pointer.yaml as it is now (packed, fused AdamW)
   run p-seed$SEED -c configs/mars-smollm2-cpu-pointer.yaml --set init_from=$STAGE1 --set seed=$SEED \
     --set task_args.copy_keep_gold=1.0 --set model.pointer_prior=true ;;   # (the config before row S)
R0|R1|R2|R3|R4) SEED=${1#R}   # P + copy-form training examples keep their answer's memory edge half the time
   run r-copykeep05-seed$SEED -c configs/mars-smollm2-cpu-pointer.yaml --set init_from=$STAGE1 --set seed=$SEED \
     --set task_args.copy_keep_gold=0.5 --set model.pointer_prior=true ;;
S0|S1|S2|S3|S4|S5|S6) SEED=${1#S}   # R without the pointer's per-entity prior = the config now
   run s-noprior-seed$SEED -c configs/mars-smollm2-cpu-pointer.yaml --set init_from=$STAGE1 --set seed=$SEED \
     --set task_args.copy_keep_gold=0.5 --set model.pointer_prior=false ;;
U0|U1|U2|U3|U4|U5|U6) SEED=${1#U}   # session 8: S with the pointer's fixed relation odds instead of learned relation weights
   run u-odds-seed$SEED -c configs/mars-smollm2-cpu-pointer.yaml --set init_from=$STAGE1 --set seed=$SEED \
     --set task_args.copy_keep_gold=0.5 --set model.pointer_prior=false \
     --set model.pointer_features=focus,memory,near,copy,relation_odds ;;
V0|V1|V2|V3|V4|V5|V6) SEED=${1#V}   # U, training examples keep their answer's memory edge with p 0.4 (dev's coverage)
   run v-odds-keep04-seed$SEED -c configs/mars-smollm2-cpu-pointer.yaml --set init_from=$STAGE1 --set seed=$SEED \
     --set task_args.copy_keep_gold=0.5 --set model.pointer_prior=false \
     --set model.pointer_features=focus,memory,near,copy,relation_odds --set task_args.memory_keep_gold=0.4 ;;
W0|W1|W2|W3|W4|W5|W6) SEED=${1#W}   # S + the relation odds as a prior: weight 1 from the first step, learned relation weights kept
   run w-odds-init1-seed$SEED -c configs/mars-smollm2-cpu-pointer.yaml --set init_from=$STAGE1 --set seed=$SEED \
     --set task_args.copy_keep_gold=0.5 --set model.pointer_prior=false \
     --set model.pointer_features=focus,memory,near,copy,relation,relation_odds --set model.relation_odds_init=1.0 ;;
esac
# second round (lane A after its first two rows, lane B likewise):
#   research/mars/mars_epoch.sh A2 & research/mars/mars_epoch.sh B2 & wait
# third round (session 4: pointer features, nodes-first mode):
#   research/mars/mars_epoch.sh C & research/mars/mars_epoch.sh D & wait
# fourth round (pointer_scale 10 / 30, copy augmentation):
#   research/mars/mars_epoch.sh E & research/mars/mars_epoch.sh F & wait
# fifth round (+ the pointer's relation feature):
#   research/mars/mars_epoch.sh G & research/mars/mars_epoch.sh H & wait
# sixth round (pointer_scale 100; G with seed 1):
#   research/mars/mars_epoch.sh I & research/mars/mars_epoch.sh J & wait
# session 5 (configs/mars-smollm2-cpu-pointer.yaml = row M): K with seed 1 beside M, then M seed 1
# beside N (+ the 'frequency' feature), then M seed 2 alone on both cores:
#   research/mars/mars_epoch.sh K1 & research/mars/mars_epoch.sh M & wait
#   research/mars/mars_epoch.sh M1 & research/mars/mars_epoch.sh N & wait
#   THREADS=2 research/mars/mars_epoch.sh M2
# session 6 (packed batches + fused AdamW; rows P, R, S), as run:
#   THREADS=2 research/mars/mars_epoch.sh P0
#   research/mars/mars_epoch.sh R0 & research/mars/mars_epoch.sh R1 & wait     (task_args.copy_keep_gold=0.5)
#   research/mars/mars_epoch.sh R2 & research/mars/mars_epoch.sh S0 & wait     (S0: R0 + model.pointer_prior=false)
#   research/mars/mars_epoch.sh S1 & research/mars/mars_epoch.sh S2 & wait
# session 7: research/mars/mars_epoch.sh S3 & research/mars/mars_epoch.sh S4 & wait; then S5 & S6 likewise
# session 8 (relation odds: U = as a feature, V = U with memory_keep_gold 0.4, W = started at weight 1):
#   research/mars/mars_epoch.sh U0 & research/mars/mars_epoch.sh U3 & wait
#   research/mars/mars_epoch.sh V0 & research/mars/mars_epoch.sh V3 & wait
#   research/mars/mars_epoch.sh W0 & research/mars/mars_epoch.sh W3 & wait
# session 9 (rung (ii) alone; then (iii) and (iv) on the graph with description stand-ins for images,
# built by: mrmkg kg build ../shared/data/markg --format markg --image-standin description -o runs/graphs/markg-standin):
#   OUT=runs/s9 THREADS=2 research/mars/mars_epoch.sh II
#   OUT=runs/s9 research/mars/mars_epoch.sh X3 & OUT=runs/s9 research/mars/mars_epoch.sh X4 & wait
#   OUT=runs/s9 THREADS=2 research/mars/mars_epoch.sh X5     (stage 1 for 300 steps on the stand-in graph, then (iv))
# session 10 (X6: 1,500 stage-1 steps = 0.18 epoch of MarKG on the stand-in graph, 5x X5's, then (iv); II2: rung (ii)
# with the facts' entities written with their entity tokens, padding-free batches):
#   OUT=runs/s10 research/mars/mars_epoch.sh X6 & OUT=runs/s10 research/mars/mars_epoch.sh II2 & wait
# session 11 (stage 1's graph encoder and adapters into stage 2, its entity table left out: init_skip):
#   OUT=runs/s11 S1=runs/s10/v-stage1-standin-1500 research/mars/mars_epoch.sh X7 & OUT=runs/s11 research/mars/mars_epoch.sh X8 & wait
#   OUT=runs/s11 research/mars/mars_epoch.sh X4S1 & OUT=runs/s11 S1=runs/s10/v-stage1-standin-1500 research/mars/mars_epoch.sh X7S1 & wait   (seed 1)
# session 12: the ladder read cumulatively ("+" in issue 4): II2's 15 facts and the RGAT subgraph of the same 15
# triples on the stand-in graph (II3), + the alignment loss (II4), + stage 1's encoder and adapters (II5); each alone
# on both cores, checkpoints every 250 steps so a cut-off run resumes (RESUME=1: --resume instead of --overwrite):
#   OUT=runs/s12 THREADS=2 CKPT=250 research/mars/mars_epoch.sh II3
#   OUT=runs/s12 THREADS=2 CKPT=250 research/mars/mars_epoch.sh II4     (RESUME=1 to continue it)
#   OUT=runs/s12 THREADS=2 CKPT=250 research/mars/mars_epoch.sh II5
# session 14: cumulative (v) with a stage 1 that sees the cumulative input (the facts and the subgraph, S1C: 1,500
# steps, as X6's), then II5 from it (II6); each alone on both cores:
#   OUT=runs/s14 THREADS=2 CKPT=125 research/mars/mars_epoch.sh S1C      (RESUME=1 to continue it)
#   OUT=runs/s14 THREADS=2 CKPT=125 research/mars/mars_epoch.sh II6
