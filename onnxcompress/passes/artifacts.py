"""Typed artifacts that one stage leaves in the PassContext for a later one (stored and fetched by class)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx

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
        """From the ``kept`` list of a prune report: [{tensor, axis, kept: [...]}, ...]."""
        kept: dict[str, tuple[int, ...]] = {}
        axes: dict[str, int] = {}
        for r in records:
            if isinstance(r, Mapping) and "tensor" in r and "kept" in r:
                kept[str(r["tensor"])] = tuple(int(i) for i in r["kept"])
                axes[str(r["tensor"])] = int(r.get("axis", 1))
        return cls(kept, axes)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> KeptChannels:
        return cls({str(k): tuple(int(i) for i in v) for k, v in mapping.items()}, {})

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
        except ValueError:
            return None
        return cls.from_records(records) if isinstance(records, list) else None
