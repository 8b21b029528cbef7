"""PruneResult: what one pruning run decided and achieved (typed; ``to_dict`` is the report's ``prune`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onnxcompress.config import config_to_dict
from onnxcompress.passes.artifacts import KeptChannels
from onnxcompress.pruning.config import PruneConfig


@dataclass(frozen=True)
class Costs:
    macs: int
    params: int
    bytes: int

    def to_dict(self) -> dict[str, int]:
        return {"macs": self.macs, "params": self.params, "bytes": self.bytes}


@dataclass(frozen=True)
class TargetSearch:
    """The ratio search behind a MACs/parameter target."""

    kind: str  # "macs" | "params"
    wanted: float
    achieved: float
    ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "wanted": self.wanted, "achieved": self.achieved, "ratio": self.ratio}


@dataclass(frozen=True)
class Importance:
    min: float
    mean: float
    max: float
    removed_max: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"min": self.min, "mean": self.mean, "max": self.max, "removed_max": self.removed_max}


@dataclass(frozen=True)
class GroupRecord:
    """One prunable channel group: its nodes and slots, units/channels before and after, importance summary."""

    id: int
    nodes: tuple[str, ...]
    slots: tuple[str, ...]
    n_slots: int
    units_before: int
    units_after: int
    channels_before: int
    channels_after: int
    importance: Importance
    round_to: int = 1  # the multiple its kept units were rounded to (round_to resolved for this group)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "nodes": list(self.nodes), "slots": list(self.slots), "n_slots": self.n_slots,
                "units_before": self.units_before, "units_after": self.units_after,
                "channels_before": self.channels_before, "importance": self.importance.to_dict(),
                "channels_after": self.channels_after, "round_to": self.round_to}


@dataclass(frozen=True)
class BlockedRecord:
    """A channel group that is never cut, and why."""

    id: int
    units: int
    slots: tuple[str, ...]
    n_slots: int
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "units": self.units, "slots": list(self.slots), "n_slots": self.n_slots,
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class KeptRecord:
    """The kept positions of one cut (tensor, axis)."""

    tensor: str
    axis: int
    size_before: int
    size_after: int
    kept: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "axis": self.axis, "size_before": self.size_before,
                "size_after": self.size_after, "kept": list(self.kept)}


@dataclass(frozen=True)
class PruneResult:
    config: PruneConfig
    summary: str
    before: Costs
    after: Costs
    target: TargetSearch | None
    groups: tuple[GroupRecord, ...]
    blocked: tuple[BlockedRecord, ...]
    notes: tuple[str, ...] = ()
    kept: tuple[KeptRecord, ...] = field(default_factory=tuple)

    def kept_channels(self) -> KeptChannels:
        return KeptChannels({r.tensor: r.kept for r in self.kept}, {r.tensor: r.axis for r in self.kept})

    def to_dict(self) -> dict[str, Any]:
        return {"config": config_to_dict(self.config), "summary": self.summary, "before": self.before.to_dict(),
                "after": self.after.to_dict(), "target": None if self.target is None else self.target.to_dict(),
                "groups": [g.to_dict() for g in self.groups], "blocked": [b.to_dict() for b in self.blocked],
                "notes": list(self.notes), "kept": [k.to_dict() for k in self.kept]}
