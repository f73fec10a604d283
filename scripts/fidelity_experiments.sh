#!/usr/bin/env bash
# Equal-budget experiments: what lets the model learn its teacher's fusion (docs/experiments.md, "What the
# model sees"). Same data (train split + ../shared/train-corpus + rendered stacks), seed and
# steps for every arm; then one table on the dev split (benchmarks/fidelity_arms.py).
#   scripts/fidelity_experiments.sh                 # every arm (about 10 min each on 2 cores)
#   ARMS="baseline maps" scripts/fidelity_experiments.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MMAIF=${MMAIF:-.venv/bin/mmaif}
PY=${PY:-.venv/bin/python}
ARMS=${ARMS:-"baseline maps stem maps_stem maps_distill maps_rope"}
[ -d data/stacks ] || $MMAIF stacks --out data/stacks --variants 2 --seed 0
# resumable: a finished folder is left as it is
$MMAIF synth --src ../shared/fusion-samples --src ../shared/train-corpus --src data/stacks \
    --exclude splits/fusion_samples_dev.txt --out data/exp_synth --n 3000 --seed 0 \
    --max-side 512 --clean-prob 0.2 --workers 2 --progress none
runs=()
for arm in $ARMS; do
    $MMAIF train --config "configs/exp/fidelity/$arm.yaml" --progress lines
    runs+=("runs/exp/$arm")
done
$PY benchmarks/fidelity_arms.py --default "${runs[@]}" --json runs/exp/arms.json
