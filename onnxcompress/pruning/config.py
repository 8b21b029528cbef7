"""PruneConfig: the typed, frozen configuration of structured channel pruning (validated in __post_init__)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from onnxcompress.errors import RecipeError

CRITERIA = ("l1", "l2", "bn_scale", "activation", "reconstruction", "random")
ALLOCATIONS = ("local", "global")
AUTO_ROUND = "auto"
AUTO_ALIGN, AUTO_ALIGN_MIN_CHANNELS = 8, 16


def _fraction(name: str, value, *, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not ((value >= 0 if allow_zero else value > 0) and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise RecipeError(f"{name} must be a number in {interval}, got {value!r}",
                          hint=f"e.g. {name} = 0.3" + (" (0.5 keeps half)" if name.startswith("target") else ""))


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    ratio: fraction of each group's units to remove (0 <= ratio < 1); ignored when a target is given.
    criterion: l1 | l2 (weight norms aggregated over every slot of the group) | bn_scale (|gamma|) |
        activation (mean |activation| on calibration data) | reconstruction (output error of dropping the unit,
        needs data) | random (seeded).
    allocation: local (same ratio in every group) | global (one threshold over mean-normalized scores).
    min_channels: never keep fewer units than this in a group.
    round_to: kept units are the nearest multiple of it (never fewer than one multiple). "auto" (default):
        8 for channel groups of at least 16 channels, else 1 -- CPU kernels block channels by 8 or 16
        (onnxruntime's NCHWc layout, 8-lane AVX2/NEON), and a depthwise layer left at an odd width runs slower
        than the unpruned one. The resolved value of every group is in the result.
    exclude: node names (fnmatch patterns) or op types whose output channels are never pruned.
    overrides: node-name pattern -> ratio for the groups that contain that node.
    target_macs / target_params: fraction of the original MACs / parameters to keep (0.5 halves them); the ratio
        is searched to reach it.
    max_samples: calibration samples used by the data-driven criteria.
    bias_correction: fold the calibration mean of every removed channel into the consuming Conv/Gemm bias
        (needs data; removes the first-order error of the cut, so the result is no longer "the zeroed original").
    """

    ratio: float = 0.3
    criterion: str = "l1"
    allocation: str = "local"
    min_channels: int = 1
    round_to: int | str = AUTO_ROUND
    exclude: tuple[str, ...] = ()
    overrides: dict[str, float] = field(default_factory=dict)
    target_macs: float | None = None
    target_params: float | None = None
    seed: int = 0
    max_samples: int = 128
    bias_correction: bool = False

    def __post_init__(self):
        _fraction("ratio", self.ratio, allow_zero=True)
        if self.criterion not in CRITERIA:
            raise RecipeError(f"unknown pruning criterion '{self.criterion}'", hint=f"use one of {CRITERIA}")
        if self.allocation not in ALLOCATIONS:
            raise RecipeError(f"unknown allocation '{self.allocation}'", hint=f"use one of {ALLOCATIONS}")
        for name in ("min_channels", "round_to", "max_samples"):
            value = getattr(self, name)
            if name == "round_to" and value == AUTO_ROUND:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RecipeError(f"{name} must be an integer >= 1{' or auto' if name == 'round_to' else ''}, got {value!r}",
                                  hint=f"e.g. {name} = 8")
        if self.target_macs is not None and self.target_params is not None:
            raise RecipeError("give target_macs or target_params, not both", hint="drop one of them")
        for name in ("target_macs", "target_params"):
            if getattr(self, name) is not None:
                _fraction(name, getattr(self, name), allow_zero=False)
        if isinstance(self.exclude, str) or not all(isinstance(p, str) for p in self.exclude):
            raise RecipeError(f"exclude must be a list of node-name patterns, got {self.exclude!r}",
                              hint='e.g. exclude = ["stem*", "Gemm"]')
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if not isinstance(self.bias_correction, bool):
            raise RecipeError(f"bias_correction must be true or false, got {self.bias_correction!r}", hint="true")
        if not isinstance(self.overrides, dict):
            raise RecipeError("overrides must map node-name patterns to ratios", hint='e.g. {"block2*" = 0.5}')
        for pattern, value in self.overrides.items():
            _fraction(f"overrides['{pattern}']", value, allow_zero=True)

    @property
    def needs_data(self) -> bool:
        return self.criterion in ("activation", "reconstruction") or self.bias_correction
