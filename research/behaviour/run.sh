#!/usr/bin/env bash
# Behaviour cases of issue 23: the same commands before and after the redesign must print and write
# the same metrics to every digit. Usage (from the repository root):
#
#   SRC=/path/to/src OUT=/path/to/outdir bash research/behaviour/run.sh [case ...]
#   python research/behaviour/compare.py BEFORE_OUT AFTER_OUT      (or research/behaviour/before)
#
# Cases (default: all, in this order): demo_quick mars_pointer mars_cumulative_iv scienceqa_tiny
# Each case is one shell function below; the mrmkg command lines of a case sit in its marked block, so a
# renamed command or option is changed there and nowhere else. Each case writes into $OUT/<case>/:
#   <step>.log       full stdout+stderr of each command     steps.tsv  step, rc, wall seconds, command line
#   the run/eval folders the commands write (metrics.json, predictions.jsonl, table.md, ...)
#
# Environment (defaults in brackets):
#   SRC      the mrmkg source folder to run (put first on PYTHONPATH)              [required]
#   OUT      output folder; each case's folder is replaced                        [required]
#   PY       python                                                               [/work/main/.venv/bin/python]
#   CONFIGS  the repository's configs/ folder                                     [$SRC/../configs]
#   SQA_FIXTURE_GEN  the ScienceQA test-fixture generator                         [$SRC/../tests/fixtures/scienceqa/make_fixture.py]
#   DATA     shared data (markg/, mars/)                                          [/work/shared/data]
#   GRAPHS   built graphs: markg/ and markg-standin/ (built here when missing)    [/work/runs/graphs]
#   LLM_CACHE  a cache_dir("llm") folder holding the converted SmolLM2 (reused, so the 1-2 min
#              GGUF->HF conversion is not repeated; the conversion is deterministic)  [~/.cache/mrmkg/llm]
#
# Determinism: one torch thread everywhere (OMP_NUM_THREADS=1 and, for training, --set num_threads=1: the
# thread count changes float reduction order, hence the weights), seed 0 (every config's default), and a
# fresh MRMKG_CACHE per case ($OUT/<case>/cache; only its llm/ is linked to LLM_CACHE), so a case never
# reads embeddings, worlds or indexes an earlier run left behind.
set -uo pipefail

: "${SRC:?set SRC to the mrmkg source folder (the one holding mrmkg/)}"
: "${OUT:?set OUT to an output folder}"
SRC=$(cd "$SRC" && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PY:-/work/main/.venv/bin/python}
CONFIGS=${CONFIGS:-$SRC/../configs}
SQA_FIXTURE_GEN=${SQA_FIXTURE_GEN:-$SRC/../tests/fixtures/scienceqa/make_fixture.py}
DATA=${DATA:-/work/shared/data}
GRAPHS=${GRAPHS:-/work/runs/graphs}
LLM_CACHE=${LLM_CACHE:-$HOME/.cache/mrmkg/llm}

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export COLUMNS=200 TERM=dumb   # rich prints tables this wide, unwrapped, without colour codes

CASE_DIR=""   # set by each case: its output folder

mrmkg() { PYTHONPATH="$SRC" "$PY" -m mrmkg "$@"; }

# step NAME CMD...: run CMD, its stdout+stderr into $CASE_DIR/NAME.log, one row into steps.tsv.
step() {
    local name=$1; shift
    local t0 t1 rc
    echo "  [$name] $*"
    t0=$(date +%s.%N)
    "$@" > "$CASE_DIR/$name.log" 2>&1; rc=$?
    t1=$(date +%s.%N)
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" "$*" >> "$CASE_DIR/steps.tsv"
    if [ "$rc" != 0 ]; then echo "  [$name] FAILED rc=$rc; last lines of $CASE_DIR/$name.log:"; tail -n 15 "$CASE_DIR/$name.log"; fi
    return "$rc"
}

# A fresh case folder with its own cache (the converted LLM linked in).
begin_case() {
    CASE_DIR=$OUT/$1
    rm -rf "$CASE_DIR"; mkdir -p "$CASE_DIR/cache"
    [ -d "$LLM_CACHE" ] && ln -s "$LLM_CACHE" "$CASE_DIR/cache/llm"
    export MRMKG_CACHE=$CASE_DIR/cache
    printf 'step\trc\twall_s\tcommand\n' > "$CASE_DIR/steps.tsv"
}

# The MarKG graphs the MARS cases read: built once (not per run) into $GRAPHS, never rebuilt here.
ensure_graphs() {
    local g
    for g in markg markg-standin; do
        [ -d "$GRAPHS/$g" ] && continue
        mkdir -p "$GRAPHS"
        echo "  building $GRAPHS/$g (once; minutes)"
        local extra=(); [ $g = markg-standin ] && extra=(--image-standin description)
        MRMKG_CACHE=$GRAPHS/cache mrmkg kg build "$DATA/markg" --format markg "${extra[@]}" -o "$GRAPHS/$g" \
            -q > "$GRAPHS/$g.build.log" 2>&1 || { echo "graph build failed: $GRAPHS/$g.build.log"; return 1; }
    done
}

# ------------------------------------------------------------------------------------------- cases
# demo_quick: `mrmkg demo --quick` (a small world, 3 steps per rung, 2 stage-1 steps) from an empty cache.
# Writes run/metrics.json, run/table.md, run/predictions/<rung>.jsonl; prints the ladder table and samples.
case_demo_quick() {
    begin_case demo_quick
    # ---- commands (adapt here) ----
    # the whole ladder (since session 17 the demo runs two rungs by default)
    step demo mrmkg demo --quick -o "$CASE_DIR/run" --set progress=false --set "rungs=[no_kg,kg_text,mmkg,align,pretrain]"
    # -------------------------------
}

# MARS, 40 steps of configs/mars-smollm2-cpu-pointer.yaml (the best configuration) from scratch, evaluated
# at the end of training on the first 200 dev examples (max_eval_examples) and again by `mrmkg eval` on a
# split file holding exactly those 200 lines: the two must agree too.
MARS_SHORT=(--set checkpoint_every=0 --set task_args.max_eval_examples=200 --set num_threads=1
            --set progress=false --set log_every=5)
case_mars_pointer() {
    begin_case mars_pointer
    ensure_graphs || return 1
    head -n 200 "$DATA/mars/dev.json" > "$CASE_DIR/dev200.json"
    # ---- commands (adapt here) ----
    step train mrmkg train -c "$CONFIGS/mars-smollm2-cpu-pointer.yaml" \
        --set task_args.graph="$GRAPHS/markg" --set task_args.data_dir="$DATA/mars" "${MARS_SHORT[@]}" --set max_steps=40 \
        -o "$CASE_DIR/train" --overwrite || return 1
    step eval mrmkg eval "$CASE_DIR/train" --split "$CASE_DIR/dev200.json" -o "$CASE_DIR/eval" -q
    # -------------------------------
}

# MARS rung (iv) read cumulatively (docs/results.md "The ladder at one epoch", scripts/mars_epoch.sh arm II4):
# configs/mars-smollm2-cpu.yaml (RGAT + alignment loss) + 15 facts as text with entity tokens + the RGAT
# subgraph of the same triples, on the description stand-in graph; MARS_CUM_STEPS steps, dev subset as above.
MARS_CUM_STEPS=${MARS_CUM_STEPS:-20}
case_mars_cumulative_iv() {
    begin_case mars_cumulative_iv
    ensure_graphs || return 1
    head -n 200 "$DATA/mars/dev.json" > "$CASE_DIR/dev200.json"
    # ---- commands (adapt here) ----
    step train mrmkg train -c "$CONFIGS/mars-smollm2-cpu.yaml" \
        --set task_args.graph="$GRAPHS/markg-standin" --set task_args.use_images=false \
        --set task_args.prompt=kg_text_graph --set task_args.N=15 --set task_args.text_triples=15 \
        --set task_args.fact_tokens=true --set model.max_prompt_tokens=256 --set model.pack_sequences=true \
        --set task_args.data_dir="$DATA/mars" "${MARS_SHORT[@]}" --set max_steps="$MARS_CUM_STEPS" \
        -o "$CASE_DIR/train" --overwrite || return 1
    step eval mrmkg eval "$CASE_DIR/train" --split "$CASE_DIR/dev200.json" -o "$CASE_DIR/eval" -q
    # -------------------------------
}

# ScienceQA on the tests' 30-problem fixture (12 train / 6 val / 12 test) with a 12-fact science graph:
#  (a) the suite's tiny random LLaMA (made by make_sqa_inputs.py, seed 0), rationale stage QCM-LE: 6 steps,
#      `mrmkg scienceqa eval` on test (ROUGE-L, exact match);
#  (b) SmolLM2-135M, direct answer QCM-A: 4 steps, `mrmkg scienceqa eval` on test (the official columns).
SQA_MODEL=(--set model.gnn_hidden=16 --set model.gnn_heads=2 --set model.gnn_relation_dim=8 --set model.gnn_num_blocks=4
           --set model.dropout=0.0 --set model.dtype=fp32 --set model.align_weight=0.5 --set precision=fp32
           --set seed=0 --set epochs=1 --set batch_size=2 --set eval_batch_size=4 --set log_every=1
           --set progress=false --set num_threads=1 --set checkpoint_every=0)
case_scienceqa_tiny() {
    begin_case scienceqa_tiny
    local in=$CASE_DIR/inputs
    step inputs env PYTHONPATH= "$PY" "$HERE/make_sqa_inputs.py" "$in" "$SQA_FIXTURE_GEN" || return 1
    # ---- commands (adapt here) ----
    step kg_build mrmkg kg build "$in/science-kg" --format tsv --vision-encoder none -o "$in/science-graph" \
        -q || return 1
    step train_tiny mrmkg train --set task=scienceqa --set task_args.root="$in/scienceqa" \
        --set task_args.kg="$in/science-graph" --set 'task_args.prompt={format: QCM-LE}' \
        --set 'task_args.retrieval={n: 3, N: 4}' --set task_args.max_new_tokens=8 \
        --set model.llm="$in/tiny-llama" --set model.max_prompt_tokens=96 --set model.max_target_tokens=24 \
        "${SQA_MODEL[@]}" --set max_steps=6 -o "$CASE_DIR/tiny" --overwrite || return 1
    step eval_tiny mrmkg scienceqa eval "$CASE_DIR/tiny" --split test -o "$CASE_DIR/tiny-eval-test" \
        --batch-size 4 -q
    step train_smol mrmkg train --set task=scienceqa --set task_args.root="$in/scienceqa" \
        --set task_args.kg="$in/science-graph" --set 'task_args.prompt={format: QCM-A}' \
        --set 'task_args.retrieval={n: 3, N: 4}' --set task_args.max_new_tokens=8 --set task_args.limit=4 \
        --set model.llm=smollm2-135m --set model.max_prompt_tokens=160 --set model.max_target_tokens=12 \
        "${SQA_MODEL[@]}" --set model.gnn_hidden=32 --set max_steps=4 -o "$CASE_DIR/smol" --overwrite || return 1
    step eval_smol mrmkg scienceqa eval "$CASE_DIR/smol" --split test --limit 12 -o "$CASE_DIR/smol-eval-test" \
        --batch-size 4 -q
    # -------------------------------
}

# --------------------------------------------------------------------------------------------- main
ALL=(demo_quick mars_pointer mars_cumulative_iv scienceqa_tiny)
CASES=("$@"); [ ${#CASES[@]} -eq 0 ] && CASES=("${ALL[@]}")
{
    echo "src: $SRC"
    echo "git: $(git -C "$SRC" rev-parse HEAD 2>/dev/null) $(git -C "$SRC" status --porcelain 2>/dev/null | wc -l) changed files"
    echo "python: $("$PY" -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)')"
    echo "host: $(uname -n) $(nproc) cpus; started $(date -u +%FT%TZ)"
} > "$OUT/env.txt"
failed=0
for c in "${CASES[@]}"; do
    declare -F "case_$c" > /dev/null || { echo "unknown case $c (known: ${ALL[*]})" >&2; exit 2; }
    echo "== $c $(date -u +%FT%TZ)"
    s=$(date +%s)
    "case_$c"; rc=$?
    echo "== $c rc=$rc wall=$(( $(date +%s) - s )) s"
    echo "$c rc=$rc wall_s=$(( $(date +%s) - s )) $(date -u +%FT%TZ)" >> "$OUT/cases.txt"
    [ $rc = 0 ] || failed=1
done
exit $failed
