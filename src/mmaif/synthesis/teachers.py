"""Teachers: what makes the ground truth of a synthesized sample from its clean pair.

A teacher is a classical method name (``gff``, ``mertens``, ``laplacian``; GT = method(clean
a, clean b) with the auto colour policy) or a folder of precomputed GT images — e.g. outputs of
a fusion network you trust — named like the pairs (``NAME.*`` directly in the folder or in
``<task>/``), at the sources' full size; they are cropped like the inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmaif.classical.fusion import METHODS, fuse_arrays
from mmaif.data.images import READ_EXTS, read_image
from mmaif.errors import InputError, UsageError

DEFAULT_TEACHERS = {"vif": "gff", "mef": "mertens", "mff": "gff"}


def parse_teachers(spec: str | None = None) -> dict[str, str]:
    """'gff' (every task) or 'vif=gff,mef=mertens,mff=/path/to/gt' -> {task: teacher}."""
    out = dict(DEFAULT_TEACHERS)
    if not spec:
        return out
    for part in spec.split(","):
        task, sep, value = part.partition("=")
        if not sep:
            task, value = "", part
        value = value.strip()
        tasks = [task.strip()] if task.strip() else list(out)
        for t in tasks:
            if t not in out:
                raise UsageError(f"--teacher: unknown task {t!r}; use vif, mef or mff")
            if value not in METHODS and not Path(value).is_dir():
                raise UsageError(f"--teacher: {value!r} is neither a method "
                                 f"({', '.join(METHODS)}) nor an existing folder of GT images")
            out[t] = value
    return out


def _find_gt(folder: Path, task: str, name: str) -> Path:
    stem = name.split("/")[-1]
    for base in (folder, folder / task):
        for ext in READ_EXTS:
            p = base / f"{stem}{ext}"
            if p.is_file():
                return p
    raise InputError(f"no ground-truth image named {stem}.* in {folder} (or {folder / task})")


def teacher_gt(teacher: str, task: str, pair_name: str, a: np.ndarray, b: np.ndarray,
               crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Ground truth for clean (already cropped) ``a``/``b``; ``crop`` = (x, y, w, h) in the
    full-size source, used to cut a folder teacher's image."""
    if teacher in METHODS:
        return fuse_arrays(a, b, teacher)
    path = _find_gt(Path(teacher), task, pair_name)
    gt = read_image(path).data
    if crop is not None:
        x, y, w, h = crop
        if gt.shape[0] < y + h or gt.shape[1] < x + w:
            raise InputError(f"{path}: {gt.shape[1]}x{gt.shape[0]} is smaller than its sources; "
                             "ground-truth images must have the sources' size")
        gt = gt[y:y + h, x:x + w]
    return gt
