"""``FusionPipeline``: load a trained model and fuse pairs of any size and colour.

    pipe = FusionPipeline.from_pretrained()                  # the default model shipped inside
    pipe = FusionPipeline.from_pretrained("runs/mmaif")      # a run folder or a saved pipeline
    fused = pipe("ir.png", "vi.png", prompt="remove the haze and fuse them")  # PIL image
    pipe.save_pretrained("my_model")                         # config.json + model.safetensors

Inputs may be paths, PIL images, numpy arrays ((H, W) or (H, W, C), uint8 or float in [0, 1])
or tensors ((C, H, W) in [0, 1]). The output has the inputs' size; it is gray when both inputs
are gray, RGB otherwise. Images above ``tile_threshold`` pixels are processed in overlapping
tiles aligned to the tokenizer x patch grid, blended with linear ramps, so memory stays bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from mmaif.data.degrade.pipeline import TASK_PROMPTS, default_prompt
from mmaif.data.images import atomic_write_bytes, read_image, to_gray, to_rgb, unit_pixels
from mmaif.data.pairs import STACK_ORDERS
from mmaif.errors import InputError
from mmaif.model.components import Components
from mmaif.model.dit import FusionDiT
from mmaif.model.objectives import make_objective
from mmaif.model.storage import load_weights
from mmaif.model.tokenizers import crop_to, make_tokenizer, pad_to_multiple

DEFAULT_MODEL = Path(__file__).parents[1] / "weights" / "default"



def as_array(x) -> np.ndarray:
    if isinstance(x, (str, Path)):
        return read_image(x).data
    from PIL import Image

    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("RGB") if x.mode not in ("L", "RGB") else x)
    if torch.is_tensor(x):
        t = x.detach().float().cpu()
        x = (t[0] if t.dim() == 3 and t.shape[0] == 1 else t.permute(1, 2, 0)).numpy() \
            if t.dim() == 3 else t.numpy()
    x = unit_pixels(np.asarray(x), "an input array")[0]  # the file reader's pixel rule
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim == 3 and x.shape[2] == 4:
        x = x[..., :3]
    if x.ndim not in (2, 3):
        raise InputError(f"expected an image of shape (H, W) or (H, W, 3), got {x.shape}")
    return x


def rgb_tensor(x: np.ndarray) -> torch.Tensor:
    x = to_rgb(x)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None] * 2 - 1


def _cut(cands: dict, box: tuple[int, int, int, int]) -> dict:
    """The candidates of one tile (``box`` = y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box

    def cut(x):
        return None if x is None else x[..., y0:y1, x0:x1]
    return {**cands, "fixes": None if cands["fixes"] is None else [cut(x) for x in cands["fixes"]],
            "teacher": cut(cands["teacher"])}


# tiled inference (CLI --tile / --overlap): images over TILE_THRESHOLD pixels are fused in
# overlapping tiles of at most TILE pixels (:func:`tile_spans`)
TILE, OVERLAP, TILE_THRESHOLD = 512, 64, 1024 * 1024


def _cand_tensors(arrays: dict, box: tuple[int, int, int, int]) -> dict:
    """Candidate arrays (:meth:`FusionPipeline._candidate_arrays`) of one tile as tensors."""
    y0, y1, x0, x1 = box

    def cut(x):
        return None if x is None else rgb_tensor(x[y0:y1, x0:x1])
    return {"fixes": [cut(x) for x in arrays["fixes"]], "teacher": cut(arrays["teacher"]),
            "teacher_on": torch.tensor([float(arrays["teacher_on"])])}


def tile_spans(n: int, tile: int, overlap: int, m: int = 1) -> list[tuple[int, int]]:
    """[(start, end), ...] covering 0..n with the fewest tiles of at most ``tile`` pixels that
    overlap by at least ``overlap``, all of one size (a multiple of ``m`` where it fits) and
    evenly spaced: the work is n * (1 + overlap / stride) pixels, not rounded up to whole
    strides of ``tile``."""
    if n <= tile:
        return [(0, n)]
    k = -(-(n - overlap) // (tile - overlap))                      # tiles needed
    size = -(-(n - overlap) // k) + overlap + 1                    # +1: integer starts
    size = min(tile, -(-size // m) * m, n)
    return [((i * (n - size)) // (k - 1), (i * (n - size)) // (k - 1) + size) for i in range(k)]


def _ramp(n: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    w = torch.ones(n)
    if overlap > 0:
        r = (torch.arange(overlap) + 0.5) / overlap
        if not first:
            w[:overlap] = r
        if not last:
            w[-overlap:] = r.flip(0)
    return w


def _copy_into(spec: str, folder: Path, sub: str) -> str:
    """'kind:SOURCE_FOLDER' -> copy SOURCE_FOLDER to folder/sub and return 'kind:sub' (a path
    relative to the pipeline folder); specs without a folder are returned as they are."""
    import shutil

    kind, _, src = spec.partition(":")
    if not src:
        return spec
    src_path, dst = Path(src), folder / sub
    if src_path.resolve() != dst.resolve():
        tmp = folder / f".{sub}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src_path, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    return f"{kind}:{sub}"


def _inside(spec: str, folder: Path) -> str:
    """Resolve a folder reference relative to the pipeline folder it was saved in."""
    kind, _, src = spec.partition(":")
    if not src or Path(src).is_absolute():
        return spec
    return f"{kind}:{folder / src}"


AUTO = "auto"  # the prompt that asks the detector what to fix


class FusionPipeline:
    """Tokenizer + text encoder + model. ``objective`` is the model's own (``cfg.flow``): the
    argument, kept for old call sites, must agree with it."""

    def __init__(self, model: FusionDiT, tokenizer: str = "pixel", text: str = "minilm",
                 objective: str | None = None, device: str | torch.device | None = None,
                 latent_stats: dict | None = None, prompt_cache: dict | None = None):
        from mmaif.model.text import LazyTextEncoder

        own = "flow" if model.cfg.flow else "reg"
        if objective not in (None, own):
            raise InputError(f"objective {objective!r} disagrees with the model, which is a "
                             f"{own} model")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.spec = {"tokenizer": tokenizer, "text": text}
        self.training: dict | None = None  # the training config, kept by save_pretrained
        # what is wrong with each input (prompt="auto"); from the folder's detector/ if any
        self.detector = None
        tok = make_tokenizer(tokenizer, self.device)
        if latent_stats:  # saved with the pipeline: independent of the tokenizer folder
            tok.set_stats(torch.tensor(latent_stats["mean"]), torch.tensor(latent_stats["std"]))
        # loaded on the first prompt the folder did not bring encoded (prompt_cache)
        enc = LazyTextEncoder(text, self.device, prompt_cache)
        self.model = model.eval()
        self.net = self.model  # what runs: the model, or its torch.compile'd wrapper
        self.c = Components(self.model, tok, enc)
        self.obj = make_objective(self.c)
        self.to(self.device)

    @property
    def objective(self) -> str:
        return self.c.objective

    def to(self, device: str | torch.device) -> FusionPipeline:
        """Put every parameter and buffer (model, tokenizer, text encoder) on ``device``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.c.tok.to(self.device)
        self.c.text.to(self.device)
        return self

    def compile(self, **kwargs) -> FusionPipeline:
        """Run the model through ``torch.compile`` (first call compiles: slow once)."""
        self.net = torch.compile(self.model, **kwargs)
        return self

    # -------------------------------------------------------------------- persistence
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None,
                        device: str | torch.device | None = None) -> FusionPipeline:
        """A saved pipeline folder (config.json + model.safetensors), a training run folder
        / checkpoint (EMA weights of the latest checkpoint), or, with no argument, the default
        model shipped inside the package (:data:`DEFAULT_MODEL`)."""
        if path is None:
            if not (DEFAULT_MODEL / "model.safetensors").is_file():
                raise InputError(f"the default model is missing from this installation "
                                 f"({DEFAULT_MODEL}); reinstall mmaif or pass a model folder")
            path = DEFAULT_MODEL
        path = Path(path)
        w = load_weights(path)  # a saved pipeline, a run or a checkpoint; one-line errors
        model, training = w.build(), w.meta.get("training")
        if "checkpoint" in w.meta:  # a run: its training config names tokenizer and text
            spec = {"tokenizer": training["tokenizer"], "text": training["text"]}
        else:
            spec = w.meta.get("pipeline", {})
            spec = {**spec, **{k: _inside(spec[k], path) for k in ("tokenizer", "text")
                               if k in spec}}
        from mmaif.model.text import PROMPT_CACHE, load_prompt_cache

        cache = load_prompt_cache(path / PROMPT_CACHE) if (path / "model.safetensors").is_file() \
            else None
        pipe = cls(model, spec.get("tokenizer", "pixel"), spec.get("text", "minilm"),
                   spec.get("objective"), device, spec.get("latent_stats"), cache)
        pipe.training = training
        if (path / "detector").is_dir():
            from mmaif.model.detector import load_detector

            pipe.detector = load_detector(path / "detector")
        return pipe

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """config.json + model.safetensors + prompt_embeddings.safetensors (the task prompts
        and the empty prompt, encoded) (+ a short README.md unless the folder already holds
        one, e.g. a model card). Self-contained: a tokenizer or text encoder loaded from a
        folder is copied into ``tokenizer/`` / ``text_encoder/`` and the latent statistics go
        into config.json, so the folder can be moved or shared as it is. ``dtype``
        (e.g. ``torch.bfloat16``) stores the weights at that precision; they load as
        float32."""
        from mmaif.model.storage import save_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"tokenizer": _copy_into(self.spec["tokenizer"], folder, "tokenizer"),
                "text": _copy_into(self.spec["text"], folder, "text_encoder")}
        if spec["tokenizer"] != "pixel":
            tok = self.c.tok
            spec["latent_stats"] = {"mean": tok.mean.flatten().tolist(),
                                    "std": tok.std.flatten().tolist()}
        extra = {"pipeline": spec}
        if self.training:
            extra["training"] = self.training
        save_model(self.model, folder, extra=extra, dtype=dtype)
        if self.detector is not None:
            from mmaif.model.detector import save_detector

            save_detector(self.detector, folder / "detector")
        from mmaif.model.text import PROMPT_CACHE, save_prompt_cache

        # the prompts used without --prompt, encoded: fusing with them needs no text encoder
        save_prompt_cache(self.c.text, [*TASK_PROMPTS.values(), ""], folder / PROMPT_CACHE)
        if (folder / "README.md").exists():
            return folder
        atomic_write_bytes(folder / "README.md", (
            "# mmaif fusion model\n\nLoad with `mmaif.FusionPipeline.from_pretrained"
            f"('{folder.name}')`.\nTokenizer: {spec['tokenizer']}, text encoder: "
            f"{spec['text']}, objective: {self.objective}.\n").encode())
        return folder

    # ----------------------------------------------------------------------- fusion
    @property
    def uses_candidates(self) -> bool:
        """Whether the model's head gates classical candidates (fixes, the teacher's fusion)."""
        return self.model.cfg.fix_gates or self.model.cfg.teacher_gate

    def candidates(self, a: np.ndarray, b: np.ndarray, prompt: str | None,
                   task: str | None) -> dict[str, torch.Tensor] | None:
        """The classical candidates this model reads, for arrays in [0, 1]: the fixes of the
        degradations ``prompt`` names (:func:`~mmaif.data.degrade.names.named_degradations`)
        and the task's teacher on them (GFF when the task is unknown), as (1, 3, H, W) tensors
        in [-1, 1], and whether the teacher gate is open (``teacher_on``, (1,); a
        ``teacher_named`` model runs no teacher when nothing is named:
        :func:`~mmaif.classical.restore.head_candidates`); None for a model without gates."""
        arrays = self._candidate_arrays(a, b, prompt, task)
        return None if arrays is None else _cand_tensors(arrays, (0, a.shape[0], 0, a.shape[1]))

    def _candidate_arrays(self, a: np.ndarray, b: np.ndarray, prompt: str | None,
                          task: str | None) -> dict | None:
        """:meth:`candidates` as arrays in [0, 1] (cut into tiles before they become tensors)."""
        if not self.uses_candidates:
            return None
        from mmaif.classical.restore import head_candidates
        from mmaif.data.degrade.names import named_degradations
        from mmaif.synthesis.teachers import DEFAULT_TEACHERS

        cfg = self.model.cfg
        fa, fb, ts, on = head_candidates(a, b, named_degradations(prompt, task),
                                         DEFAULT_TEACHERS.get(task, "gff")
                                         if cfg.teacher_gate else None, cfg.teacher_named)
        return {"fixes": [fa, fb], "teacher": ts, "teacher_on": on}

    @torch.no_grad()
    def _run(self, a: torch.Tensor, b: torch.Tensor, pooled: torch.Tensor, steps: int,
             sampler: str, shift: float, seed: int, init: torch.Tensor | None = None,
             t0: float = 1.0, cands: dict | None = None) -> torch.Tensor:
        m = self.c.tok.f * self.model.cfg.patch
        a, size = pad_to_multiple(a.to(self.device), m)
        b, _ = pad_to_multiple(b.to(self.device), m)
        if cands is not None:
            def pad(x):
                return None if x is None else pad_to_multiple(x.to(self.device), m)[0]
            on = cands.get("teacher_on")
            cands = {"fixes": [pad(x) for x in cands["fixes"]], "teacher": pad(cands["teacher"]),
                     "teacher_on": None if on is None else on.to(self.device)}
        # bf16 autocast on CUDA (the tokenizers decode in float); fp32 elsewhere
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            if self.objective == "flow":
                start = None
                if init is not None:  # SDEdit-style refinement of a given (regression) output
                    start = self.c.tok.encode(pad_to_multiple(init.to(self.device), m)[0])
                out = self.obj.sample(self.net, a, b, pooled, steps, sampler, shift, seed,
                                      start=start, t0=t0 if init is not None else 1.0)
            else:
                out = self.obj.predict(self.net, a, b, pooled, cands)[0]
        return crop_to(out, size).float().cpu()

    def fuse_tensors(self, a: torch.Tensor, b: torch.Tensor, prompt: str, steps: int = 8,
                     sampler: str = "euler", shift: float = 1.0, seed: int = 0,
                     tile: int = TILE, overlap: int = OVERLAP,
                     tile_threshold: int = TILE_THRESHOLD,
                     init: torch.Tensor | None = None, t0: float = 0.5,
                     cands: dict | None = None, progress: bool = True) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> fused (1, 3, H, W) in [-1, 1], tiled when large.
        ``cands``: the classical candidates of the whole images (:meth:`candidates`), for a
        model whose head gates them. ``progress``: a tile progress bar on stderr when tiling
        takes more than 2 s."""
        def source(box):
            y0, y1, x0, x1 = box
            return (a[..., y0:y1, x0:x1], b[..., y0:y1, x0:x1],
                    None if init is None else init[..., y0:y1, x0:x1],
                    None if cands is None else _cut(cands, box))

        return self._tiled(a.shape[-2:], source, prompt, steps, sampler, shift, seed, tile,
                           overlap, tile_threshold, t0, progress)

    def _tiled(self, size: tuple[int, int], source, prompt: str, steps: int, sampler: str,
               shift: float, seed: int, tile: int, overlap: int, tile_threshold: int,
               t0: float, progress: bool) -> torch.Tensor:
        """The fusion of an (H, W) image whose tiles ``source(box)`` gives as (a, b, init,
        candidates) tensors: one run when H * W <= ``tile_threshold``, else overlapping tiles
        blended with linear ramps. Tiles are cut (and converted) one at a time, so memory
        beyond the output is one tile's; the ramps' sum over the tile grid is separable."""
        pooled = self.c.text.encode([prompt])[2].to(self.device)
        h, w = size
        if h * w <= tile_threshold:
            a, b, init, cands = source((0, h, 0, w))
            return self._run(a, b, pooled, steps, sampler, shift, seed, init, t0, cands)
        m = self.c.tok.f * self.model.cfg.patch
        tile = max(m, tile // m * m)
        overlap = min(max(0, overlap // m * m), tile // 2)
        ys, xs = tile_spans(h, tile, overlap, m), tile_spans(w, tile, overlap, m)
        ramps_y = [_ramp(y1 - y0, overlap, y0 == 0, y1 == h) for y0, y1 in ys]
        ramps_x = [_ramp(x1 - x0, overlap, x0 == 0, x1 == w) for x0, x1 in xs]
        sum_y, sum_x = torch.zeros(h), torch.zeros(w)
        for (y0, y1), r in zip(ys, ramps_y, strict=True):
            sum_y[y0:y1] += r
        for (x0, x1), r in zip(xs, ramps_x, strict=True):
            sum_x[x0:x1] += r
        out = torch.zeros(1, 3, h, w)
        import sys

        from tqdm import tqdm

        # shown on stderr only when the tiles take more than 2 s (tqdm's delay)
        with tqdm(total=len(ys) * len(xs), desc=f"fuse {w}x{h}", unit="tile", delay=2,
                  file=sys.stderr, disable=not progress, leave=False) as bar:
            for (y0, y1), wy in zip(ys, ramps_y, strict=True):
                for (x0, x1), wx in zip(xs, ramps_x, strict=True):
                    a, b, init, cands = source((y0, y1, x0, x1))
                    pred = self._run(a, b, pooled, steps, sampler, shift, seed, init, t0,
                                     cands)
                    out[..., y0:y1, x0:x1] += pred * (wy[:, None] * wx[None, :])
                    bar.update(1)
        return out.div_(sum_y[:, None] * sum_x[None, :])

    def detect(self, a, b, task: str | None = None) -> tuple[str, dict, str]:
        """(task, the degradations found per input ("a", "b": lists of
        :class:`~mmaif.model.detector.Detection`), the prompt they call for): what
        ``prompt="auto"`` fuses with. Needs a detector (a ``detector/`` folder beside the
        weights, or ``pipe.detector = load_detector(RUN)``)."""
        if self.detector is None:
            raise InputError("this model has no degradation detector (no detector/ folder); "
                             "give a prompt, or train one with `mmaif train-detector` and set "
                             "pipe.detector = mmaif.model.detector.load_detector(RUN)")
        from mmaif.model.detector import detections_prompt

        xa, xb = as_array(a), as_array(b)
        if task is None:
            from mmaif.data.pairs import guess_task

            task = guess_task(xa, xb)[0]
        found = self.detector.detect(xa, xb, task)
        return task, found, detections_prompt(task, found)

    def fuse_stack(self, images, prompt: str | None = None, task: str | None = None,
                   order: str = "tree", output: str = "pil", progress: bool = True,
                   **kwargs):
        """Fuse a stack of N >= 2 registered images (an exposure bracket, a focus stack) with
        the pair model in N - 1 pair fusions (``order``: :data:`STACK_ORDERS`). Exposure shots
        are sorted darkest first (the pair roles: a under-, b over-exposed); focus slices keep
        the given order (nearest first). Every pair fusion takes ``prompt`` (``"auto"``:
        detected for that pair), ``task`` (guessed once, from the darkest and brightest
        image) and ``kwargs`` as :meth:`__call__`; intermediate results stay in float. Two
        images give exactly the pair path ``self(a, b, ...)``. Returns what ``output`` asks
        (``'pil'`` or ``'numpy'``), at the inputs' size."""
        if order not in STACK_ORDERS:
            raise InputError(f"order={order!r}; use one of {STACK_ORDERS}")
        xs = [as_array(x) for x in images]
        if len(xs) < 2:
            raise InputError(f"a stack needs two or more images, got {len(xs)}")
        bad = [k for k, x in enumerate(xs) if x.shape[:2] != xs[0].shape[:2]]
        if bad:
            k = bad[0]
            raise InputError(f"image sizes differ: image 1 is {xs[0].shape[1]}x{xs[0].shape[0]}, "
                             f"image {k + 1} is {xs[k].shape[1]}x{xs[k].shape[0]}")
        if task is None:
            from mmaif.data.pairs import guess_stack_task

            task = guess_stack_task(xs)[0]
        if task == "vif" and len(xs) > 2:
            raise InputError(f"{len(xs)} images given: VIF fuses two (infrared, visible); "
                             "stacks of three or more are MEF or MFF")
        if task == "mef":
            xs = sorted(xs, key=lambda x: float(x.mean()))
        from tqdm import tqdm

        bar = tqdm(total=len(xs) - 1, desc=f"fuse {len(xs)} images", unit="pair", delay=2,
                   file=sys.stderr, disable=not progress, leave=False)

        def pair(x, y, last):
            out = self(x, y, prompt, task, output=output if last else "numpy",
                       progress=progress, **kwargs)
            bar.update(1)
            return out

        with bar:
            if order == "chain":
                out = xs[0]
                for k, x in enumerate(xs[1:], 2):
                    out = pair(out, x, k == len(xs))
                return out
            level = xs
            while len(level) > 1:
                last = len(level) == 2
                level = [pair(level[i], level[i + 1], last) for i in range(0, len(level) - 1, 2)] \
                    + level[len(level) - len(level) % 2:]
            return level[0]

    def __call__(self, a, b=None, prompt: str | None = None, task: str | None = None,
                 steps: int = 8, sampler: str = "euler", shift: float = 1.0, seed: int = 0,
                 output: str = "pil", refine=None, t0: float = 0.5, **tiling):
        """Fuse ``a`` and ``b`` (roles as in the CLI). Returns a PIL image (``output='pil'``) or
        a float array in [0, 1] (``output='numpy'``) of the inputs' size. Lists of inputs (and
        prompts) give lists of outputs; one list and no ``b`` is a stack of N images
        (``pipe([s1, s2, s3], task="mef")``: :meth:`fuse_stack`). ``prompt="auto"`` fuses
        with the prompt the degradations the detector finds call for (:meth:`detect`).
        ``task=None`` guesses it from the pixels (:func:`mmaif.data.pairs.guess_task`); it
        picks the default prompt, the words that name the inputs in a prompt and, for a model
        with a teacher gate, the teacher. For flow models, ``refine`` (an image, e.g. a
        regression model's output) starts the flow from that image at time ``t0``."""
        if b is None:
            if not isinstance(a, (list, tuple)):
                raise InputError("give two images (a, b), or one list of N >= 2 images (a stack)")
            if refine is not None:
                raise InputError("refine applies to a pair; fuse the stack, then refine pairs")
            return self.fuse_stack(a, prompt, task, output=output, steps=steps, sampler=sampler,
                                   shift=shift, seed=seed, **tiling)
        if isinstance(a, (list, tuple)):
            prompts = prompt if isinstance(prompt, (list, tuple)) else [prompt] * len(a)
            return [self(x, y, p, task, steps, sampler, shift, seed, output, refine, t0,
                         **tiling) for x, y, p in zip(a, b, prompts, strict=True)]
        xa, xb = as_array(a), as_array(b)
        if xa.shape[:2] != xb.shape[:2]:
            raise InputError(f"image sizes differ: {xa.shape[1]}x{xa.shape[0]} vs "
                             f"{xb.shape[1]}x{xb.shape[0]}")
        if task is None:  # the one guessing rule of the CLI and the server (pixels here)
            from mmaif.data.pairs import guess_task

            task = guess_task(xa, xb)[0]
        if prompt == AUTO:  # what the detector finds, in words
            prompt = self.detect(xa, xb, task)[2]
        prompt = default_prompt(task) if prompt is None else prompt  # "" stays empty
        ref = None if refine is None else as_array(refine)
        cands = self._candidate_arrays(xa, xb, prompt, task)

        def source(box):  # the arrays become tensors one tile at a time
            y0, y1, x0, x1 = box
            return (rgb_tensor(xa[y0:y1, x0:x1]), rgb_tensor(xb[y0:y1, x0:x1]),
                    None if ref is None else rgb_tensor(ref[y0:y1, x0:x1]),
                    None if cands is None else _cand_tensors(cands, box))

        tiling = {"tile": TILE, "overlap": OVERLAP, "tile_threshold": TILE_THRESHOLD,
                  "progress": True, **tiling}
        fused = self._tiled(xa.shape[:2], source, prompt, steps, sampler, shift, seed,
                            t0=t0, **tiling)[0]
        fused.clamp_(-1, 1).add_(1).mul_(0.5)  # in place: a 24 MP output is 288 MB
        if xa.ndim == 2 and xb.ndim == 2:  # gray + gray -> gray (luma, in float64)
            img = to_gray(fused.permute(1, 2, 0).numpy().astype(np.float64)).astype(np.float32)
            fused = torch.from_numpy(img)[None]
        if output == "numpy":
            img = fused.permute(1, 2, 0).numpy()
            return img[..., 0] if img.shape[-1] == 1 else img
        from PIL import Image

        px = np.ascontiguousarray(fused.mul_(255).round_().to(torch.uint8).permute(1, 2, 0))
        return Image.fromarray(px[..., 0] if px.shape[-1] == 1 else px)
