"""``mmaif eval``: degrade clean pairs with fixed seeds, fuse them with several methods, and
score each result against the teacher's GT of the clean pair (PSNR_gt, SSIM_gt) and with
no-reference fusion metrics. Writes ``results.csv`` (one row per image and method),
``summary.csv`` (per task and method, with 95% bootstrap intervals), the images, and
``index.html`` with tables per task and per degradation type and image grids.

Methods:

- ``teacher``: the task's teacher (the one that made the GT: GFF for VIF and MFF, Mertens for
  MEF, or ``--teacher``) applied to the *degraded* inputs — the honest baseline: a model that
  only learned to imitate the teacher scores exactly this.
- ``gff``: GFF on the degraded inputs, whatever the task's teacher.
- ``two-stage``: oracle restoration — the classical fix of each applied degradation (the true
  degradation names are given to it), then the task's teacher. See :mod:`mmaif.classical.restore`.
- ``mmaif-reg`` / ``mmaif-flow``: a trained model, once per prompt mode (``--prompt-modes``):
  ``given`` (the sample's synthesized prompt, which names its true degradations), ``task``
  (what ``mmaif fuse`` uses without ``--prompt``), ``empty`` (the empty string) and
  ``mismatched`` (the prompt of another sample of the same task whose degradation types share
  none with this one) and ``auto`` (the prompt the model's degradation detector composes
  from the degraded inputs, as ``mmaif fuse --prompt auto``). Rows are named ``mmaif-reg``
  for ``given``, ``mmaif-reg@MODE`` otherwise. With ``auto``, the detections are scored
  against the true degradations: ``detections.csv`` (per type precision / recall / F1) and
  a table per type on the page.

Degraded inputs and GT are quantized to 8 bits (as they are saved, and as training data is
stored) before any method sees them, so every number can be recomputed from the saved images.
Intervals: percentile bootstrap over the *source pairs* (a pair's repeats are resampled
together, as they share a scene), 2000 resamples with a fixed seed; ``Δ`` columns are paired
differences to the reference method (``teacher`` when evaluated), bootstrapped the same way.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from mmaif.classical.fusion import METHODS as CLASSICAL
from mmaif.classical.fusion import fuse_arrays
from mmaif.classical.restore import two_stage
from mmaif.data.degrade.pipeline import TASK_OPS, compose_prompt, describe
from mmaif.data.images import atomic_write_bytes, write_image
from mmaif.data.pairs import discover_pairs, read_names_file, select_pairs
from mmaif.distributed import gather, rank_world
from mmaif.errors import InputError, UsageError
from mmaif.evaluation.metrics import compute_metrics
from mmaif.evaluation.report import Section, write_page
from mmaif.synthesis.synth import SynthConfig, plan, render
from mmaif.synthesis.teachers import parse_teachers


def _model(s: dict, row: dict, prompt: str | None, opts: dict) -> np.ndarray:
    return opts["pipe"](s["a"], s["b"], prompt=prompt, task=row["task"], steps=opts["steps"],
                        seed=opts["seed"], output="numpy")


# method name -> fuse(degraded sample {a, b, gt}, manifest row, prompt, {pipe, steps, seed})
FUSERS = {
    "teacher": lambda s, row, prompt, opts: fuse_arrays(s["a"], s["b"], _teacher(row)),
    "gff": lambda s, row, prompt, opts: fuse_arrays(s["a"], s["b"], "gff"),
    "two-stage": lambda s, row, prompt, opts: two_stage(s["a"], s["b"], row["ops"],
                                                        _teacher(row)),
    "mmaif-reg": _model,
    "mmaif-flow": _model,
}
METHODS = tuple(FUSERS)
PROMPT_MODES = ("given", "task", "empty", "mismatched", "auto")
EVAL_METRICS = ("EN", "SD", "AG", "Qabf", "SSIM")
DEFAULT_METHODS = "teacher,two-stage,mmaif-reg"
SUMMARY_KEYS = ("PSNR_gt", "SSIM_gt", *EVAL_METRICS)
BOOTSTRAP = 2000


def eval_rows(root: str | Path, seed: int = 0, names_file: str | None = None,
              max_side: int | None = 640, repeats: int = 1,
              teachers: str | dict | None = None) -> list[dict]:
    """``repeats`` degraded samples per clean pair (full frame, 1-3 degradations, fixed
    seeds: sample k of pair i is item k * n_pairs + i of the synthesis plan)."""
    _, pairs = discover_pairs(root)
    teachers = teachers if isinstance(teachers, dict) else parse_teachers(teachers)
    rows = []
    if names_file:
        pairs = select_pairs(pairs, read_names_file(names_file), what=names_file)
    for k in range(repeats):
        for i, pair in enumerate(pairs):
            if pair.task is None:
                raise InputError(f"{root}: the layout does not say the task of {pair.name}")
            cfg = SynthConfig(tasks=[pair.task], sources=[str(root)], n=1, seed=seed,
                              crop_scales=[1.0], clean_prob=0.0, max_side=max_side,
                              teachers=teachers)
            row = plan(k * len(pairs) + i, cfg, {pair.task: [pair]})
            row["name"] = pair.name.replace("/", "_") + (f"_{k}" if repeats > 1 else "")
            rows.append(row)
    return rows


def mismatched_prompts(rows: list[dict], seed: int = 0) -> list[str]:
    """Per row, the prompt of the next row (cyclically) of the same task whose degradation
    types share none with its own. Where no row qualifies (small sets), a prompt composed
    for one degradation type the task allows and the sample lacks (seeded, deterministic)."""
    out = []
    for i, row in enumerate(rows):
        kinds = {o["name"] for o in row["ops"]}
        same = [j for j, r in enumerate(rows) if r["task"] == row["task"]]
        k = same.index(i)
        found = None
        for j in same[k + 1:] + same[:k]:
            other = {o["name"] for o in rows[j]["ops"]}
            if other and not other & kinds:
                found = rows[j]["prompt"]
                break
        if found is None:
            rng = np.random.default_rng([seed, i, 7])
            free = sorted(set(TASK_OPS[row["task"]]) - kinds)
            name = free[int(rng.integers(len(free)))]
            target = TASK_OPS[row["task"]][name][0]
            found = compose_prompt(row["task"], [{"name": name, "target": target}], rng)
        out.append(found)
    return out


def _teacher(row: dict) -> str:
    t = row["teacher"]
    if t not in CLASSICAL:
        raise UsageError(f"the {row['task']} teacher {t!r} is a folder of GT images, which "
                         "cannot fuse degraded inputs; methods teacher and two-stage need a "
                         f"classical teacher ({', '.join(CLASSICAL)})")
    return t


def _choices(spec: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """'a,b' -> ['a', 'b'], every item one of ``allowed`` (else a usage error)."""
    items = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in items if m not in allowed]
    if bad or not items:
        raise UsageError(f"{what} {bad[0] if bad else spec!r}; choose from {', '.join(allowed)}")
    return items


def _methods(spec: str, model: str | None, modes_spec: str = "given"):
    names = _choices(spec, METHODS, "unknown method")
    modes = _choices(modes_spec, PROMPT_MODES, "--prompt-modes: unknown mode")
    pipe = None
    if any(m.startswith("mmaif") for m in names):
        from mmaif.inference.pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained(model)  # None: the shipped default
        if "auto" in modes and pipe.detector is None:
            raise InputError(f"--prompt-modes auto: {model or 'the default model'} has no "
                             "degradation detector (detector/ folder); train one with `mmaif "
                             "train-detector`, or leave auto out")
        for m in names:
            want = "flow" if m == "mmaif-flow" else "reg"
            if m.startswith("mmaif") and pipe.objective != want:
                raise InputError(f"{model or 'the default model'}: a {pipe.objective} "
                                 f"model has no {want} weights for method {m}")
    runs = [(m, None) if not m.startswith("mmaif") else (m, mode)
            for m in names for mode in (modes if m.startswith("mmaif") else [None])]
    return runs, pipe


def run_name(method: str, mode: str | None) -> str:
    """Row name of a method run: ``mmaif-reg`` (given prompt) or ``mmaif-reg@task``."""
    return method if mode in (None, "given") else f"{method}@{mode}"


def _saved(x: np.ndarray) -> np.ndarray:
    """What writing ``x`` as an 8-bit PNG and reading it back gives."""
    return (np.rint(np.clip(np.nan_to_num(x), 0, 1) * 255) / 255).astype(np.float32)


def run_eval(root: str | Path, out: str | Path, methods: str = DEFAULT_METHODS,
             model: str | None = None, steps: int = 8, seed: int = 0,
             names_file: str | None = None, progress: bool = True, repeats: int = 1,
             prompt_modes: str = "given", teachers: str | None = None) -> list[dict]:
    """Write ``results.csv`` (per image and method), ``summary.csv`` (per task and method),
    ``summary_degradations.csv`` (PSNR_gt per degradation type), images and ``index.html``."""
    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    runs, pipe = _methods(methods, model, prompt_modes)
    rows = eval_rows(root, seed, names_file, repeats=repeats, teachers=teachers)
    if any(m in ("teacher", "two-stage") for m, _ in runs):
        for row in rows:
            _teacher(row)
    other = mismatched_prompts(rows, seed)
    opts = {"pipe": pipe, "steps": steps, "seed": seed}
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    results, sections, detections = [], [], []
    rank, world = rank_world()  # under torchrun: rank r takes samples r, r + N, ...
    it = [(i, row) for i, row in enumerate(rows) if i % world == rank]
    if progress:
        import sys

        from tqdm import tqdm

        it = tqdm(it, desc="eval" if world == 1 else f"eval rank {rank}/{world}", unit="pair",
                  file=sys.stderr)
    for i, row in it:
        s = {k: _saved(v) for k, v in render(row).items()}
        imgs = [("a (degraded)", f"{row['name']}_a.png"), ("b (degraded)", f"{row['name']}_b.png"),
                ("GT (teacher, clean pair)", f"{row['name']}_gt.png")]
        for (_, fname), key in zip(imgs, ("a", "b", "gt"), strict=True):
            write_image(out / "images" / fname, s[key])
        prompts = {"given": row["prompt"], "task": None, "empty": "", "mismatched": other[i]}
        if any(mode == "auto" for _, mode in runs):
            _, found, prompts["auto"] = pipe.detect(s["a"], s["b"], row["task"])
            detections.append((i, row["ops"], found))
        table = {}
        for m, mode in runs:
            fused = FUSERS[m](s, row, prompts.get(mode), opts)
            name = run_name(m, mode)
            fname = f"{row['name']}_{name.replace('@', '_')}.png"
            fused = _saved(fused)
            write_image(out / "images" / fname, fused)
            imgs.append((name, fname))
            vals = compute_metrics(s["a"], s["b"], fused, s["gt"], names=EVAL_METRICS)
            table[name] = vals
            results.append({"_i": i, "pair": row["name"], "source": row["sources"]["pair"],
                            "task": row["task"], "degradations": describe(row["ops"]),
                            "method": name, "prompt": _prompt_text(prompts, mode, row["task"]),
                            **vals})
        modes = {mode for _, mode in runs if mode}
        note = "; ".join(f"{md} prompt: {_prompt_text(prompts, md, row['task'])}"
                         for md in PROMPT_MODES if md in modes | {"given"})
        sections.append((i, Section(f"{row['name']} ({row['task'].upper()})",
                                    f"{describe(row['ops'])} — {note}",
                                    [(c, f"images/{f}") for c, f in imgs], table)))
    parts = gather((results, sections, detections))
    if parts is None:  # not rank 0: rank 0 writes the tables and the page
        return [{k: v for k, v in r.items() if k != "_i"} for r in results]
    results = [{k: v for k, v in r.items() if k != "_i"} for r in sorted(
        (r for res, _, _ in parts for r in res), key=lambda r: r["_i"])]
    sections = [sec for _, sec in sorted((x for _, secs, _ in parts for x in secs),
                                         key=lambda x: x[0])]
    detections = sorted((x for _, _, dets in parts for x in dets), key=lambda x: x[0])
    names = list(dict.fromkeys(r["method"] for r in results))
    summary = summary_rows(results, names)
    per_degradation = degradation_rows(results, names)
    _write_csv(out / "results.csv", results)
    _write_csv(out / "summary.csv", summary)
    _write_csv(out / "summary_degradations.csv", per_degradation)
    extra = []
    if detections:
        scores = detection_rows(detections, pipe.detector.cfg)
        _write_csv(out / "detections.csv", scores)
        extra = [_detection_section(scores, len(detections))]
    write_page(out / "index.html", "mmaif eval",
               f"{len(rows)} samples from {root}, seed {seed}; GT = teacher on the clean pair. "
               "Intervals: 95% bootstrap over source pairs. Metric conventions: see "
               "mmaif.evaluation.metrics.",
               _summaries(summary, per_degradation) + extra + sections)
    return results


def detection_rows(detections: list[tuple[int, list[dict], dict]], cfg) -> list[dict]:
    """Per degradation type (and ``micro``, over every (input, type)), how the detections
    of the ``auto`` runs match the true degradations: counts, precision, recall, F1."""
    from mmaif.model.detector import labels, type_scores

    types = cfg.types
    pred = np.zeros((2 * len(detections), len(types)), np.int64)
    true = np.zeros_like(pred)
    for k, (_, ops, found) in enumerate(detections):
        true[2 * k:2 * k + 2] = labels(ops, types, cfg.severities)[0]
        for i, role in enumerate(("a", "b")):
            for d in found[role]:
                pred[2 * k + i, types.index(d.type)] = 1
    scores = type_scores(pred, true, types)
    keys = ("tp", "fp", "fn", "tn", "precision", "recall", "f1")
    return [{"type": name, **{k: scores[name][k] for k in keys}} for name in (*types, "micro")]


def _detection_section(rows: list[dict], n: int) -> Section:
    return Section(f"Degradation detector: {n} samples, {2 * n} inputs (the auto prompt)",
                   "Per type: true / false positives and negatives over the inputs, against "
                   "the degradations actually applied.",
                   table={r["type"]: {k: (str(v) if isinstance(v, int) else v)
                                      for k, v in r.items() if k != "type"} for r in rows})


def _prompt_text(prompts: dict, mode: str | None, task: str) -> str:
    if mode is None:
        return ""
    if prompts[mode] is None:
        from mmaif.inference.pipeline import default_prompt

        return default_prompt(task)
    return prompts[mode]


def _write_csv(path: Path, results: list[dict]) -> None:
    from mmaif.evaluation.measure import csv_text

    atomic_write_bytes(path, csv_text(results).encode())


# ------------------------------------------------------------------------ statistics
def bootstrap_ci(values, clusters, n: int = BOOTSTRAP, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling whole clusters
    (samples that share a source pair are not independent)."""
    values = np.asarray(values, np.float64)
    ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if len(values) == 0:
        return float("nan"), float("nan")
    sums = np.bincount(inverse, weights=values, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    pick = np.random.default_rng(seed).integers(0, len(ids), (n, len(ids)))
    means = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _reference(names: list[str]) -> str:
    return "teacher" if "teacher" in names else names[0]


def summary_rows(results: list[dict], names: list[str]) -> list[dict]:
    """One row per (task, method): task, method, n, the mean metrics, then the 95% interval
    of PSNR_gt and the paired difference to the reference method with its interval."""
    out = []
    ref = _reference(names)
    for task in ("vif", "mef", "mff"):
        rs = [r for r in results if r["task"] == task]
        base = {r["pair"]: r["PSNR_gt"] for r in rs if r["method"] == ref}
        for m in names:
            mine = [r for r in rs if r["method"] == m]
            if not mine:
                continue
            vals = {k: float(np.nanmean([r[k] for r in mine])) for k in SUMMARY_KEYS}
            lo, hi = bootstrap_ci([r["PSNR_gt"] for r in mine], [r["source"] for r in mine])
            diff = [(r["PSNR_gt"] - base[r["pair"]], r["source"]) for r in mine
                    if r["pair"] in base]
            d = [v for v, _ in diff]
            dlo, dhi = bootstrap_ci(d, [c for _, c in diff]) if d else (np.nan, np.nan)
            out.append({"task": task, "method": m, "n": len(mine), **vals,
                        "PSNR_lo": lo, "PSNR_hi": hi, "vs": ref,
                        "dPSNR": float(np.mean(d)) if d else float("nan"),
                        "dPSNR_lo": dlo, "dPSNR_hi": dhi})
    return out


def _ci(r: dict) -> str:
    return f"[{r['PSNR_lo']:.2f}, {r['PSNR_hi']:.2f}]"


def _delta(r: dict) -> str:
    if r["method"] == r["vs"]:
        return "—"
    return f"{r['dPSNR']:+.2f} [{r['dPSNR_lo']:+.2f}, {r['dPSNR_hi']:+.2f}]"


def markdown_table(summary: list[dict]) -> str:
    """The per-(task, method) summary as a Markdown table (what ``mmaif eval`` prints)."""
    ref = summary[0]["vs"] if summary else "teacher"
    lines = ["| task | method | n | PSNR_gt | 95% CI | Δ vs " + ref + " [95% CI] | "
             + " | ".join(SUMMARY_KEYS[1:]) + " |",
             "|---|---|---|---|---|---|" + "---|" * (len(SUMMARY_KEYS) - 1)]
    for r in summary:
        lines.append(f"| {r['task']} | {r['method']} | {r['n']} | {r['PSNR_gt']:.2f} | "
                     f"{_ci(r)} | {_delta(r)} | "
                     f"{r['SSIM_gt']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in EVAL_METRICS)
                     + " |")
    return "\n".join(lines)


def _per_degradation(results: list[dict]) -> dict[str, list[dict]]:
    per_deg: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        for part in r["degradations"].split(" + "):
            per_deg[part.split("(")[0]].append(r)
    return dict(sorted(per_deg.items()))


def degradation_rows(results: list[dict], names: list[str]) -> list[dict]:
    """PSNR_gt per (degradation type, method) over the samples containing that type."""
    out = []
    for deg, rs in _per_degradation(results).items():
        for m in names:
            mine = [r for r in rs if r["method"] == m]
            lo, hi = bootstrap_ci([r["PSNR_gt"] for r in mine], [r["source"] for r in mine])
            out.append({"degradation": deg, "method": m, "n": len(mine),
                        "PSNR_gt": float(np.mean([r["PSNR_gt"] for r in mine])),
                        "PSNR_lo": lo, "PSNR_hi": hi})
    return out


def degradation_markdown(rows: list[dict]) -> str:
    """PSNR_gt per degradation type (rows) and method (columns), as Markdown."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    degs = list(dict.fromkeys(r["degradation"] for r in rows))
    cell = {(r["degradation"], r["method"]): r for r in rows}
    lines = ["| degradation | n | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for d in degs:
        lines.append(f"| {d} | {cell[(d, methods[0])]['n']} | " + " | ".join(
            f"{cell[(d, m)]['PSNR_gt']:.2f}" for m in methods) + " |")
    return "\n".join(lines)


def _summaries(summary: list[dict], per_degradation: list[dict]) -> list[Section]:
    out = []
    for task in ("vif", "mef", "mff"):
        rows = [r for r in summary if r["task"] == task]
        if rows:
            table = {r["method"]: {
                "n": str(r["n"]), "PSNR_gt": r["PSNR_gt"], "PSNR 95% CI": _ci(r),
                f"Δ vs {r['vs']}": _delta(r), **{k: r[k] for k in SUMMARY_KEYS[1:]}}
                for r in rows}
            out.append(Section(f"{task.upper()}: {rows[0]['n']} samples", table=table))
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for r in per_degradation:
        table[r["degradation"]][r["method"]] = r["PSNR_gt"]
    out.append(Section("PSNR_gt (dB) per degradation type (samples containing it)",
                       table=dict(table)))
    return out
