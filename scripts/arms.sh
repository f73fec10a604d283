#!/usr/bin/env bash
# Equal-budget arms of one group (configs/exp/GROUP/ARM.yaml: same data, seed, lr and steps,
# each warm-started from src/mmaif/weights/default), then per arm the dev-split eval (4
# degradation draws per pair) into eval_arms/ARM/; `benchmarks/gate_arms_table.py ARMS` tables them.
#   scripts/arms.sh                                  # the gate arms (10-15 min of training each)
#   ARMS="fixes" scripts/arms.sh
#   GROUP=long ARMS="evidence_long continue_long" MODES=given,task,empty scripts/arms.sh  # 2000 steps each
set -euo pipefail
cd "$(dirname "$0")/.."
MMAIF=${MMAIF:-.venv/bin/mmaif}
GROUP=${GROUP:-gates}
ARMS=${ARMS:-"continue fixes fixes_teacher fixes_tone"}
MODES=${MODES:-given,task}
[ -d data/stacks ] || $MMAIF stacks --out data/stacks --variants 2 --seed 0
# resumable: a finished folder is left as it is
$MMAIF synth --src ../shared/fusion-samples --src ../shared/train-corpus --src data/stacks \
    --exclude splits/fusion_samples_dev.txt --out data/synth_s3 --n 6000 --seed 3 \
    --max-side 512 --clean-prob 0.2 --workers 2 --progress none
for arm in $ARMS; do
    $MMAIF train --config "configs/exp/$GROUP/$arm.yaml" --progress lines
done
for arm in $ARMS; do
    $MMAIF eval --model "runs/arm_$arm" --data ../shared/fusion-samples \
        --pairs splits/fusion_samples_dev.txt --repeats 4 \
        --methods teacher,two-stage,mmaif-reg --prompt-modes "$MODES" --out "eval_arms/$arm"
done
