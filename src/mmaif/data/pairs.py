"""Finding source pairs in the folder layouts of the common fusion datasets.

Roles: ``a`` / ``b`` are VIF a = infrared, b = visible; MEF a = under-, b = over-exposed; MFF
a = near-, b = far-focused. Recognised layouts (folder names are matched case-insensitively):

=================  ==========================================  =====
layout             a / b                                       task
=================  ==========================================  =====
fusion-samples     vif/{ir,vi}, mef/{under,over}, mff/{near,far}  all
MSRS, M3FD, TNO    ir/ , vi/                                   vif
LLVIP              infrared/ , visible/ (train/ test/ inside)  vif
RoadScene          cropinfrared/ , crop_HR_visible/            vif
SICE               ue/ , oe/   or   under/ , over/              mef
MEFB               <scene>/<scene>_A.* , <scene>/<scene>_B.*   mef
Lytro              <name>-A.* , <name>-B.* in one folder       mff
MFI-WHU            source_1/ , source_2/                       mff
RealMFF            imageA/ , imageB/                           mff
generic            A/ , B/                                     (--task)
=================  ==========================================  =====

Files pair by name stem (extension ignored). Stacks (:func:`discover_stacks`: exposure
brackets, focus stacks of two or more shots) are one folder per stack, its images in name
order, under ``mef/`` and ``mff/`` (what ``mmaif stacks --shots N`` writes) or directly under
the root (task from ``--task``). For MEFB, which of _A/_B is darker varies, so
``a`` is the darker image (by mean brightness, read at discovery time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mmaif.data.images import list_images
from mmaif.errors import InputError

TASKS = ("vif", "mef", "mff")
# what inputs a and b are in each task, in words
ROLE_NAMES = {"vif": {"a": "infrared", "b": "visible"},
              "mef": {"a": "under-exposed", "b": "over-exposed"},
              "mff": {"a": "near focus", "b": "far focus"}}

# (a folder names, b folder names, task, layout label)
DIR_LAYOUTS: list[tuple[tuple[str, ...], tuple[str, ...], str | None, str]] = [
    (("ir",), ("vi",), "vif", "MSRS/M3FD/TNO (ir/, vi/)"),
    (("infrared",), ("visible",), "vif", "LLVIP (infrared/, visible/)"),
    (("cropinfrared",), ("crop_hr_visible", "crop_lr_visible"), "vif", "RoadScene"),
    (("ue",), ("oe",), "mef", "SICE (ue/, oe/)"),
    (("under",), ("over",), "mef", "SICE (under/, over/)"),
    (("near",), ("far",), "mff", "near/, far/"),
    (("source_1",), ("source_2",), "mff", "MFI-WHU (source_1/, source_2/)"),
    (("imagea",), ("imageb",), "mff", "RealMFF (imageA/, imageB/)"),
    (("a",), ("b",), None, "generic (A/, B/)"),
]
SAMPLES_TASK_DIRS = {"vif": ("ir", "vi"), "mef": ("under", "over"), "mff": ("near", "far")}


@dataclass(frozen=True)
class Pair:
    """One registered pair: ``name`` is unique within a dataset (used for output names)."""

    name: str
    a: Path
    b: Path
    task: str | None = None


def _subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    if not root.is_dir():
        return None
    wanted = {n.lower() for n in names}
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower() in wanted:
            return p
    return None


def pair_folders(dir_a: Path, dir_b: Path, task: str | None, prefix: str = "") -> list[Pair]:
    """Pair the images of two folders by file stem; error on names without a partner."""
    subs_a = {p.name for p in dir_a.iterdir() if p.is_dir()}
    subs_b = {p.name for p in dir_b.iterdir() if p.is_dir()}
    pairs: list[Pair] = []
    for split in sorted(subs_a & subs_b):  # e.g. LLVIP's train/ and test/
        pairs += pair_folders(dir_a / split, dir_b / split, task, f"{prefix}{split}/")
    fa = {p.stem.lower(): p for p in list_images(dir_a)}
    fb = {p.stem.lower(): p for p in list_images(dir_b)}
    only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
    if only_a or only_b:
        side, names, other = (dir_a, only_a, dir_b) if only_a else (dir_b, only_b, dir_a)
        shown = ", ".join(fa[n].name if n in fa else fb[n].name for n in names[:3])
        raise InputError(f"{len(names)} image(s) in {side} have no partner of the same name in "
                         f"{other} (e.g. {shown}); remove them or fix the names")
    pairs += [Pair(prefix + fa[k].stem, fa[k], fb[k], task) for k in sorted(fa)]
    return pairs


def _suffix_pairs(files: list[Path], pattern: str, task: str, prefix: str = "") -> list[Pair]:
    """Pair files named <stem><sep>A / <stem><sep>B (Lytro '-A'/'-B', MEFB '_A'/'_B')."""
    rx = re.compile(pattern, re.IGNORECASE)
    groups: dict[str, dict[str, Path]] = {}
    for f in files:
        m = rx.fullmatch(f.stem)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2).upper()] = f
    bad = sorted(k for k, g in groups.items() if len(g) != 2)
    if bad:
        raise InputError(f"{len(bad)} image(s) have no A/B partner (e.g. {bad[0]}); "
                         "each name needs both an A and a B file")
    return [Pair(prefix + k, g["A"], g["B"], task) for k, g in sorted(groups.items())]


def _darker_first(pair: Pair) -> Pair:
    from mmaif.data.images import read_image

    if read_image(pair.a).data.mean() <= read_image(pair.b).data.mean():
        return pair
    return Pair(pair.name, pair.b, pair.a, pair.task)


def discover_pairs(root: str | Path, task: str | None = None) -> tuple[str, list[Pair]]:
    """Find the pairs under a dataset root. Returns (layout description, pairs).

    ``task`` restricts a multi-task layout (fusion-samples) or labels a generic one.
    """
    root = Path(root)
    if not root.is_dir():
        what = "no such folder" if not root.exists() else "not a folder"
        raise InputError(f"{root}: {what}; expected a dataset root (see the layouts in "
                         "`mmaif fuse --help`)")
    pairs = []
    for t, names in SAMPLES_TASK_DIRS.items():
        d = _subdir(root, (t,))
        if d is None or (task and t != task):
            continue
        da, db = _subdir(d, names[:1]), _subdir(d, names[1:])
        if da and db:
            pairs += pair_folders(da, db, t, prefix=f"{t}/")
    if pairs:
        return "fusion-samples (vif/ mef/ mff/)", pairs
    for names_a, names_b, t, label in DIR_LAYOUTS:
        da, db = _subdir(root, names_a), _subdir(root, names_b)
        if da and db:
            return label, pair_folders(da, db, task or t)
    files = list_images(root)
    lytro = [f for f in files if re.fullmatch(r".+-[AB]", f.stem, re.IGNORECASE)]
    if lytro:
        return "Lytro (<name>-A, <name>-B)", _suffix_pairs(lytro, r"(.+)-([AB])", task or "mff")
    scenes = [d for d in sorted(root.iterdir()) if d.is_dir()]
    mefb = []
    for d in scenes:
        imgs = [f for f in list_images(d) if re.fullmatch(r".+_[AB]", f.stem, re.IGNORECASE)]
        if imgs:
            mefb += _suffix_pairs(imgs, r"(.+)_([AB])", task or "mef")
    if mefb:
        return "MEFB (<scene>/<scene>_A, _B)", [_darker_first(p) for p in mefb]
    known = "ir/+vi/, infrared/+visible/, ue/+oe/, under/+over/, source_1/+source_2/, " \
            "imageA/+imageB/, A/+B/, <name>-A/-B files, <scene>/<scene>_A/_B"
    raise InputError(f"{root}: no known dataset layout found (looked for {known}); "
                     f"see `mmaif fuse --help`")


@dataclass(frozen=True)
class Stack:
    """One registered stack (an exposure bracket, a focus stack): its images in name order."""

    name: str
    files: tuple[Path, ...]
    task: str | None = None


STACK_TASKS = ("mef", "mff")
MAX_SHOTS = 9  # the most images a stack may have (CLI, server, mmaif stacks)
# how a pair model fuses a stack of N images (FusionPipeline.fuse_stack): "tree" fuses
# neighbours level by level (s1+s2, s3+s4, ...), "chain" a running result with the next
# image; N - 1 pair fusions either way
STACK_ORDERS = ("tree", "chain")


def _natural(p: Path) -> list:
    """Sort key: digits compare as numbers (shot_2 before shot_10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def discover_stacks(root: str | Path, task: str | None = None) -> tuple[str, list[Stack]]:
    """Find the stacks under a dataset root: one folder of two or more images per stack,
    under ``mef/`` and ``mff/`` (``task`` picks one) or directly under the root (labelled
    ``task``). Images sort by name, numbers as numbers. Returns (layout description, stacks)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; expected a folder of stack folders")
    if task == "vif":
        raise InputError("stacks are exposure brackets or focus stacks (--task mef|mff); VIF "
                         "fuses pairs")

    def stacks_in(folder: Path, t: str | None, prefix: str = "") -> list[Stack]:
        found = []
        for d in sorted((d for d in folder.iterdir() if d.is_dir()), key=_natural):
            files = sorted(list_images(d), key=_natural)
            if len(files) >= 2:
                found.append(Stack(prefix + d.name, tuple(files), t))
        return found

    stacks = []
    for t in STACK_TASKS:
        d = _subdir(root, (t,))
        if d is not None and task in (None, t):
            stacks += stacks_in(d, t, f"{t}/")
    if stacks:
        return "stacks (mef/<stack>/, mff/<stack>/)", stacks
    stacks = stacks_in(root, task)
    if stacks:
        return "stacks (<stack>/ folders of images)", stacks
    raise InputError(f"{root}: no stack folders found (a folder of two or more images each, "
                     "under mef/ or mff/ or directly under the root)")


def guess_task(a, b, path_a: str | Path | None = None,
               path_b: str | Path | None = None) -> tuple[str, str]:
    """(task, how it was guessed) of a pair, the one rule of the CLI, the pipeline and the
    server: folder names that name the roles (ir/ vi/, under/ over/, ...) decide; otherwise the
    pixels: one gray and one colour input is infrared + visible (VIF), inputs whose mean
    brightness differs by more than 0.15 are an exposure pair (MEF), the rest focus pairs
    (MFF). Arrays in [0, 1]."""
    if path_a is not None and path_b is not None:
        task = infer_task(path_a, path_b)
        if task:
            return task, (f"from the folder names {Path(path_a).parent.name}/ "
                          f"{Path(path_b).parent.name}/")
    if (a.ndim == 2) != (b.ndim == 2):
        return "vif", "from the pixels: one gray and one colour input"
    gap = abs(float(a.mean()) - float(b.mean()))
    if gap > 0.15:
        return "mef", f"from the pixels: mean brightness differs by {gap:.2f}"
    return "mff", f"from the pixels: similar brightness (differs by {gap:.2f})"


def infer_task(path_a: str | Path, path_b: str | Path) -> str | None:
    """Guess the task of two explicit files from their folder names (ir/vi, under/over, ...)."""
    pa, pb = Path(path_a).parent.name.lower(), Path(path_b).parent.name.lower()
    for names_a, names_b, t, _ in DIR_LAYOUTS:
        if pa in names_a and pb in names_b:
            return t
    return None


def read_names_file(path: str | Path) -> list[str]:
    """Pair names or glob patterns, one per line (``#`` comments and blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError:
        raise InputError(f"{path}: no such pairs file (or unreadable)") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _matches(pair: Pair, patterns: list[str]) -> bool:
    from fnmatch import fnmatchcase

    short = pair.name.split("/")[-1]
    return any(fnmatchcase(pair.name, p) or fnmatchcase(short, p) for p in patterns)


def select_pairs(pairs: list[Pair], include: list[str] | None = None,
                 exclude: list[str] | None = None, what: str = "the names",
                 required: bool = True) -> list[Pair]:
    """Pairs matching ``include`` (names like ``vif/tno_07`` or ``tno_07``, or glob patterns)
    and none of ``exclude``; an error when nothing is left and ``required``."""
    chosen = [p for p in pairs if (not include or _matches(p, include))
              and not (exclude and _matches(p, exclude))]
    if required and pairs and not chosen:
        raise InputError(f"no pair is left after selecting by {what}; check the names")
    return chosen


def guess_stack_task(images) -> tuple[str, str]:
    """(task, how it was guessed) of a stack of arrays in [0, 1]: :func:`guess_task` of its
    darkest and brightest image; three or more images are never VIF (which fuses two), so a
    gray-and-colour stack of three or more is a focus stack (MFF)."""
    means = [float(x.mean()) for x in images]
    lo, hi = images[means.index(min(means))], images[means.index(max(means))]
    task, how = guess_task(lo, hi)
    if task == "vif" and len(images) > 2:
        return "mff", "from the pixels: three or more images are a stack"
    return task, how
