#!/usr/bin/env bash
# The test suite on a CUDA machine (the device tool's GPU; CI has none, so tests/test_cuda.py skips there).
# The machine has no registry: carry the pinned wheels its image lacks or holds at another version,
# fetched here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     faiss-cpu==1.15.1 transformers==5.23.0 torch-geometric==2.8.1 gguf==0.19.0
# and run this script from the repository root with .whl carried. Logs go to $OUT (or /tmp).
set -o pipefail
LOG=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, torch_geometric, faiss; print('torch', torch.__version__, 'transformers', transformers.__version__, 'pyg', torch_geometric.__version__, torch.cuda.get_device_name())"
s=$(date +%s); python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee $LOG/cuda.log | tail -15
echo "test_cuda.py: $(( $(date +%s) - s )) s"
s=$(date +%s); timeout ${SUITE_TIMEOUT:-300} python3 -m pytest -q -p no:cacheprovider -m "not slow" tests 2>&1 | tee $LOG/suite.log | tail -25
echo "suite with the GPU visible: $(( $(date +%s) - s )) s"
