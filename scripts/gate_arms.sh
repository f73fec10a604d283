#!/usr/bin/env bash
# The gate arms: the shipped default continued as it is, + fix gates, + fix gates and the
# teacher gate; equal budget (configs/exp/gates/*.yaml: same 6000 new samples, seed, lr and
# steps), each warm-started from src/mmaif/weights/default. Then, per arm, the dev-split eval
# (given and task prompts, 4 degradation draws per pair) into eval_arms/ARM/.
#   scripts/gate_arms.sh                    # every arm (about 10-15 min of training each)
#   ARMS="fixes" scripts/gate_arms.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MMAIF=${MMAIF:-.venv/bin/mmaif}
ARMS=${ARMS:-"continue fixes fixes_teacher fixes_tone"}
[ -d data/stacks ] || $MMAIF stacks --out data/stacks --variants 2 --seed 0
# resumable: a finished folder is left as it is
$MMAIF synth --src ../shared/fusion-samples --src ../shared/train-corpus --src data/stacks \
    --exclude splits/fusion_samples_dev.txt --out data/synth_s3 --n 6000 --seed 3 \
    --max-side 512 --clean-prob 0.2 --workers 2 --progress none
for arm in $ARMS; do
    $MMAIF train --config "configs/exp/gates/$arm.yaml" --progress lines
done
for arm in $ARMS; do
    $MMAIF eval --model "runs/arm_$arm" --data ../shared/fusion-samples \
        --pairs splits/fusion_samples_dev.txt --repeats 4 \
        --methods teacher,two-stage,mmaif-reg --prompt-modes given,task --out "eval_arms/$arm"
done
