"""QuantizeConfig: the typed, frozen configuration of INT8 quantization (validated in __post_init__)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from onnxcompress.config import config_from_dict
from onnxcompress.errors import RecipeError
from onnxcompress.ir.query import node_matches, selector_error
from onnxcompress.quantization.target import CPU_TARGETS, TARGETS, Target, resolve_target
from onnxcompress.runtime.providers import provider_key

CALIBRATORS = ("minmax", "percentile", "entropy", "mse")
ACTIVATION_DTYPES = ("auto", "uint8", "int8", "int16", "uint16")
OVERRIDE_DTYPES = ("uint8", "int8", "int16", "uint16")
LAYER_POLICIES = ("quantize", "skip_first", "skip_last", "skip_first_last")
MODES = ("static", "dynamic")


@dataclass(frozen=True)
class TensorOverride:
    """Per-tensor override: activation dtype, symmetric range, and/or a fixed (min, max) range."""

    dtype: str | None = None
    symmetric: bool | None = None
    range: tuple[float, float] | None = None

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in OVERRIDE_DTYPES:
            raise RecipeError(f"override dtype '{self.dtype}' is not supported", hint=f"use one of {OVERRIDE_DTYPES}")
        if self.range is not None:
            if len(self.range) != 2 or not float(self.range[0]) <= float(self.range[1]):
                raise RecipeError(f"override range {list(self.range)} must be [min, max] with min <= max",
                                  hint="e.g. range = [0.0, 6.0]")
            object.__setattr__(self, "range", (float(self.range[0]), float(self.range[1])))


@dataclass(frozen=True)
class QuantizeConfig:
    """INT8 quantization.

    mode: ``static`` (QDQ with calibrated activation ranges) or ``dynamic`` (MatMul/Gemm weights in int8,
    activations quantized at run time; no calibration). target: the deployment target (quantization.target):
    ``cpu`` (portable: uint8 activations, 7-bit weights, exact on every CPU), ``cpu-avx2``, ``cpu-vnni`` /
    ``arm64`` (8-bit weights), ``cuda``/``tensorrt`` (int8 symmetric activations), ``auto`` (resolved on this
    host and recorded). reduce_range: 7-bit weights (None = what the target needs). Weights are int8 symmetric,
    per-channel where the op allows it. include/exclude entries are node selectors: a node name, an op type, a
    glob on the name or ``re:<regex>``. batch_size is the largest calibration batch; the batch shrinks so that
    one batch's calibrated activations fit in calibration_memory_mb (measured on one sample).
    smooth_quant: SmoothQuant migration strength alpha in (0, 1) for
    LayerNorm -> MatMul/Gemm (None = off). rewrites: hard-swish -> x * HardSigmoid(x) and Conv + Add -> bias
    before quantizing (fewer float islands between int8 kernels).
    """

    mode: str = "static"
    target: str = "cpu"
    calibrator: str = "minmax"
    percentile: float = 99.999
    num_bins: int = 2048
    activation_dtype: str = "auto"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: from the target (7-bit weights where u8s8 kernels could saturate)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_policy: str = "quantize"
    overrides: dict[str, TensorOverride] = field(default_factory=dict)
    bias_correction: bool = False
    calibration_samples: int | None = None
    batch_size: int = 32
    calibration_memory_mb: int = 256
    smooth_quant: float | None = None
    rewrites: bool = True
    verify: bool = True
    strict: bool = False  # calibration-data warnings (constant inputs, extreme outliers) become errors

    def __post_init__(self):
        _one_of("mode", self.mode, MODES)
        if self.target not in TARGETS and isinstance(self.target, str) and provider_key(self.target) not in (None, "auto"):
            object.__setattr__(self, "target", provider_key(self.target))  # CUDAExecutionProvider -> cuda
        _one_of("target", self.target, TARGETS)
        _one_of("calibrator", self.calibrator, CALIBRATORS)
        _one_of("activation_dtype", self.activation_dtype, ACTIVATION_DTYPES)
        _one_of("layer_policy", self.layer_policy, LAYER_POLICIES)
        if not 50.0 < float(self.percentile) <= 100.0:
            raise RecipeError(f"percentile must be in (50, 100], got {self.percentile}", hint="e.g. 99.99")
        if not 128 <= int(self.num_bins) <= 65536:
            raise RecipeError(f"num_bins must be in [128, 65536], got {self.num_bins}", hint="e.g. 2048")
        if self.batch_size <= 0:
            raise RecipeError(f"batch_size must be positive, got {self.batch_size}", hint="e.g. 32")
        if isinstance(self.calibration_memory_mb, bool) or not isinstance(self.calibration_memory_mb, int) \
                or self.calibration_memory_mb < 1:
            raise RecipeError(f"calibration_memory_mb must be an integer >= 1, got {self.calibration_memory_mb!r}",
                              hint="e.g. 256: one calibration batch's activations stay within it")
        if self.calibration_samples is not None and self.calibration_samples <= 0:
            raise RecipeError(f"calibration_samples must be positive, got {self.calibration_samples}",
                              hint="omit it to use every sample")
        for key in ("bias_correction", "per_channel", "rewrites", "verify", "strict"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"{key} must be true or false, got {getattr(self, key)!r}", hint=f"{key} = true")
        if self.reduce_range is not None and not isinstance(self.reduce_range, bool):
            raise RecipeError(f"reduce_range must be true, false or absent, got {self.reduce_range!r}", hint="true")
        if self.smooth_quant is not None and (isinstance(self.smooth_quant, bool) or not isinstance(
                self.smooth_quant, (int, float)) or not math.isfinite(self.smooth_quant) or not 0 < self.smooth_quant < 1):
            raise RecipeError(f"smooth_quant (alpha) must be in (0, 1), got {self.smooth_quant!r}", hint="e.g. 0.5")
        for key in ("include", "exclude"):
            value = tuple(getattr(self, key))
            object.__setattr__(self, key, value)
            for pattern in value:
                _check_pattern(key, pattern)
        overrides = {}
        for name, ov in dict(self.overrides).items():
            if isinstance(ov, dict):

                ov = config_from_dict(TensorOverride, ov, f"quantize.overrides.{name}")
            if not isinstance(ov, TensorOverride):
                raise RecipeError(f"override for '{name}' must be a table", hint="e.g. {dtype = 'int16'}")
            overrides[name] = ov
        object.__setattr__(self, "overrides", overrides)

    @property
    def resolved_target(self) -> Target:
        return resolve_target(self.target)

    @property
    def act_dtype(self) -> str:
        """The activation dtype ('auto' resolves to uint8 on CPU targets, int8 on GPU targets)."""
        if self.activation_dtype != "auto":
            return self.activation_dtype
        return self.resolved_target.activation_dtype

    def resolved_reduce_range(self) -> tuple[bool, str]:
        """(use 7-bit weights?, why), from the explicit setting or the target; never from the running host."""
        if self.reduce_range is not None:
            return bool(self.reduce_range), "set in the config"
        target = self.resolved_target
        return target.reduce_range, f"target {target.name}: {target.reason}"

    @property
    def act_symmetric(self) -> bool:
        return self.target not in CPU_TARGETS + ("auto",) or self.act_dtype in ("int8", "int16")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(f"unknown {key} '{value}'", hint=f"use one of {', '.join(allowed)}")


def _check_pattern(key: str, pattern: object) -> None:
    error = selector_error(pattern)
    if error is not None:
        raise RecipeError(f"{key}: {error}", hint="a node name, an op type, a glob such as 'conv*', or re:<regex>")


def matches(pattern: str, name: str, op_type: str) -> bool:
    """Does a selection entry match a node (see onnxcompress.ir.query.node_matches)?"""
    return node_matches(pattern, name, op_type)
