"""mmaif: multi-task, multi-degradation all-in-one image fusion with language guidance.

An open implementation of MMAIF (ICCV 2025, arXiv 2503.14944). Importing this package has no
side effects; heavy modules load on first use.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
