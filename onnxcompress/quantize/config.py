"""QuantizeConfig: the typed, frozen configuration of static INT8 quantization (validated in __post_init__)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from onnxcompress.errors import RecipeError

TARGETS = ("cpu", "cuda", "tensorrt")
CALIBRATORS = ("minmax", "percentile", "entropy", "mse")
ACTIVATION_DTYPES = ("auto", "uint8", "int8", "int16", "uint16")
OVERRIDE_DTYPES = ("uint8", "int8", "int16", "uint16")
LAYER_POLICIES = ("quantize", "skip_first", "skip_last", "skip_first_last")


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
    """Static INT8 quantization (QDQ format).

    target: ``cpu`` (uint8 asymmetric activations, what ORT's x86 kernels run fastest), ``cuda``/``tensorrt``
    (int8 symmetric activations). Weights are int8 symmetric, per-channel where the op allows it.
    include/exclude entries match a node by name, op type, or ``re:<regex>`` on the name.
    """

    target: str = "cpu"
    calibrator: str = "minmax"
    percentile: float = 99.999
    num_bins: int = 2048
    activation_dtype: str = "auto"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: auto (7-bit weights for cpu on x86 without VNNI, see weight_bits)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_policy: str = "quantize"
    overrides: dict[str, TensorOverride] = field(default_factory=dict)
    bias_correction: bool = False
    calibration_samples: int | None = None
    batch_size: int = 32
    fold_batchnorm: bool = True
    fold_constants: bool = True  # constant folding, Div->Mul, Conv+Add->bias, hard-swish -> x * HardSigmoid(x)
    verify: bool = True

    def __post_init__(self):
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
        if self.calibration_samples is not None and self.calibration_samples <= 0:
            raise RecipeError(f"calibration_samples must be positive, got {self.calibration_samples}",
                              hint="omit it to use every sample")
        if not isinstance(self.bias_correction, bool):
            raise RecipeError(f"bias_correction must be true or false, got {self.bias_correction!r}", hint="true")
        for key in ("include", "exclude"):
            value = tuple(getattr(self, key))
            object.__setattr__(self, key, value)
            for pattern in value:
                _check_pattern(key, pattern)
        overrides = {}
        for name, ov in dict(self.overrides).items():
            if isinstance(ov, dict):
                from onnxcompress.config import config_from_dict

                ov = config_from_dict(TensorOverride, ov, f"quantize.overrides.{name}")
            if not isinstance(ov, TensorOverride):
                raise RecipeError(f"override for '{name}' must be a table", hint="e.g. {dtype = 'int16'}")
            overrides[name] = ov
        object.__setattr__(self, "overrides", overrides)

    @property
    def act_dtype(self) -> str:
        """The activation dtype for this target ('auto' resolves to uint8 on cpu, int8 elsewhere)."""
        if self.activation_dtype != "auto":
            return self.activation_dtype
        return "uint8" if self.target == "cpu" else "int8"

    def resolved_reduce_range(self) -> tuple[bool, str]:
        """(use 7-bit weights?, why). On x86 without VNNI, onnxruntime's u8s8 kernels add pairs of u8*s8 products
        in int16 (vpmaddubsw), which saturates with full-range int8 weights: 7-bit weights keep them exact."""
        if self.reduce_range is not None:
            return bool(self.reduce_range), "set in the config"
        if self.target != "cpu":
            return False, f"target {self.target}"
        if x86_without_vnni():
            return True, "auto: this x86 CPU has no VNNI (u8s8 products would saturate in int16)"
        return False, "auto: CPU has VNNI or is not x86"

    @property
    def act_symmetric(self) -> bool:
        return self.target != "cpu" or self.act_dtype in ("int8", "int16")


def x86_without_vnni() -> bool:
    """True on an x86 CPU without AVX512-VNNI / AVX-VNNI (Linux /proc/cpuinfo; numpy's CPU features otherwise)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
        return not any(v in flags.split() for v in ("avx512_vnni", "avx_vnni", "amx_int8"))
    except OSError:
        import numpy as np

        features = getattr(getattr(np, "_core", np.core), "_multiarray_umath").__cpu_features__
        return not features.get("AVX512VNNI", False)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(f"unknown {key} '{value}'", hint=f"use one of {', '.join(allowed)}")


def _check_pattern(key: str, pattern: str) -> None:
    if not isinstance(pattern, str) or not pattern:
        raise RecipeError(f"{key} entries must be non-empty strings, got {pattern!r}",
                          hint="a node name, an op type, or re:<regex>")
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as e:
            raise RecipeError(f"bad regex in {key}: {pattern!r}: {e}", hint="write re:<python regex>") from e


def matches(pattern: str, name: str, op_type: str) -> bool:
    """Does a selection entry match a node (by name, op type or ``re:`` regex on the name)?"""
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name or "") is not None
    return pattern == name or pattern == op_type
