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


def test_inference_never_imports_training():
    mods = _modules_after("import mmaif.inference.pipeline, mmaif.inference.serve, "
                          "mmaif.evaluation.demo, mmaif.evaluation.evaluate")
    assert not [m for m in mods if m.startswith("mmaif.training")]


def test_stages_import_one_way_where_they_were_untangled():
    """classical never imports evaluation, inference never imports evaluation (metrics live
    below the pipeline that is measured). data <-> classical is still two-way (synthesis in
    data/ uses the classical teachers)."""
    for stage, below in (("classical", "evaluation"), ("inference", "evaluation")):
        offenders = [str(p.relative_to(PKG)) for p in (PKG / stage).rglob("*.py")
                     if f"from mmaif.{below}" in p.read_text()
                     or f"import mmaif.{below}" in p.read_text()]
        assert not offenders, (stage, below, offenders)


def test_stages_are_packages_and_no_module_shadows_the_standard_library():
    for stage in ("data", "model", "classical", "training", "inference", "evaluation", "cli"):
        assert (PKG / stage / "__init__.py").is_file(), stage
    names = {p.stem for p in PKG.rglob("*.py")} | {p.name for p in PKG.rglob("*") if p.is_dir()}
    assert not names & set(sys.stdlib_module_names) - {"__init__", "__main__"}


def test_one_rgb_gray_conversion():
    """RGB -> gray (the luma weights) and gray -> RGB (replication) live in data/images.py."""
    luma = re.compile(r"@ RGB2GRAY|RGB2GRAY = |np\.repeat\([^)]*\[\.\.\., None\], 3")
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "images.py" and luma.search(p.read_text())]
    assert not offenders
