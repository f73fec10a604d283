"""Type checks for the dataclass configs (model and training), so that a config file with
``depth: six`` or ``max_steps: ten`` is refused in one line naming the field, the value and
the type expected, before any work."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields

from mmaif.errors import InputError


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not isinstance(value, (list, tuple)):
            return False
        return not args or all(_matches(v, args[min(i, len(args) - 1)])
                               for i, v in enumerate(value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # a type this checker does not know: left to the dataclass


def _name(hint) -> str:
    text = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace("NoneType", "None")


def typed(cls, values: dict, what: str) -> dict:
    """``values`` checked against the field types of dataclass ``cls``: unknown keys and
    values of the wrong type are an :class:`InputError` naming the field; numbers written as
    strings ("2e-4", which YAML 1.1 reads as text) are taken for float fields."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{what}: unknown key(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")
    out = dict(values)
    for key, value in values.items():
        hint = hints[key]
        if isinstance(value, str) and _matches(1.0, hint) and not _matches(value, hint):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and math.isfinite(number):
                out[key] = value = number
        if not _matches(value, hint):
            raise InputError(f"{what}: {key}={value!r} is {type(value).__name__}; expected "
                             f"{_name(hint)}")
    return out
