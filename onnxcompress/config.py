"""Helpers for frozen, typed configuration dataclasses: from_dict with unknown-key errors, and to_dict.

Every config of the recipe (PruneConfig, QuantizeConfig, ValidateConfig, GatePolicy, ...) is a frozen dataclass
that validates itself in ``__post_init__`` and is built from TOML/JSON through :func:`config_from_dict`, which
first checks every value against its field's annotation: ``bool`` is only ``true``/``false`` (never a number),
an ``int`` field takes only integers, a ``float`` field takes integers and floats (never NaN), a ``str`` field
only strings, tuples and dicts their element types, ``X | None`` also nothing; a value of the wrong type is a
:class:`RecipeError` that names the key, the expected type and the default.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from onnxcompress.errors import RecipeError

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build ``cls`` from ``data``; an unknown key is a RecipeError listing the valid keys, a value of the wrong
    type one naming the key and the expected type."""
    where = where or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"[{where}] must be a table, got {type(data).__name__} {data!r}",
                          hint="see the recipe reference (docs/report.md)")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise RecipeError(f"unknown key(s) {unknown} in [{where}]", hint=f"valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints.get(name), value, f"{where}.{name}", fields[name])
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise RecipeError(f"[{where}]: {e}", hint=f"valid keys are {sorted(fields)}") from e


class _Mismatch(Exception):
    """A value does not fit an annotation (turned into a RecipeError naming the key)."""


def _convert(tp: Any, value: Any, where: str, fld: dataclasses.Field | None = None) -> Any:
    try:
        return _coerce(tp, value, where)
    except _Mismatch:
        raise RecipeError(f"{where} must be {describe(tp)}, got {_shown(value)}", hint=_hint(where, fld)) from None


def _shown(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan (not a number)"
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _hint(where: str, fld: dataclasses.Field | None) -> str:
    key = where.rsplit(".", 1)[-1]
    default: Any = dataclasses.MISSING
    if fld is not None and fld.default is not dataclasses.MISSING:
        default = fld.default
    elif fld is not None and fld.default_factory is not dataclasses.MISSING:
        default = fld.default_factory()
    if default is dataclasses.MISSING or dataclasses.is_dataclass(default):
        return "see the recipe reference (docs/report.md)"
    if default is None:
        base = _base_type(fld.type if fld else None)
        example = "[...]" if base.startswith(("tuple", "list")) else _EXAMPLES.get(base, "...")
        return f"e.g. {key} = {example}, or leave it out (unset by default)"
    return f"the default is {key} = {_toml(default)}"


_EXAMPLES = {"int": "8", "float": "0.5", "str": '"name"', "bool": "true"}


def _base_type(annotation: Any) -> str:
    """'int' for 'int | None' (annotations are strings under `from __future__ import annotations`)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return next((p.strip() for p in text.split("|") if p.strip() != "None"), "")


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return repr(v)


def describe(tp: Any) -> str:
    """Words for an annotation: 'an integer', 'a list of strings', 'a number or nothing'..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if dataclasses.is_dataclass(tp):
        return "a table"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [describe(a) for a in args if a is not type(None)]
        return " or ".join(inner)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if not args:
            return "a list"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} values: " + ", ".join(describe(a) for a in args)
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return f"a table of {_plural(args[1])}" if len(args) == 2 else "a table"
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(tp) or (
        "tables" if dataclasses.is_dataclass(tp) else describe(tp))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against ``tp`` (lists become tuples, ints become floats where a float is asked for)."""
    if tp is None or tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(args, value, where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # type: ignore[arg-type]
            return value
        if not isinstance(value, dict):
            raise _Mismatch
        return config_from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise _Mismatch
        return value
    if origin in (tuple, list):
        return _coerce_sequence(origin, args, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        key_t, val_t = args if len(args) == 2 else (Any, Any)
        return {_coerce(key_t, k, where): _convert(val_t, v, f"{where}.{k}") for k, v in value.items()}
    return _coerce_scalar(tp, value)


def _coerce_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    for option in options:
        try:
            return _coerce(option, value, where)
        except _Mismatch:
            continue
    raise _Mismatch


def _coerce_sequence(origin: Any, args: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    inner = args[0] if args else Any
    items = [_coerce(inner, v, where) for v in value]
    return tuple(items) if origin is tuple else items


def _coerce_scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise _Mismatch
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not _unicode(value):
            raise _Mismatch
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _Mismatch
    return value


def _unicode(text: str) -> bool:
    """Text without lone surrogates (which a JSON file can spell as \\udXXX but no file format can write)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def config_to_dict(obj: Any) -> Any:
    """JSON/TOML-ready dict of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: config_to_dict(v) for k, v in obj.items()}
    return obj
