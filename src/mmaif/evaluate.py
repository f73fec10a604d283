"""``mmaif eval``: degrade clean pairs with fixed seeds, fuse them with several methods, and
score each result against the teacher's GT of the clean pair (PSNR_gt, SSIM_gt) and with
no-reference fusion metrics. Writes ``results.csv`` (one row per image and method), the
images, and ``index.html`` with tables per task and per degradation type and image grids.

Methods: ``gff`` (on the degraded inputs), ``two-stage`` (classical fix of each applied
degradation, then GFF; see :mod:`mmaif.restore`), ``mmaif-reg`` and ``mmaif-flow`` (a trained
model; ``--steps`` for flow).
"""

from __future__ import annotations

import csv
import io as _io
from collections import defaultdict
from pathlib import Path

import numpy as np

from .degrade.pipeline import describe
from .errors import InputError, UsageError
from .fusion import fuse_arrays
from .io import atomic_write_bytes, write_image
from .metrics import compute_metrics
from .pairs import discover_pairs
from .report import Section, write_page
from .restore import two_stage
from .synth import SynthConfig, plan, render

METHODS = ("gff", "two-stage", "mmaif-reg", "mmaif-flow")
EVAL_METRICS = ("EN", "SD", "AG", "Qabf", "SSIM")


def _select(pairs, names_file: str | None):
    if not names_file:
        return pairs
    path = Path(names_file)
    if not path.is_file():
        raise InputError(f"{path}: no such pairs file")
    wanted = {ln.strip() for ln in path.read_text().splitlines() if ln.strip()
              and not ln.startswith("#")}
    chosen = [p for p in pairs if p.name in wanted or p.name.split("/")[-1] in wanted]
    if not chosen:
        raise InputError(f"{path}: none of its {len(wanted)} names match a pair of the dataset")
    return chosen


def eval_rows(root: str | Path, seed: int = 0, names_file: str | None = None,
              max_side: int | None = 640) -> list[dict]:
    """One degraded sample per clean pair (full frame, 1-3 degradations, fixed seed)."""
    _, pairs = discover_pairs(root)
    rows = []
    for i, pair in enumerate(_select(pairs, names_file)):
        if pair.task is None:
            raise InputError(f"{root}: the layout does not say the task of {pair.name}")
        cfg = SynthConfig(tasks=[pair.task], sources=[str(root)], n=1, seed=seed,
                          crop_scales=[1.0], clean_prob=0.0, max_side=max_side)
        row = plan(i, cfg, {pair.task: [pair]})
        row["name"] = pair.name.replace("/", "_")
        rows.append(row)
    return rows


def _methods(spec: str, model: str | None):
    names = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise UsageError(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
    pipe = None
    if any(m.startswith("mmaif") for m in names):
        if not model:
            raise UsageError("mmaif-reg / mmaif-flow need --model (no default model is shipped "
                             "yet)")
        from .pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained(model)
        for m in names:
            want = "flow" if m == "mmaif-flow" else "reg"
            if m.startswith("mmaif") and pipe.spec["objective"] != want:
                raise InputError(f"{model}: a {pipe.spec['objective']} model has no "
                                 f"{want} weights for method {m}")
    return names, pipe


def run_eval(root: str | Path, out: str | Path, methods: str = "gff,two-stage",
             model: str | None = None, steps: int = 8, seed: int = 0,
             names_file: str | None = None, progress: bool = True) -> list[dict]:
    names, pipe = _methods(methods, model)
    rows = eval_rows(root, seed, names_file)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    results, sections = [], []
    it = rows
    if progress:
        import sys

        from tqdm import tqdm

        it = tqdm(rows, desc="eval", unit="pair", file=sys.stderr)
    for row in it:
        s = render(row)
        imgs = [("a (degraded)", f"{row['name']}_a.png"), ("b (degraded)", f"{row['name']}_b.png"),
                ("GT (teacher, clean pair)", f"{row['name']}_gt.png")]
        for (_, fname), key in zip(imgs, ("a", "b", "gt"), strict=True):
            write_image(out / "images" / fname, s[key])
        table = {}
        for m in names:
            if m == "gff":
                fused = fuse_arrays(s["a"], s["b"], "gff")
            elif m == "two-stage":
                fused = two_stage(s["a"], s["b"], row["ops"])
            else:
                fused = pipe(s["a"], s["b"], prompt=row["prompt"], steps=steps, seed=seed,
                             output="numpy")
            fname = f"{row['name']}_{m}.png"
            write_image(out / "images" / fname, fused)
            imgs.append((m, fname))
            vals = compute_metrics(s["a"], s["b"], fused, s["gt"], names=EVAL_METRICS)
            table[m] = vals
            results.append({"pair": row["name"], "task": row["task"],
                            "degradations": describe(row["ops"]), "method": m, **vals})
        sections.append(Section(f"{row['name']} ({row['task'].upper()})",
                                f"{describe(row['ops'])} — prompt: {row['prompt']}",
                                [(c, f"images/{f}") for c, f in imgs], table))
    _write_csv(out / "results.csv", results)
    summary = _summaries(results, names)
    write_page(out / "index.html", "mmaif eval",
               f"{len(rows)} pairs from {root}, seed {seed}; GT = teacher on the clean pair. "
               "Metric conventions: see mmaif.metrics.", summary + sections)
    return results


def _write_csv(path: Path, results: list[dict]) -> None:
    buf = _io.StringIO()
    keys = list(results[0]) if results else ["pair"]
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def _mean_table(results: list[dict], names: list[str]) -> dict[str, dict[str, float]]:
    table = {}
    for m in names:
        rs = [r for r in results if r["method"] == m]
        if rs:
            table[m] = {k: float(np.nanmean([r[k] for r in rs])) for k in
                        ("PSNR_gt", "SSIM_gt", *EVAL_METRICS)}
    return table


def _summaries(results: list[dict], names: list[str]) -> list[Section]:
    out = []
    for task in ("vif", "mef", "mff"):
        rs = [r for r in results if r["task"] == task]
        if rs:
            out.append(Section(f"{task.upper()}: mean over {len(rs) // len(names)} pairs",
                               table=_mean_table(rs, names)))
    per_deg: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        for part in r["degradations"].split(" + "):
            per_deg[part.split("(")[0]].append(r)
    table = {deg: {m: float(np.mean([r["PSNR_gt"] for r in rs if r["method"] == m]))
                   for m in names} for deg, rs in sorted(per_deg.items())}
    out.append(Section("PSNR_gt (dB) per degradation type (samples containing it)",
                       table=table))
    return out
