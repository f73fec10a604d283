"""The model card's pictures: `mmaif fuse A B -o F` with no prompt, the shipped default against
an older default, on degraded dev samples written by the card's `mmaif eval` command.

    python scripts/card_images.py --eval eval_dev --old OLD_DEFAULT [--out docs/default_model]

OLD_DEFAULT: a saved pipeline folder of the previous default, e.g. after
`git worktree add OLD_TREE 7056b69`: OLD_TREE/src/mmaif/weights/default.
The samples are chosen by a fixed rule, not by their look: per task, the first sample (repeat 0)
of the first dev pair that is not LLVIP (whose terms forbid derivative works outside research).
Writes OUT/noprompt.jpg (a, b, old, new, GT per row; the fused images are made in a temporary
folder: only the sheet is kept).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmaif.data.images import atomic_write_bytes, encode_image, read_image, resize_to, to_rgb

CELL = 256


def pick(eval_dir: Path) -> dict[str, dict]:
    chosen: dict[str, dict] = {}
    with open(eval_dir / "results.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["task"] not in chosen and r["pair"].endswith("_0") and "llvip" not in r["pair"]:
                chosen[r["task"]] = r
    return chosen


def fuse(task: str, a: Path, b: Path, out: Path, model: str | None) -> None:
    cmd = [sys.executable, "-m", "mmaif", "fuse", "--task", task, str(a), str(b), "-o", str(out)]
    if model:
        cmd[4:4] = ["--model", model]
    subprocess.run(cmd, check=True)


def cell(path: Path, label: str) -> np.ndarray:
    img = to_rgb(read_image(path).data)
    img = resize_to(img, (CELL, round(img.shape[0] * CELL / img.shape[1])))
    im = Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8))
    ImageDraw.Draw(im).text((4, 4), label, fill=(255, 255, 0))
    return np.asarray(im, np.float32) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval", required=True, help="output folder of the card's mmaif eval")
    ap.add_argument("--old", required=True, help="the previous default (a pipeline folder)")
    ap.add_argument("--out", default="docs/default_model")
    args = ap.parse_args()
    ev, out = Path(args.eval), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = sheet_rows(ev, Path(tmp), args.old)
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])
    atomic_write_bytes(out / "noprompt.jpg", encode_image(sheet, ".jpg", quality=90))


def sheet_rows(ev: Path, out: Path, old: str) -> list[np.ndarray]:
    rows = []
    for task, r in sorted(pick(ev).items(), key=lambda kv: ("vif", "mef", "mff").index(kv[0])):
        img = ev / "images"
        a, b, gt = (img / f"{r['pair']}_{k}.png" for k in ("a", "b", "gt"))
        fuse(task, a, b, out / f"{task}_new.png", None)
        fuse(task, a, b, out / f"{task}_old.png", old)
        print(f"{task}: {r['pair']} ({r['degradations']})")
        cells = [cell(a, "a"), cell(b, "b"), cell(out / f"{task}_old.png", "old default"),
                 cell(out / f"{task}_new.png", "new default"), cell(gt, "GT")]
        rows.append(np.concatenate(cells, axis=1))
    return rows


if __name__ == "__main__":
    main()
