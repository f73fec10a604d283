#!/usr/bin/env bash
# The degradation detector shipped in src/mmaif/weights/default/detector, exactly as it was
# made: the first 3000 samples of the seed-3 synth folder of scripts/train_default.sh (stage
# 4; dev pairs excluded), features at long side <= 512, a 2 x 128 MLP, 150 epochs, a seeded
# tenth held out (runs/detector/metrics.json), then its scores on the dev split.
set -euo pipefail
cd "$(dirname "$0")/.."
MMAIF=${MMAIF:-.venv/bin/mmaif}
[ -f data/synth_s3/manifest.jsonl ] || { echo "make data/synth_s3 first (scripts/train_default.sh, stage 4)"; exit 2; }
mkdir -p data/det_s3
for k in a b gt; do ln -sfn ../synth_s3/$k data/det_s3/$k; done
head -3000 data/synth_s3/manifest.jsonl > data/det_s3/manifest.jsonl
$MMAIF train-detector --data data/det_s3 --out runs/detector --workers 1 --progress lines
cp -r runs/detector/detector src/mmaif/weights/default/detector
# dev split: the detector's per-type scores and the @auto rows (the card's detector section)
$MMAIF eval --data ../shared/fusion-samples --pairs splits/fusion_samples_dev.txt --repeats 4 \
    --methods mmaif-reg --prompt-modes auto --out eval_auto/default
