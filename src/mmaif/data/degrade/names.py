"""Which degradations a free sentence names, and on which input: the inverse of
:func:`~mmaif.data.degrade.pipeline.compose_prompt`, made to read people's sentences too.

``named_degradations("remove the haze and the stripes, then fuse", "vif")`` ->
``{"a": ["stripes"], "b": ["haze"]}``. The sentence is split into clauses (commas, "and",
"then"); in each clause the target phrase is found first (the prompt bank's phrases for the
task, then plain words such as "infrared" or "dark exposure") and removed, then degradation
keywords are matched. A clause without a target phrase applies its degradations where the task
allows them (VIF haze: the visible image; a degradation either input may have: both). Types the
task never has are ignored (in MEF "over-exposed" names an input, not a degradation).
"""

from __future__ import annotations

import re
from functools import cache

from mmaif.data.degrade.pipeline import TASK_OPS, prompt_bank

# Degradation keywords (regular expressions on lower-case text). A clause may name several.
KEYWORDS: dict[str, str] = {
    "haze": r"\bhaz(?!e it brings)|\bfog|\bmist\b|dehaz|distant parts",
    "rain": r"\brain|derain",
    "snow": r"\bsnow|desnow|flakes?\b",
    "stripes": r"stripe|striping|column|banding|non-uniformity",
    "jpeg": r"jpeg|compression|deblock|blocking|ringing|blocky artefact|blocky artifact",
    "motion_blur": r"motion|shak|smear|movement",
    "downsample": r"resolution|upscal|super-?resol|pixelat|upsampl|downsampl|low-detail"
                  r"|detail lost in|details missing",
    "gaussian_blur": r"blur|sharpe[nr](?! the pixel)|defocus"
                     r"|crisp|sharp focus|sharp details",
    "noise": r"nois|grain|speckle",
    "low_exposure": r"brighten|under-?expos|dark areas|raise the exposure|shadows of|low light"
                    r"|low-light|boost the brightness|up to a normal exposure|less dark"
                    r"|proper exposure|open up the shadows|too dark",
    "high_exposure": r"darken|over-?expos|blown|lower the exposure|washed-out details"
                     r"|excessive brightness|down to a normal exposure|less bright|highlights of"
                     r"|glare|clipped highlights|too bright",
    "low_contrast": r"contrast|washed out|tonal range|punch|dull tones|stand out|faded",
}

# Plain words that name an input, after the bank's own phrases (checked first).
_ROLE_WORDS = {
    "vif": {"a": r"infrared|thermal|\bir\b", "b": r"visible|\brgb\b|colou?r image"},
    "mef": {"a": r"under-?exposed|dark exposure|short exposure",
            "b": r"over-?exposed|bright exposure|long exposure"},
    "mff": {"a": r"near|foreground|first", "b": r"far\b|background|second"},
}
_BOTH = r"\bboth\b|\btwo\b|\ball\b"
_FUSE = r"(?:fuse|merge|combine|blend|produce|join|create)\b"
_SPLIT = re.compile(r",|;|\.|\bthen\b|\band\s+(?=" + _FUSE + ")")
# within one clause, a more specific match hides a looser one ("motion blur" is not also a
# Gaussian blur, "column noise" is stripes, "the contrast that the haze took" is haze)
_HIDES = {"motion_blur": "gaussian_blur", "stripes": "noise", "haze": "low_contrast"}


@cache
def _target_phrases(task: str) -> list[tuple[str, str]]:
    """(phrase, role) of the prompt bank for ``task``, longest first."""
    pairs = [(p.lower(), role) for role, ps in prompt_bank()["targets"][task].items() for p in ps]
    return sorted(pairs, key=lambda x: -len(x[0]))


def _targets(clause: str, task: str | None) -> tuple[list[tuple[int, str]], str]:
    """[(position, role)] of the phrases naming an input in ``clause`` (the bank's phrases,
    then plain words), and the clause with those phrases blanked out."""
    found = []

    def take(pat: str, role: str) -> None:
        nonlocal clause
        for m in re.finditer(pat, clause):
            found.append((m.start(), role))
            clause = clause[:m.start()] + " " * (m.end() - m.start()) + clause[m.end():]

    for t in ([task] if task else list(_ROLE_WORDS)):
        for phrase, role in _target_phrases(t):
            take(re.escape(phrase), role)
    if task:
        for role, pat in _ROLE_WORDS[task].items():
            take(pat, role)
    take(_BOTH, "both")
    return sorted(found), clause


def named_degradations(prompt: str | None, task: str | None = None) -> dict[str, list[str]]:
    """The degradations ``prompt`` asks to fix, per input: ``{"a": [...], "b": [...]}`` (each
    list in physical order, no repeats). ``task`` (vif / mef / mff or None) decides the words
    for the inputs and where a degradation goes when the clause does not say. A degradation
    goes to the first input named after it in its clause ("remove the haze from the visible
    image"), else the last one named before it ("make the visible image noise-free"); a clause
    that names no input takes the next clause's ("denoise, then deblur the visible image"),
    else the previous one's ("sharpen the thermal image; it is noisy too")."""
    from mmaif.data.degrade.ops import OPS

    found: dict[str, set[str]] = {"a": set(), "b": set()}
    allowed = TASK_OPS.get(task) if task else None
    clauses = [_targets(c, task) for c in _SPLIT.split((prompt or "").lower()) if c.strip()]
    for i, (targets, rest) in enumerate(clauses):
        hits = {}
        for name, pat in KEYWORDS.items():
            m = re.search(pat, rest)
            if m and (allowed is None or name in allowed):
                hits[name] = m.end()
        for name in [h for k, h in _HIDES.items() if k in hits]:
            hits.pop(name, None)
        if hits and not targets and i + 1 < len(clauses):
            # "denoise, then deblur the visible image": the next clause's input, unless the
            # next clause is the fusion clause
            nxt_targets, nxt_rest = clauses[i + 1]
            if not re.match(r"\s*" + _FUSE, nxt_rest):
                targets = [(10**9, r) for _, r in nxt_targets[:1]]
        if hits and not targets and i > 0:  # "...the thermal image; it is noisy"
            targets = [(-1, r) for _, r in clauses[i - 1][0][-1:]]
        for name, end in hits.items():
            after = [r for p, r in targets if p >= end]
            before = [r for p, r in targets if p < end]
            where = after[0] if after else (before[-1] if before else None)
            opts = allowed[name] if allowed is not None else ("a", "b", "both")
            if where is None or (where not in opts and "both" not in opts):
                where = opts[0] if len(opts) == 1 else "both"
            for k in ("a", "b"):
                if where in (k, "both"):
                    found[k].add(name)
    return {k: sorted(v, key=lambda n: OPS[n].order) for k, v in found.items()}


def names_from_ops(ops: list[dict]) -> dict[str, list[str]]:
    """The same form from a manifest row's ``ops`` (the true degradations, for the oracle)."""
    return {k: [o["name"] for o in ops if o["target"] in (k, "both")] for k in ("a", "b")}
