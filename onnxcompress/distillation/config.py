"""DistillConfig: the typed, frozen configuration of layer-wise reconstruction (validated in __post_init__)."""

from __future__ import annotations

from dataclasses import dataclass

from onnxcompress.errors import RecipeError


@dataclass(frozen=True)
class DistillConfig:
    """Reconstruction settings: ridge (relative to the mean diagonal of X^T X), calibration samples, sampled conv
    output positions per image, batch size, the seed of the position sampling, and the memory (each) for the
    teacher's target rows (layers whose rows fit together share one teacher pass over the data) and for the student
    activations later layers start from (instead of recomputing the student from its inputs per layer)."""

    ridge: float = 1e-3
    samples: int = 256
    positions: int = 64
    batch_size: int = 32
    seed: int = 0
    memory_mb: int = 1024

    def __post_init__(self):
        if isinstance(self.ridge, bool) or not isinstance(self.ridge, (int, float)) or not self.ridge >= 0:
            raise RecipeError(f"ridge must be a number >= 0, got {self.ridge!r}",
                              hint="use e.g. 1e-3 (relative to mean diag)")
        for key in ("samples", "positions", "batch_size", "seed", "memory_mb"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
                raise RecipeError(f"{key} must be a positive integer, got {v!r}", hint="use a positive integer")
