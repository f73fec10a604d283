"""What training and inference share: the wiring of tokenizer, text encoder and model
(:class:`Components`) and seeded generators. Weights on disk: :mod:`mmaif.model.storage`."""

from __future__ import annotations

import hashlib

import torch

from mmaif.model.dit import FusionDiT


def seeded_generator(*key: int) -> torch.Generator:
    h = hashlib.sha256(",".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & (2**63 - 1))


class Components:
    """Tokenizer, text encoder and model wiring shared by training and inference (the
    objectives in :mod:`mmaif.model.objectives` turn it into losses and images)."""

    def __init__(self, model: FusionDiT, tokenizer, text):
        self.model, self.tok, self.text = model, tokenizer, text

    @property
    def objective(self) -> str:
        """'flow' or 'reg': the model's own (its config is the one source of truth)."""
        return "flow" if self.model.cfg.flow else "reg"

    def condition(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tok.encode(a), self.tok.encode(b)], dim=1)
