"""Data: images and pairs on disk, degradations and prompts, synthesis with teachers, torch
datasets, rendered training stacks."""
