"""Helpers for frozen, typed configuration dataclasses: from_dict with unknown-key errors, and to_dict.

Every config of the recipe (PruneConfig, QuantizeConfig, ValidateConfig, GatePolicy, ...) is a frozen dataclass
that validates itself in ``__post_init__`` and is built from TOML/JSON through :func:`config_from_dict`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from onnxcompress.errors import RecipeError

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build ``cls`` from ``data``; an unknown key is a RecipeError listing the valid keys."""
    data = dict(data or {})
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise RecipeError(f"[{where}] must be a table, got {type(data).__name__}", hint="see the recipe reference")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"unknown key(s) {unknown} in [{where}]", hint=f"valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints.get(name), value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise RecipeError(f"[{where}]: {e}", hint=f"valid keys are {sorted(fields)}") from e


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Nested dataclasses from dicts, tuples from lists; everything else as given (validated by __post_init__)."""
    if tp is None:
        return value
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _convert(args[0], value, where)
    if origin is tuple and isinstance(value, list):
        inner = args[0] if args else None
        return tuple(_convert(inner, v, where) for v in value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


def config_to_dict(obj: Any) -> Any:
    """JSON/TOML-ready dict of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: config_to_dict(v) for k, v in obj.items()}
    return obj
