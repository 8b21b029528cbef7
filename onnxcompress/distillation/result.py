"""Typed results of the distillation passes (``to_dict`` gives the report's ``distill`` / ``attach`` sections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onnxcompress.config import config_to_dict
from onnxcompress.distillation.config import DistillConfig


@dataclass(frozen=True)
class LayerFit:
    """One reconstructed layer: rows of the least-squares problem and unknowns per output."""

    layer: str
    op: str
    rows: int
    unknowns: int

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "op": self.op, "rows": self.rows, "unknowns": self.unknowns}


@dataclass(frozen=True)
class DistillResult:
    config: DistillConfig
    reconstructed: tuple[LayerFit, ...]
    skipped: tuple[tuple[str, str], ...]  # (layer, reason)
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"reconstructed": [f.to_dict() for f in self.reconstructed],
                "skipped": [{"pass": "ReconstructPass", "subject": n, "action": "skipped", "reason": r}
                            for n, r in self.skipped],
                "samples": self.samples, "config": config_to_dict(self.config)}


@dataclass(frozen=True)
class AttachResult:
    attached: tuple[str, ...]
    mapping: dict[str, str]
    ignored_extra: tuple[str, ...]
    validated_on: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"attached": list(self.attached), "mapping": dict(self.mapping),
                "ignored_extra": list(self.ignored_extra), "validated_on": self.validated_on}
