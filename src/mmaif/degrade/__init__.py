"""Degradations (operators, depth, sampling, prompts) for synthesizing training pairs."""

from .ops import OPS, SEVERITIES, apply_op
from .pipeline import TASK_OPS, apply_ops, compose_prompt, describe, sample_ops

__all__ = ["OPS", "SEVERITIES", "TASK_OPS", "apply_op", "apply_ops", "compose_prompt",
           "describe", "sample_ops"]
