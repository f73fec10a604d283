#!/usr/bin/env bash
# Rebuild the default model shipped in src/mmaif/weights/default, exactly as it was made:
# eight training stages on 2 CPU cores (about 65 + 17 + 111 + 97 + 25 + 29 + 31 + 76 minutes)
# and two weight averages (stages 8 and 10), then export, evaluation and benchmark. Needs
# ../shared/fusion-samples and ../shared/train-corpus beside
# the repository and the package installed (make demo). Dev pairs (splits/fusion_samples_dev.txt,
# every llvip_* included) are excluded from every synth step.
set -euo pipefail
cd "$(dirname "$0")/.."
MMAIF=${MMAIF:-.venv/bin/mmaif}
PY=${PY:-.venv/bin/python}
SYNTH=(--exclude splits/fusion_samples_dev.txt --max-side 512 --clean-prob 0.2 --workers 2)

# generated exposure / focus stacks (scikit-image photos the demo does not use): 52 pairs
$MMAIF stacks --out data/stacks --variants 2 --seed 0

# stage 1: tiny preset (patch 2), pixel tokens, MiniLM, regression, 6000 steps of 8 x 192^2
# from scratch on 4000 samples of the train split + stacks
$MMAIF synth --src ../shared/fusion-samples --src data/stacks --out data/train_synth \
    --n 4000 --seed 0 "${SYNTH[@]}"
$MMAIF train --config configs/recipes/default/1_scratch.yaml --progress lines

# stage 2: + evidence maps and blend-weight distillation (zero-initialised: step 0 is stage 1),
# + ../shared/train-corpus, 25 % prompt dropout; the first 1000 steps of a 2400-step schedule
# (started from stage 1's export: the same weights)
TRAIN=(--src ../shared/fusion-samples --src ../shared/train-corpus --src data/stacks)
$MMAIF synth "${TRAIN[@]}" --out data/exp_synth --n 3000 --seed 0 "${SYNTH[@]}"
$MMAIF train --config configs/recipes/default/2_maps.yaml --progress lines

# stage 3: 10000 more samples (seeds 1, 2), 13000 in all; 30 % prompt dropout; stopped at
# step 6500 of the 8000-step schedule
$MMAIF synth "${TRAIN[@]}" --out data/synth_s1 --n 5000 --seed 1 "${SYNTH[@]}"
$MMAIF synth "${TRAIN[@]}" --out data/synth_s2 --n 5000 --seed 2 "${SYNTH[@]}"
$MMAIF train --config configs/recipes/default/3_more_data.yaml --progress lines
# export the EMA weights + configs (the model card README.md in the folder is kept)
$PY -c "from mmaif import FusionPipeline as P; \
P.from_pretrained('runs/default').save_pretrained('src/mmaif/weights/default')"

# stage 4: stage 3's export warm-started with the fix and teacher gates (teacher only where
# the prompt names a degradation), 6000 new samples (seed 3), 3200 steps
$MMAIF synth "${TRAIN[@]}" --out data/synth_s3 --n 6000 --seed 3 "${SYNTH[@]}"
$MMAIF train --config configs/recipes/default/4_gates.yaml --progress lines
$PY -c "from mmaif import FusionPipeline as P; \
P.from_pretrained('runs/gates').save_pretrained('src/mmaif/weights/default')"
# (scripts/train_detector.sh makes the detector from data/synth_s3 here)

# stages 5-7: the classical candidates of each whole sample (`full_candidates`), 2000 steps
# each, each warm-started from the one before (configs/exp/long/: base.yaml is stage 4's
# recipe with 2000 steps): on data/synth_s3, then 6000 fresh samples (seed 4), then 6000 more
# (seed 5)
$MMAIF train --config configs/exp/long/full_candidates_long.yaml --progress lines
$MMAIF synth "${TRAIN[@]}" --out data/synth_s4 --n 6000 --seed 4 "${SYNTH[@]}"
$MMAIF train --config configs/exp/long/full_candidates_fresh.yaml --progress lines
$MMAIF synth "${TRAIN[@]}" --out data/synth_s5 --n 6000 --seed 5 "${SYNTH[@]}"
$MMAIF train --config configs/exp/long/full_candidates_s5.yaml --progress lines
# stage 8: the average of stage 4's weights and stage 7's
$PY scripts/average_weights.py src/mmaif/weights/default runs/arm_full_candidates_s5 \
    --alpha 0.5 --out runs/soup50
# stage 9: from it, synth_s4 + synth_s5 + 3000 clean samples (seed 7); a 6000-step schedule
# stopped after step 5000 (the process was terminated once that checkpoint was written)
$MMAIF synth "${TRAIN[@]}" --out data/synth_clean7 --n 3000 --seed 7 "${SYNTH[@]}" \
    --clean-prob 1.0
$MMAIF train --config configs/recipes/default/5_long.yaml --progress lines
# stage 10: 0.3 x stage 4 + 0.7 x stage 9 (its step-5000 checkpoint), exported in bfloat16
$PY scripts/average_weights.py src/mmaif/weights/default runs/arm_soup_clean_long \
    --alpha 0.7 --out runs/soup_long70
$PY -c "import torch; from mmaif import FusionPipeline as P; \
P.from_pretrained('runs/soup_long70').save_pretrained('src/mmaif/weights/default', \
dtype=torch.bfloat16)"
# the model card's numbers
$MMAIF eval --data ../shared/fusion-samples --pairs splits/fusion_samples_dev.txt \
    --repeats 4 --methods teacher,two-stage,mmaif-reg \
    --prompt-modes given,task,empty,mismatched --out eval_dev
$MMAIF eval --data ../shared/fusion-samples --pairs splits/fusion_samples_dev.txt \
    --repeats 4 --methods mmaif-reg --prompt-modes auto --out eval_auto/default
$PY benchmarks/clean_fidelity.py
$PY benchmarks/clean_fidelity.py --prompt auto
$MMAIF bench --presets default,tiny
$PY benchmarks/candidate_cost.py
$PY benchmarks/big_images.py
