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
from .metrics import compute_metrics, psnr_gt
from .pairs import discover_pairs, read_names_file, select_pairs
from .report import Section, write_page
from .restore import two_stage
from .synth import SynthConfig, plan, render

METHODS = ("gff", "two-stage", "mmaif-reg", "mmaif-flow")
EVAL_METRICS = ("EN", "SD", "AG", "Qabf", "SSIM")


def eval_rows(root: str | Path, seed: int = 0, names_file: str | None = None,
              max_side: int | None = 640, repeats: int = 1) -> list[dict]:
    """``repeats`` degraded samples per clean pair (full frame, 1-3 degradations, fixed
    seeds: sample k of pair i is item k * n_pairs + i of the synthesis plan)."""
    _, pairs = discover_pairs(root)
    rows = []
    if names_file:
        pairs = select_pairs(pairs, read_names_file(names_file), what=names_file)
    for k in range(repeats):
        for i, pair in enumerate(pairs):
            if pair.task is None:
                raise InputError(f"{root}: the layout does not say the task of {pair.name}")
            cfg = SynthConfig(tasks=[pair.task], sources=[str(root)], n=1, seed=seed,
                              crop_scales=[1.0], clean_prob=0.0, max_side=max_side)
            row = plan(k * len(pairs) + i, cfg, {pair.task: [pair]})
            row["name"] = pair.name.replace("/", "_") + (f"_{k}" if repeats > 1 else "")
            rows.append(row)
    return rows


def _methods(spec: str, model: str | None):
    names = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise UsageError(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
    pipe = None
    if any(m.startswith("mmaif") for m in names):
        from .pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained(model)  # None: the shipped default
        for m in names:
            want = "flow" if m == "mmaif-flow" else "reg"
            if m.startswith("mmaif") and pipe.spec["objective"] != want:
                raise InputError(f"{model or 'the default model'}: a {pipe.spec['objective']} "
                                 f"model has no {want} weights for method {m}")
    return names, pipe


DEFAULT_METHODS = "gff,two-stage,mmaif-reg"
SUMMARY_KEYS = ("PSNR_gt", "SSIM_gt", *EVAL_METRICS)


def run_eval(root: str | Path, out: str | Path, methods: str = DEFAULT_METHODS,
             model: str | None = None, steps: int = 8, seed: int = 0,
             names_file: str | None = None, progress: bool = True,
             repeats: int = 1) -> list[dict]:
    """Write ``results.csv`` (per image and method), ``summary.csv`` (per task and method),
    ``summary_degradations.csv`` (PSNR_gt per degradation type), images and ``index.html``."""
    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    names, pipe = _methods(methods, model)
    rows = eval_rows(root, seed, names_file, repeats=repeats)
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
    _write_csv(out / "summary.csv", summary_rows(results, names))
    _write_csv(out / "summary_degradations.csv", _degradation_rows(results, names))
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
            table[m] = {k: float(np.nanmean([r[k] for r in rs])) for k in SUMMARY_KEYS}
    return table


def summary_rows(results: list[dict], names: list[str]) -> list[dict]:
    """One row per (task, method): task, method, n, PSNR_gt, SSIM_gt, no-reference metrics."""
    out = []
    for task in ("vif", "mef", "mff"):
        rs = [r for r in results if r["task"] == task]
        for m, vals in _mean_table(rs, names).items():
            n = sum(r["method"] == m for r in rs)
            out.append({"task": task, "method": m, "n": n, **vals})
    return out


def _per_degradation(results: list[dict]) -> dict[str, list[dict]]:
    per_deg: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        for part in r["degradations"].split(" + "):
            per_deg[part.split("(")[0]].append(r)
    return dict(sorted(per_deg.items()))


def _degradation_rows(results: list[dict], names: list[str]) -> list[dict]:
    out = []
    for deg, rs in _per_degradation(results).items():
        for m in names:
            vals = [r["PSNR_gt"] for r in rs if r["method"] == m]
            out.append({"degradation": deg, "method": m, "n": len(vals),
                        "PSNR_gt": float(np.mean(vals))})
    return out


def _summaries(results: list[dict], names: list[str]) -> list[Section]:
    out = []
    for task in ("vif", "mef", "mff"):
        rs = [r for r in results if r["task"] == task]
        if rs:
            out.append(Section(f"{task.upper()}: mean over {len(rs) // len(names)} pairs",
                               table=_mean_table(rs, names)))
    table = {deg: {m: float(np.mean([r["PSNR_gt"] for r in rs if r["method"] == m]))
                   for m in names} for deg, rs in _per_degradation(results).items()}
    out.append(Section("PSNR_gt (dB) per degradation type (samples containing it)",
                       table=table))
    return out


def clean_fidelity(root: str | Path, names_file: str | None = None, model: str | None = None,
                   max_side: int = 640) -> list[dict]:
    """How well a model imitates the teacher on *clean* pairs: per pair, PSNR against the
    teacher's fusion (the training GT) of the model, of the plain mean of the inputs (what the
    model outputs at initialisation) and of GFF. Pairs are framed as in :func:`eval_rows`,
    with the degradations left out."""
    from .pipeline import FusionPipeline

    pipe = FusionPipeline.from_pretrained(model)
    out = []
    for row in eval_rows(root, names_file=names_file, max_side=max_side):
        s = render({**row, "ops": []})
        a, b, gt = s["a"], s["b"], s["gt"]
        a3, b3 = ((np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x for x in (a, b))
                  if a.ndim != b.ndim else (a, b))
        out.append({"pair": row["sources"]["pair"], "task": row["task"],
                    "model": psnr_gt(pipe(a, b, task=row["task"], output="numpy"), gt),
                    "mean": psnr_gt((a3 + b3) / 2, gt),
                    "gff": psnr_gt(fuse_arrays(a, b, "gff"), gt)})
    return out
