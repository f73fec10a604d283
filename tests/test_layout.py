"""The package layout shows the data flow and keeps its promises: importing ``mmaif`` loads
nothing heavy, inference never imports training, one RGB <-> gray helper, no module shadows
the standard library."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import REPO

PKG = REPO / "src" / "mmaif"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_mmaif_is_light_and_lazy():
    mods = _modules_after("import mmaif")
    assert "torch" not in mods and not any(m.startswith("mmaif.") for m in mods)
    mods = _modules_after("from mmaif import FusionPipeline")
    assert "mmaif.inference.pipeline" in mods
    # every command's flags (train's come from TrainConfig) without the model or torch
    mods = _modules_after("from mmaif.cli import build_parser\nbuild_parser()")
    assert "torch" not in mods and "mmaif.training.config" in mods


def test_inference_never_imports_training():
    mods = _modules_after("import mmaif.inference.pipeline, mmaif.inference.serve, "
                          "mmaif.evaluation.demo, mmaif.evaluation.evaluate")
    assert not [m for m in mods if m.startswith("mmaif.training")]


# the stages in the order data flows; each imports only stages before it (and the top-level
# helpers errors, config, distributed)
STAGES = ("data", "classical", "synthesis", "model", "training", "inference", "evaluation", "cli")
HELPERS = {"errors", "config", "distributed"}


def _stage_imports() -> dict[str, set[str]]:
    """{stage: the mmaif stages its modules import}, lazy (function-level) imports included."""
    import ast

    graph: dict[str, set[str]] = {s: set() for s in STAGES}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).parts
        if len(rel) < 2 or rel[0] not in graph:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[rel[0]] |= {n.split(".")[1] for n in names
                              if n.startswith("mmaif.") and n.split(".")[1] != rel[0]}
    return graph


def test_stages_import_one_way():
    """data -> classical -> synthesis -> model -> training / inference -> evaluation -> cli:
    no stage imports a later one (so no cycle), training and inference not each other."""
    graph = _stage_imports()
    for stage, deps in graph.items():
        later = {d for d in deps - HELPERS if d not in STAGES[:STAGES.index(stage)]}
        assert not later, f"{stage} imports later stages {sorted(later)}"
    assert "training" not in graph["inference"] and "inference" not in graph["training"]


def test_stages_are_packages_and_no_module_shadows_the_standard_library():
    for stage in STAGES:
        assert (PKG / stage / "__init__.py").is_file(), stage
    names = {p.stem for p in PKG.rglob("*.py")} | {p.name for p in PKG.rglob("*") if p.is_dir()}
    assert not names & set(sys.stdlib_module_names) - {"__init__", "__main__"}


def test_one_rgb_gray_conversion():
    """RGB -> gray (the luma weights) and gray -> RGB (replication) live in data/images.py."""
    luma = re.compile(r"@ RGB2GRAY|RGB2GRAY = |np\.repeat\([^)]*\[\.\.\., None\], 3")
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "images.py" and luma.search(p.read_text())]
    assert not offenders
