"""``mmaif eval --stacks``: the model on N-shot stacks rendered from real scenes.

Each MEF / MFF pair of the dataset gives a scene — its task's teacher on the clean pair (a
well-exposed composite, an all-in-focus image) — from which N-shot exposure brackets
(:func:`~mmaif.data.stacks.exposure_stack`, the same EV span for every N) and focus stacks
(:func:`~mmaif.data.stacks.focus_stack` over a random depth map) are rendered. The ground
truth is the teacher on the N clean shots. Rows, per task and N: the model on all N shots (each
reduction order), the model on the two extreme shots, and (N > 2) the teacher on the two
extreme shots (what the teacher loses by fusing only a pair of the stack). PSNR against the
ground truth with a bootstrap interval over scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmaif.classical.fusion import fuse_stack
from mmaif.data.images import fit_within, read_image, resize_to, to_rgb
from mmaif.data.pairs import (
    MAX_SHOTS,
    STACK_TASKS,
    discover_pairs,
    read_names_file,
    select_pairs,
)
from mmaif.data.stacks import depth_map, exposure_stack, focus_stack
from mmaif.errors import UsageError
from mmaif.evaluation.evaluate import bootstrap_ci
from mmaif.evaluation.metrics import psnr_gt
from mmaif.synthesis.teachers import DEFAULT_TEACHERS


def parse_shots(spec: str) -> list[int]:
    """'2,3,5' -> [2, 3, 5]; each 2..MAX_SHOTS."""
    try:
        shots = sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError:
        raise UsageError(f"--stacks {spec!r}: give shot counts like 2,3,5") from None
    if not shots or not all(2 <= n <= MAX_SHOTS for n in shots):
        raise UsageError(f"--stacks {spec!r}: each count must be 2 to {MAX_SHOTS}")
    return shots


def scenes(root: str | Path, names_file: str | None = None, max_side: int = 512
           ) -> list[tuple[str, str, np.ndarray]]:
    """(name, task, scene) per MEF / MFF pair: the task's teacher on the clean pair, colour,
    long side at most ``max_side``."""
    _, pairs = discover_pairs(root)
    if names_file:
        pairs = select_pairs(pairs, read_names_file(names_file), what=names_file)
    out = []
    for p in pairs:
        if p.task not in STACK_TASKS:
            continue
        a, b = read_image(p.a).data, read_image(p.b).data
        scene = fuse_stack([a, b], DEFAULT_TEACHERS[p.task])
        size = fit_within(scene.shape, max_side)
        scene = to_rgb(np.clip(resize_to(scene, size) if size else scene, 0, 1)
                       .astype(np.float32))
        out.append((p.name, p.task, scene))
    if not out:
        raise UsageError(f"{root}: no MEF or MFF pairs to render stacks from")
    return out


def render(task: str, scene: np.ndarray, n: int, seed: int, variant: int) -> list[np.ndarray]:
    """The ``n``-shot stack of one scene; the draw (EV span, depth map, blur) depends on the
    scene's variant and seed only, so the stacks of every N share it."""
    rng = np.random.default_rng([seed, variant])
    stops, sigma = float(rng.uniform(1.5, 2.5)), float(rng.uniform(2.0, 4.0))
    if task == "mef":
        return exposure_stack(scene, n, stops)
    return focus_stack(scene, depth_map(scene.shape[:2], rng), n, sigma)


def run_stacks(root: str | Path, pipe, shots: list[int], orders=("tree", "chain"),
               names_file: str | None = None, seed: int = 0, variants: int = 2,
               progress: bool = True) -> list[dict]:
    """One row per (scene, variant, N, method) with its PSNR against the teacher on N."""
    from tqdm import tqdm

    rows = []
    todo = [(s, v) for s in scenes(root, names_file) for v in range(variants)]
    for (name, task, scene), v in tqdm(todo, desc="stacks", unit="scene", disable=not progress):
        teacher = DEFAULT_TEACHERS[task]
        for n in shots:
            stack = render(task, scene, n, seed, v)
            gt = fuse_stack(stack, teacher)
            ends = [stack[0], stack[-1]]
            fused = {f"mmaif-reg N ({o})": pipe(stack, task=task, order=o, output="numpy",
                                                progress=False) for o in orders}
            fused["mmaif-reg extremes"] = pipe(*ends, task=task, output="numpy", progress=False)
            if n > 2:  # with two shots the teacher on the extremes is the ground truth
                fused[f"{teacher} extremes"] = fuse_stack(ends, teacher)
            for method, img in fused.items():
                rows.append({"scene": name, "variant": v, "task": task, "n": n,
                             "method": method, "psnr": psnr_gt(img, gt)})
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Mean PSNR and its 95 % interval (resampling scenes) per task, N and method."""
    out = []
    keys = dict.fromkeys((r["task"], r["n"], r["method"]) for r in rows)
    for task, n, method in keys:
        sel = [r for r in rows if (r["task"], r["n"], r["method"]) == (task, n, method)]
        vals = [r["psnr"] for r in sel]
        lo, hi = bootstrap_ci(vals, [r["scene"] for r in sel])
        out.append({"task": task, "n": n, "method": method, "psnr": float(np.mean(vals)),
                    "lo": lo, "hi": hi, "count": len(vals)})
    return out


def markdown(summ: list[dict]) -> str:
    """One table: a row per task and method, a column per N (PSNR [95 % CI])."""
    ns = sorted({r["n"] for r in summ})
    lines = ["| task | method | " + " | ".join(f"N = {n}" for n in ns) + " |",
             "|---|---|" + "---|" * len(ns)]
    for task in dict.fromkeys(r["task"] for r in summ):
        for method in dict.fromkeys(r["method"] for r in summ if r["task"] == task):
            cells = []
            for n in ns:
                r = next((r for r in summ if (r["task"], r["n"], r["method"]) ==
                          (task, n, method)), None)
                cells.append("" if r is None else
                             f"{r['psnr']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]")
            lines.append(f"| {task.upper()} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
