"""PrecisionConfig: the typed, frozen configuration of the fp16/bf16 conversion (validated in __post_init__)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnxcompress.errors import RecipeError
from onnxcompress.ir.query import selector_error

TARGETS = ("fp16", "bf16")


@dataclass(frozen=True)
class FloatFormat:
    """What a reduced float type can hold: its largest finite value and the magnitude below which a value
    rounds to zero (half the smallest subnormal)."""

    name: str
    max: float
    flush: float
    onnx_type: int


FORMATS = {
    "fp16": FloatFormat("fp16", 65504.0, 2.0 ** -25, 10),  # TensorProto.FLOAT16
    "bf16": FloatFormat("bf16", float(np.finfo(np.float32).max) * (1 - 2.0 ** -8), 2.0 ** -134, 16),  # BFLOAT16
}


@dataclass(frozen=True)
class PrecisionConfig:
    """Convert float32 compute to fp16 or bf16, keeping float32 where the values would not survive.

    ``to``: fp16 | bf16. ``keep_io_types``: graph inputs and outputs stay float32 (a Cast at the border).
    A node stays float32 when (decided from the calibration data, see precision.plan): a tensor it reads or writes
    has max |x| x ``headroom`` above the format's largest value, or more than ``max_underflow`` of its nonzero
    values would round to zero; an initializer it reads does the same; it reduces over more than
    ``max_reduction`` elements (ReduceSum/ReduceMean/Softmax/LayerNormalization/pools ...), or its accumulator
    bound (elements x max|x|, x max|x|^2 for sums of squares) x ``headroom`` exceeds the format; it is a
    MatMul/Gemm/Conv with more than ``max_dot_length`` terms per output; its op has no fp16 rule; or
    ``keep_fp32`` selects it (node name, op type, glob, ``re:REGEX``). ``calibration_samples``/``batch_size``:
    how much calibration data the statistics see. ``verify``: run the result against the float32 model on the
    evaluation data (else the calibration data, else seeded random inputs) and require no NaN/Inf, a mean
    cosine >= ``min_cosine`` on every output and a top-1 agreement >= ``min_top1_agreement`` on class outputs
    ([N, C]); below that the model is still written and the command exits 1 (bf16 is verified by emulation on
    CPU: onnxruntime has no CPU bf16 kernels).
    """

    to: str = "fp16"
    keep_io_types: bool = True
    headroom: float = 4.0
    max_underflow: float = 0.01
    max_reduction: int = 4096
    max_dot_length: int = 16384
    keep_fp32: tuple[str, ...] = ()
    calibration_samples: int | None = 128
    batch_size: int = 8
    verify: bool = True
    min_cosine: float = 0.999
    min_top1_agreement: float = 0.99
    verify_samples: int | None = 256

    def __post_init__(self):
        if self.to not in TARGETS:
            raise RecipeError(f"unknown precision '{self.to}'", hint=f"use one of {', '.join(TARGETS)}")
        for key in ("keep_io_types", "verify"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"{key} must be true or false, got {getattr(self, key)!r}", hint=f"{key} = true")
        _number("headroom", self.headroom, 1.0, 1e6)
        _number("max_underflow", self.max_underflow, 0.0, 1.0)
        _number("min_cosine", self.min_cosine, -1.0, 1.0)
        _number("min_top1_agreement", self.min_top1_agreement, 0.0, 1.0)
        for key in ("max_reduction", "max_dot_length", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RecipeError(f"{key} must be a positive integer, got {v!r}", hint=f"e.g. {key} = 4096")
        for key in ("calibration_samples", "verify_samples"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise RecipeError(f"{key} must be a positive integer, got {v!r}", hint="omit it to use every sample")
        object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))
        for pattern in self.keep_fp32:
            error = selector_error(pattern)
            if error is not None:
                raise RecipeError(f"keep_fp32: {error}", hint="a node name, an op type, a glob or re:<regex>")

    @property
    def format(self) -> FloatFormat:
        return FORMATS[self.to]


def _number(key: str, v: object, lo: float, hi: float) -> None:
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi
    if not ok:
        raise RecipeError(f"{key} must be a number in [{lo:g}, {hi:g}], got {v!r}", hint=f"see PrecisionConfig.{key}")
