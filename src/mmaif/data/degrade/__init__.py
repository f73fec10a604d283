"""Degradations (operators, depth, sampling, prompts) for synthesizing training pairs."""

from mmaif.data.degrade.ops import OPS, SEVERITIES, apply_op
from mmaif.data.degrade.pipeline import TASK_OPS, apply_ops, compose_prompt, describe, sample_ops

__all__ = ["OPS", "SEVERITIES", "TASK_OPS", "apply_op", "apply_ops", "compose_prompt",
           "describe", "sample_ops"]
