"""Task-specific sampling of compound degradations, their application, and prompts.

Which image an operator may touch follows the task (roles: VIF a = infrared, b = visible;
MEF a = under, b = over; MFF a = near, b = far). Weather and low light belong to the visible
image in VIF, stripes to the infrared one; in MEF and MFF the scene is shared, so weather
applies to both shots. A sample draws 1 to 3 compatible operators (at most one exposure
change), orders them physically (``Op.order``), and records everything needed to redo it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

from mmaif.data.degrade.ops import OPS, SEVERITIES, apply_op

A, B, BOTH = ("a",), ("b",), ("both",)
ANY = ("a", "b", "both")
_GENERAL = {"gaussian_blur": ANY, "motion_blur": ANY, "downsample": ANY, "noise": ANY,
            "jpeg": ANY}
TASK_OPS: dict[str, dict[str, tuple[str, ...]]] = {
    "vif": {**_GENERAL, "rain": B, "haze": B, "snow": B, "low_exposure": B,
            "low_contrast": ("a", "b"), "stripes": A},
    "mef": {**_GENERAL, "rain": BOTH, "haze": BOTH, "snow": BOTH, "low_contrast": ANY},
    "mff": {**_GENERAL, "rain": BOTH, "haze": BOTH, "snow": BOTH, "low_exposure": ANY,
            "high_exposure": ANY},
}
_EXCLUSIVE = ({"low_exposure", "high_exposure"},)
DEFAULT_COUNTS = {1: 0.4, 2: 0.4, 3: 0.2}


@cache
def prompt_bank() -> dict:
    """The prompt templates (package data ``prompts.yaml``), loaded on first use."""
    import yaml

    text = resources.files("mmaif.data.degrade").joinpath("prompts.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def sample_ops(task: str, rng: np.random.Generator, counts: dict[int, float] | None = None,
               severities: tuple[str, ...] = SEVERITIES, clean_prob: float = 0.0) -> list[dict]:
    """Draw a compound degradation for ``task``: a list of records
    ``{name, target, severity, params, seed}`` in physical order (empty = clean sample)."""
    if rng.random() < clean_prob:
        return []
    counts = counts or DEFAULT_COUNTS
    ks, ps = zip(*sorted(counts.items()), strict=True)
    n = int(rng.choice(ks, p=np.asarray(ps) / sum(ps)))
    allowed = TASK_OPS[task]
    names: list[str] = []
    pool = sorted(allowed)
    while len(names) < n and pool:
        name = pool[int(rng.integers(len(pool)))]
        names.append(name)
        pool = [p for p in pool if p != name
                and not any(name in ex and p in ex for ex in _EXCLUSIVE)]
    records = []
    for name in sorted(names, key=lambda nm: OPS[nm].order):
        severity = severities[int(rng.integers(len(severities)))]
        targets = allowed[name]
        records.append({"name": name, "target": targets[int(rng.integers(len(targets)))],
                        "severity": severity, "params": OPS[name].sample(rng, severity),
                        "seed": int(rng.integers(2**31 - 1))})
    return records


def apply_ops(a: np.ndarray, b: np.ndarray, records: list[dict],
              depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply recorded degradations to the pair; each target image gets its own rng stream
    (seeded by the record's seed and 0 for a, 1 for b), so 'both' means the same operator and
    parameters with independent randomness (noise, streak positions) per shot."""
    imgs = {"a": a, "b": b}
    for rec in records:
        for k, key in enumerate(("a", "b")):
            if rec["target"] in (key, "both"):
                rng = np.random.default_rng([rec["seed"], k])
                imgs[key] = apply_op(rec["name"], imgs[key], rec["params"], rng, depth)
    return imgs["a"], imgs["b"]


def compose_prompt(task: str, records: list[dict], rng: np.random.Generator | None) -> str:
    """One natural sentence: a clause per degradation, then the task's fusion clause, e.g.
    "Clear the haze from the visible image, suppress the stripes in the infrared image, and
    fuse them." Clean samples get a task-only instruction. Phrasings are drawn with ``rng``;
    without one, each is the bank's first (the same sentence every time)."""
    bank = prompt_bank()

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options))) if rng is not None else 0]

    if not records:
        return pick(bank["clean"][task])
    clauses = [pick(bank["degradations"][r["name"]]).replace(
        "{t}", pick(bank["targets"][task][r["target"]])) for r in records]
    fusion = pick(bank["fusion"][task])
    if fusion.startswith("and ") and len(clauses) == 1:
        text = clauses[0] + " " + fusion
    elif fusion.startswith(("then ", "and ")):
        text = ", ".join(clauses) + ", " + fusion
    else:
        text = ", ".join(clauses) + (", and " if len(clauses) > 1 else " and ") + fusion
    return text[0].upper() + text[1:] + "."


TASK_PROMPTS = {"vif": "Fuse the infrared and visible images.",
                "mef": "Fuse the exposures into one well-exposed image.",
                "mff": "Fuse the images into an all-in-focus image.",
                None: "Fuse them."}


def default_prompt(task: str | None) -> str:
    """The prompt used when none is given (``mmaif fuse`` without ``--prompt``)."""
    return TASK_PROMPTS.get(task, TASK_PROMPTS[None])


def describe(records: list[dict]) -> str:
    """Short human summary, e.g. 'haze(b, heavy) + noise(a, slight)'."""
    return " + ".join(f"{r['name']}({r['target']}, {r['severity']})" for r in records) or "clean"
