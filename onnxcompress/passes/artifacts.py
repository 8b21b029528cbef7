"""Typed artifacts that one stage leaves in the PassContext for a later one (stored and fetched by class)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx


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
