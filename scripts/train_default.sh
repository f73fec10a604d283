#!/usr/bin/env bash
# Rebuild the default model shipped in src/mmaif/weights/default, exactly as it was made:
# data, training (2 CPU cores, about 75 minutes), export, evaluation and benchmark.
# Needs ../shared/fusion-samples beside the repository and the package installed (make demo).
set -euo pipefail
cd "$(dirname "$0")/.."
MMAIF=${MMAIF:-.venv/bin/mmaif}
PY=${PY:-.venv/bin/python}

# 1. generated exposure / focus stacks (scikit-image photos the demo does not use): 52 pairs
$MMAIF stacks --out data/stacks --variants 2 --seed 0
# 2. 4000 degraded samples from the train split (dev pairs, incl. every llvip_*, excluded)
$MMAIF synth --src ../shared/fusion-samples --src data/stacks \
    --exclude splits/fusion_samples_dev.txt --out data/train_synth --n 4000 --seed 0 \
    --max-side 512 --clean-prob 0.2 --workers 2
# 3. training: tiny preset (patch 2), pixel tokens, MiniLM, regression, 6000 steps of 8 x 192^2
$MMAIF train --config configs/train_default.yaml --progress lines
# 4. export the EMA weights + configs (the model card README.md in the folder is kept)
$PY -c "from mmaif import FusionPipeline as P; \
P.from_pretrained('runs/default').save_pretrained('src/mmaif/weights/default')"
# 5. the model card's numbers
$MMAIF eval --data ../shared/fusion-samples --pairs splits/fusion_samples_dev.txt \
    --repeats 4 --methods teacher,two-stage,mmaif-reg \
    --prompt-modes given,task,empty,mismatched --out eval_dev
$MMAIF bench
