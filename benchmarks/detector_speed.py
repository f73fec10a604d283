"""Latency of the degradation detector on one pair after loading (medians of --runs calls):
the features of both inputs, the network, and the whole `pipe.detect` (features + network +
the sentence), at 640x480 and at 1920x1080 (read at long side 512 either way).

    python benchmarks/detector_speed.py [--model DIR] [--runs 5]

DIR: a pipeline folder with detector/, a detector folder or a `mmaif train-detector` run
(default: the shipped model). Target: <= 0.1 s per 640x480 pair.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from mmaif.evaluation.bench import median_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="detector, run or pipeline folder (default: shipped)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from mmaif.inference.pipeline import DEFAULT_MODEL
    from mmaif.model.detector import detections_prompt, image_features, load_detector

    det = load_detector(args.model or DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    print(f"torch threads {torch.get_num_threads()}")
    print("| size | features, both inputs (s) | network (s) | detect + prompt (s) |")
    print("|---|---|---|---|")
    for w, h in ((640, 480), (1920, 1080)):
        a = rng.random((h, w), np.float32)
        b = rng.random((h, w, 3), np.float32)
        ta = torch.from_numpy(a)
        tb = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))
        feats = (image_features(ta), image_features(tb))
        t_feat = median_time(lambda ta=ta, tb=tb: (image_features(ta), image_features(tb)),
                                args.runs)
        t_net = median_time(lambda a=a, b=b, f=feats: det.detect(a, b, "vif", features=f),
                               args.runs)
        t_all = median_time(lambda a=a, b=b: detections_prompt("vif",
                                                                   det.detect(a, b, "vif")),
                               args.runs)
        print(f"| {w}x{h} | {t_feat:.3f} | {t_net:.4f} | {t_all:.3f} |")


if __name__ == "__main__":
    main()
