#!/usr/bin/env bash
# The GPU checks of one session, as one script (issue 18): the attention and batch-split tests on CUDA,
# then bench/gpu_throughput.py (ours vs the HF Trainer at its best, MFU, the longest block at batch 8).
#
# Here (the CPU machine), once:     bash bench/gpu_check.sh prepare
#   writes .gpu/ (SmolLM2's tokenizer, sqlite3-doc packed at T = 2,048 … 32,768: ~22 MB) and .whl/
#   (wheels of what the GPU image lacks: pydantic and its parts; see /work/.library/device/KINDS.md).
#   Both are git-ignored locally (.git/info/exclude); name them in `carry`.
# There (the device machine), with carry [".gpu", ".whl"] and timeout_s ~ 540:
#                                   bash bench/gpu_check.sh
#   writes under $OUT: versions.txt, nvidia-smi.txt, tests.txt, bench.txt (its last line is the JSON).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    .venv/bin/python bench/gpu_throughput.py --prepare --data .gpu || exit 1
    for wheel in pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5; do
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$wheel" || exit 1
    done
    du -sh .gpu .whl
    exit 0
fi
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" 2>&1 | tee "$OUT/versions.txt"
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/models/test_attention.py tests/train/test_batch_split.py 2>&1 | tee "$OUT/tests.txt"
timeout 420 python3 bench/train_throughput.py --device cuda --data .gpu 2>&1 | tee "$OUT/bench.txt"
