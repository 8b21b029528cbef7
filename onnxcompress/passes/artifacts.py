"""Typed artifacts that one stage leaves in the PassContext for a later one (stored and fetched by class)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx

from onnxcompress.errors import DataError

#: metadata_props key under which a pruned model carries its kept-channel record
KEPT_CHANNELS_KEY = "onnxcompress.kept_channels"


@dataclass(frozen=True)
class Teacher:
    """The float reference (the preprocessed original) that later stages reconstruct and correct against."""

    model: onnx.ModelProto


@dataclass(frozen=True)
class KeptChannels:
    """Which channels of each pruned tensor survived: tensor name -> kept indices along ``axes[tensor]``.

    Pruning produces it; distillation restricts the teacher's activations to these channels. It is also what
    `prune --report` writes as the ``kept`` list."""

    kept: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    axes: Mapping[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.kept)

    def as_lists(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.kept.items()}

    @classmethod
    def from_records(cls, records: list[Mapping[str, Any]]) -> KeptChannels:
        """From the ``kept`` list of a prune report: [{tensor, axis, kept: [...]}, ...]; a malformed record is a
        DataError naming it."""
        kept: dict[str, tuple[int, ...]] = {}
        axes: dict[str, int] = {}
        for i, r in enumerate(records):
            if not isinstance(r, Mapping) or not isinstance(r.get("tensor"), str) or "kept" not in r:
                raise DataError(f"kept-channel record {i} is {r!r}, not {{tensor, axis, kept: [indices]}}",
                                hint="give the prune report JSON (`prune --report R.json` or report.json)")
            kept[r["tensor"]] = _indices(r["kept"], r["tensor"])
            axis = r.get("axis", 1)
            if isinstance(axis, bool) or not isinstance(axis, int):
                raise DataError(f"kept-channel record of '{r['tensor']}' has axis {axis!r}, not an integer",
                                hint="give the prune report JSON unchanged")
            axes[r["tensor"]] = axis
        return cls(kept, axes)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> KeptChannels:
        return cls({str(k): _indices(v, str(k)) for k, v in mapping.items()}, {})

    def to_json(self) -> str:
        """Compact JSON for the model's metadata: [{tensor, axis, kept}, ...] in name order."""
        records = [{"tensor": t, "axis": int(self.axes.get(t, 1)), "kept": list(self.kept[t])} for t in sorted(self.kept)]
        return json.dumps(records, separators=(",", ":"))

    @classmethod
    def from_model(cls, model: onnx.ModelProto) -> KeptChannels | None:
        """The record a model pruned by onnxcompress carries in its metadata_props (None when it has none)."""
        value = next((p.value for p in model.metadata_props if p.key == KEPT_CHANNELS_KEY), None)
        if value is None:
            return None
        try:
            records = json.loads(value)
        except (ValueError, RecursionError):
            return None
        return cls.from_records(records) if isinstance(records, list) else None

    def check_tensors(self, names: Iterable[str]) -> None:
        """Every kept tensor must be one of ``names`` (the student's tensors); else a DataError listing them."""
        names = set(names)
        unknown = sorted(t for t in self.kept if t not in names)
        if unknown:
            listed = sorted(names)
            shown = ", ".join(listed[:30]) + (f" ... ({len(listed)} in all)" if len(listed) > 30 else "")
            raise DataError(f"kept-channel record(s) for {unknown} match no tensor of the student",
                            hint=f"the student's tensors are: {shown}; give the record of the prune run that "
                                 "produced this student")


def _indices(value: Any, tensor: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                       for i in value):
        raise DataError(f"kept channels of '{tensor}' must be a list of non-negative integers, got {value!r}",
                        hint="give the prune report JSON unchanged")
    if len(set(value)) != len(value):
        raise DataError(f"kept channels of '{tensor}' list an index twice", hint="give the prune report JSON unchanged")
    return tuple(value)
