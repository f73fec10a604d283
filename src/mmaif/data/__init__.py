"""Data: images and pairs on disk, degradations and prompts, rendered training stacks (below
the classical methods; synthesis, which needs their teachers, is :mod:`mmaif.synthesis`)."""
