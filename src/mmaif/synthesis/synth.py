"""Synthesis of degraded training pairs (MMAIF Fig. 2): crop -> teacher GT -> degradations ->
prompt, written as ``OUT/{a,b,gt}/ID.png`` + ``OUT/manifest.jsonl``.

Every random choice of sample ``i`` comes from ``SeedSequence([seed, i])`` and is recorded in
its manifest row, so :func:`render` rebuilds the sample pixel-identically from the row alone
(``--replay``), runs are resumable (finished ids are skipped), and worker count or order does
not change the result.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmaif.data.degrade.depth import make_depth_estimator
from mmaif.data.degrade.ops import OPS, SEVERITIES
from mmaif.data.degrade.pipeline import apply_ops, compose_prompt, describe, sample_ops
from mmaif.data.images import atomic_write_bytes, encode_image, fit_within, read_image, resize_to
from mmaif.data.pairs import TASKS, Pair, discover_pairs, select_pairs
from mmaif.errors import InputError, UsageError
from mmaif.synthesis.teachers import parse_teachers, teacher_gt

MANIFEST = "manifest.jsonl"
CONFIG = "synth_config.json"


@dataclass
class SynthConfig:
    """Everything that defines a synthesis run (saved as ``synth_config.json``)."""

    tasks: list[str]
    sources: list[str]
    n: int
    seed: int = 0
    counts: dict[int, float] = field(default_factory=lambda: {1: 0.4, 2: 0.4, 3: 0.2})
    clean_prob: float = 0.1
    severities: list[str] = field(default_factory=lambda: list(SEVERITIES))
    crop_scales: list[float] = field(default_factory=lambda: [1.0, 0.8, 0.6, 0.5])
    max_side: int | None = None
    teachers: dict[str, str] = field(default_factory=parse_teachers)
    depth: str | None = None
    keep_clean: bool = False
    include: list[str] = field(default_factory=list)  # pair names / glob patterns to use
    exclude: list[str] = field(default_factory=list)  # ... and to leave out

    def check(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise UsageError(f"unknown task {bad[0] if bad else '(none)'}; use vif, mef, mff "
                             "or all")
        if self.n < 1:
            raise UsageError("--n must be at least 1")
        if not self.sources:
            raise UsageError("give at least one --src ROOT")
        wrong = [s for s in self.severities if s not in SEVERITIES]
        if wrong:
            raise UsageError(f"unknown severity {wrong[0]}; use {', '.join(SEVERITIES)}")


def collect_pairs(cfg: SynthConfig) -> dict[str, list[Pair]]:
    """Pairs per task from every source root; a root whose layout implies no task counts for
    the run's task when there is exactly one."""
    by_task: dict[str, list[Pair]] = {t: [] for t in cfg.tasks}
    for root in cfg.sources:
        single = cfg.tasks[0] if len(cfg.tasks) == 1 else None
        _, pairs = discover_pairs(root, single)
        # one of several roots may hold none of the listed pairs; empty tasks fail below
        pairs = select_pairs(pairs, cfg.include, cfg.exclude, required=False)
        for p in pairs:
            if p.task in by_task:
                by_task[p.task].append(p)
    empty = [t for t, ps in by_task.items() if not ps]
    if empty:
        raise InputError(f"no {empty[0].upper()} pairs found in {', '.join(cfg.sources)}; "
                         "check --src or --task")
    return by_task


def sample_id(i: int) -> str:
    return f"{i:06d}"


def plan(i: int, cfg: SynthConfig, pairs: dict[str, list[Pair]],
         epoch: int | None = None) -> dict:
    """All random decisions of sample ``i`` (of ``epoch``, for on-the-fly datasets) -> its
    manifest row (no pixels touched)."""
    key = [cfg.seed, epoch, i] if epoch else [cfg.seed, i]  # epoch 0 == `mmaif synth`
    rng = np.random.default_rng(np.random.SeedSequence(key))
    task = cfg.tasks[i % len(cfg.tasks)]
    pair = pairs[task][int(rng.integers(len(pairs[task])))]
    w, h = _image_size(pair.a)
    s = float(cfg.crop_scales[int(rng.integers(len(cfg.crop_scales)))])
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    ops = sample_ops(task, rng, cfg.counts, tuple(cfg.severities), cfg.clean_prob)
    return {"id": sample_id(i), "task": task,
            "sources": {"pair": pair.name, "a": str(pair.a), "b": str(pair.b)},
            "crop": {"x": x, "y": y, "w": cw, "h": ch, "scale": s},
            "max_side": cfg.max_side, "teacher": cfg.teachers[task], "depth": cfg.depth or
            "fallback", "ops": ops, "prompt": compose_prompt(task, ops, rng), "seed": cfg.seed,
            "index": i, **({"epoch": epoch} if epoch else {})}


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            rotated = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation
            return (h, w) if rotated else (w, h)
    except OSError:
        return read_image(path).size


def render(row: dict, depth_estimator=None) -> dict[str, np.ndarray]:
    """Rebuild a sample's images from its manifest row: degraded a, b, GT, clean a, b."""
    src = row["sources"]
    a, b = read_image(src["a"]).data, read_image(src["b"]).data
    if a.shape[:2] != b.shape[:2]:
        raise InputError(f"{src['a']} and {src['b']} differ in size")
    c = row["crop"]
    box = (c["x"], c["y"], c["w"], c["h"])
    a, b = (x[c["y"]:c["y"] + c["h"], c["x"]:c["x"] + c["w"]] for x in (a, b))
    size = fit_within(a.shape, row.get("max_side"))
    if size:
        a, b = resize_to(a, size), resize_to(b, size)
    gt = teacher_gt(row["teacher"], row["task"], src["pair"], a, b, box)
    if gt.shape[:2] != a.shape[:2]:
        gt = resize_to(gt, (a.shape[1], a.shape[0]))
    da, db = degrade_pair(row["task"], a, b, row["ops"], depth_estimator, row.get("depth"))
    return {"a": da, "b": db, "gt": gt, "clean_a": a, "clean_b": b}


def degrade_pair(task: str, a: np.ndarray, b: np.ndarray, ops: list[dict],
                 depth_estimator=None, depth: str | None = None):
    """Apply recorded degradations, estimating depth (for haze) only when an op needs it."""
    depth_map = None
    if any(OPS[r["name"]].uses_depth for r in ops):
        est = depth_estimator or make_depth_estimator(depth)
        depth_map = est(b if task == "vif" else _mean_pair(a, b))
    return apply_ops(a, b, ops, depth_map)


def _mean_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim != b.ndim:
        a, b = (x.mean(-1) if x.ndim == 3 else x for x in (a, b))
    return (a + b) / 2


def write_sample(out: Path, row: dict, images: dict[str, np.ndarray], keep_clean: bool) -> None:
    keys = ("a", "b", "gt") + (("clean_a", "clean_b") if keep_clean else ())
    for k in keys:
        (out / k).mkdir(exist_ok=True)
        atomic_write_bytes(out / k / f"{row['id']}.png", encode_image(images[k], ".png"))


# ------------------------------------------------------------------------ manifest
def read_manifest(path: Path, strict: bool = True) -> list[dict]:
    """Rows of a manifest. With ``strict=False`` an unterminated last line (a run killed while
    appending) is ignored; any other bad line is an error."""
    rows = []
    text = path.read_text("utf-8")
    lines = text.split("\n")
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if not strict and k == len(lines) - 1:
                break
            raise InputError(f"{path}: line {k + 1} is not valid JSON; the manifest is corrupt"
                             ) from None
    return rows


def _write_manifest(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: r["id"])
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


# --------------------------------------------------------------------------- runner
_WORKER: dict = {}


def _init_worker(cfg_dict: dict | None, depth: str | None, pool: bool = True) -> None:
    if pool:  # Ctrl-C is handled by the parent, which then stops the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = SynthConfig(**cfg_dict) if cfg_dict else None
    _WORKER.update(cfg=cfg, pairs=collect_pairs(cfg) if cfg else None,
                   depth=make_depth_estimator(depth))


def _job(args: tuple[str, int | dict]) -> dict:
    out, item = args
    cfg = _WORKER["cfg"]
    row = item if isinstance(item, dict) else plan(item, cfg, _WORKER["pairs"])
    keep = cfg.keep_clean if cfg else bool(row.get("keep_clean"))
    write_sample(Path(out), row, render(row, _WORKER["depth"]), keep)
    return row


def _run(out: Path, items: list, workers: int, cfg: SynthConfig | None, depth: str | None,
         done_rows: list[dict], progress: str) -> list[dict]:
    """Run jobs, appending each finished row to the manifest (single writer: this process)."""
    rows = list(done_rows)
    manifest = out / MANIFEST
    total = len(items) + len(done_rows)
    cfg_dict = _cfg_dict(cfg) if cfg else None
    jobs = [(str(out), it) for it in items]
    report = _Progress(progress, len(jobs), len(done_rows), total)
    with open(manifest, "a", encoding="utf-8") as fh:
        for row in _map(jobs, workers, cfg_dict, depth):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            rows.append(row)
            report.update(row)  # only after the row is durable
    report.close()
    _write_manifest(manifest, rows)
    return sorted(rows, key=lambda r: r["id"])


def _map(jobs: list, workers: int, cfg_dict: dict | None, depth: str | None) -> Iterator[dict]:
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(cfg_dict, depth, pool=False)
        yield from map(_job, jobs)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg_dict, depth)) as pool:
        yield from pool.imap_unordered(_job, jobs, chunksize=1)


class _Progress:
    """'bar' (tqdm), 'lines' (one line per committed sample, for logs and tests) or 'none'."""

    def __init__(self, mode: str, n: int, start: int, total: int):
        self.mode, self.k, self.total = mode, start, total
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=n, desc="synth", unit="sample", file=sys.stderr)

    def update(self, row: dict) -> None:
        self.k += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "lines":
            print(f"done {row['id']} ({self.k}/{self.total})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cfg_dict(cfg: SynthConfig) -> dict:
    d = asdict(cfg)
    d["counts"] = {int(k): v for k, v in d["counts"].items()}
    return d


def prepare_out(out: Path) -> None:
    """Create the output folder and prove it is writable, before any work."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / ".write-test", b"")
        (out / ".write-test").unlink()
    except OSError as exc:
        raise InputError(f"{out}: cannot write there ({exc.strerror or exc})") from None


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 0 <= I < N."""
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def synthesize(cfg: SynthConfig, out: str | Path, workers: int = 1,
               progress: str = "bar", shard: tuple[int, int] | None = None) -> list[dict]:
    """Synthesize ``cfg.n`` samples into ``out`` (resuming a previous run of the same config).
    ``shard`` = (I, N): only the samples i with i % N == I — a disjoint, deterministic part of
    the same plan, for array jobs; the parts' manifests and folders merge by concatenation."""
    cfg.check()
    out = Path(out)
    collect_pairs(cfg)  # fail early on bad sources, before creating anything
    prepare_out(out)
    saved = out / CONFIG
    mine = json.dumps(_cfg_dict(cfg), sort_keys=True)
    if saved.exists():
        theirs = json.dumps(json.loads(saved.read_text()), sort_keys=True)
        if theirs != mine:
            raise InputError(f"{out} holds a synthesis with another configuration "
                             f"({saved.name} differs); use a new --out folder")
    else:
        atomic_write_bytes(saved, (json.dumps(_cfg_dict(cfg), indent=1) + "\n").encode())
    manifest = out / MANIFEST
    done = {r["id"]: r for r in read_manifest(manifest, strict=False)} if manifest.exists() else {}
    done = {k: r for k, r in done.items() if int(r["index"]) < cfg.n}
    mine_i = range(cfg.n) if shard is None else range(shard[0], cfg.n, shard[1])
    todo = [i for i in mine_i if sample_id(i) not in done]
    return _run(out, todo, workers, cfg, cfg.depth, list(done.values()), progress)


def replay(manifest: str | Path, out: str | Path, workers: int = 1, progress: str = "bar",
           keep_clean: bool = False) -> list[dict]:
    """Regenerate every sample of a manifest into ``out`` (pixel-identical to the original)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such manifest file")
    rows = read_manifest(manifest)
    out = Path(out)
    if out.resolve() == manifest.parent.resolve():
        raise InputError(f"{out}: is the folder of the manifest being replayed; choose another")
    prepare_out(out)
    target = out / MANIFEST
    done = {r["id"] for r in read_manifest(target, strict=False)} if target.exists() else set()
    items = [dict(r, keep_clean=keep_clean) for r in rows if r["id"] not in done]
    kept = [r for r in rows if r["id"] in done]
    depth = rows[0].get("depth") if rows else None
    result = _run(out, items, workers, None, None if depth == "fallback" else depth, kept,
                  progress)
    for r in result:
        r.pop("keep_clean", None)
    _write_manifest(target, result)
    return result


def summary(rows: list[dict]) -> dict:
    """Counts per task, per operator and per severity, for the closing log line."""
    per_op: dict[str, int] = {}
    per_task: dict[str, int] = {}
    for r in rows:
        per_task[r["task"]] = per_task.get(r["task"], 0) + 1
        for o in r["ops"]:
            per_op[o["name"]] = per_op.get(o["name"], 0) + 1
    return {"samples": len(rows), "tasks": per_task, "ops": dict(sorted(per_op.items())),
            "clean": sum(not r["ops"] for r in rows)}


__all__ = ["SynthConfig", "describe", "plan", "render", "replay", "synthesize"]
