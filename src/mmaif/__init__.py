"""mmaif: multi-task, multi-degradation all-in-one image fusion with language guidance.

An open implementation of MMAIF (ICCV 2025, arXiv 2503.14944). Importing this package has no
side effects; heavy modules load on first use (``from mmaif import FusionPipeline`` imports
torch and the model code only when the name is looked up).

Layout, in the order data flows: ``data`` (images, pairs, degradations, synthesis, teachers,
datasets, stacks) -> ``model`` (DiT, tokenizers, text encoders, flow) -> ``training`` ->
``inference`` (pipeline, tiling, demo, server) -> ``evaluation`` (metrics, eval, reports,
benchmarks); ``classical`` holds the classical fusions and restorations; ``cli`` the commands.
"""

__version__ = "0.1.0"
__all__ = ["FusionPipeline", "__version__"]


def __getattr__(name: str):
    if name == "FusionPipeline":
        from mmaif.inference.pipeline import FusionPipeline

        return FusionPipeline
    raise AttributeError(f"module 'mmaif' has no attribute {name!r}")
