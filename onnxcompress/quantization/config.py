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
MODES = ("static", "dynamic", "weight_only", "codebook", "ternary", "binary")
#: modes that compress weights only (activations stay float): weight-only INT4/INT8, weight sharing, ternary/binary
WEIGHT_MODES = ("weight_only", "codebook", "ternary", "binary")
WEIGHT_FORMATS = ("auto", "matmulnbits", "qdq")
WEIGHT_METHODS = ("rtn", "gptq")
CODEBOOK_SCOPES = ("layer", "channel")
CODEBOOK_INITS = ("linear", "kmeans++")
#: cost-model: a committed cost table decides which nodes pay in INT8 (deterministic, host-independent);
#: measure: this host's onnxruntime profiles the model and times the candidates (recorded as ``fixed``);
#: fixed: exactly the nodes of ``float_nodes`` (and ``exclude``) stay float, everything else quantizable is INT8
PLACEMENTS = ("cost-model", "measure", "fixed")
#: onnxruntime's transformer fusions before quantizing (quantization.fuse_transformer)
TRANSFORMER_FUSIONS = ("off", "norm", "attention")


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
    smooth_quant: SmoothQuant for LayerNorm -> MatMul/Gemm (quantization.smooth): ``auto`` (default) where
    the normalized activations have outlier channels, alpha 0.5; an alpha in (0, 1) everywhere; ``off``.
    rewrites: hard-swish -> x * HardSigmoid(x), Conv + Add -> bias and explicit zero Pad -> Conv pads before
    quantizing (fewer float islands between int8 kernels).
    transformer_fusion: onnxruntime's BERT-family fusions first (``norm``: SkipLayerNormalization and GELU;
    ``attention``: also Attention and EmbedLayerNormalization; ``off``, the default: onnxruntime applies the
    norm/GELU fusions itself when it loads the QDQ model, and a fused Attention keeps Q/K/V float).
    placement: how the nodes that run faster in float are chosen (see PLACEMENTS and quantization.placement):
    ``cost-model`` (default) estimates float and int8 kernel and Q/DQ times from the cost table of the target
    (``quantization/cost_models``); ``measure`` profiles the model on this host's onnxruntime and times the
    candidates against fp32 (the effective recipe records the outcome as ``fixed`` with its ``float_nodes``);
    ``fixed`` keeps exactly ``float_nodes`` float. ``placement_batch`` is the batch the costs are estimated or
    measured at (a static batch dimension wins); a plan must be ``placement_min_gain`` faster than float (0.05 =
    5%) or every node stays float and the result says "no faster plan".

    Weight compression modes (activations stay float; see quantization.weight_only and quantization.sharing):
    ``weight_only``: MatMul/Gemm weights (and Gather embedding tables when ``embeddings``) block-wise in
    ``weight_bits`` (4 or 8) bits along K with ``block_size`` rows per scale (a power of two >= 16), rounded by
    ``method`` ``rtn`` (round to nearest) or ``gptq`` (second-order error feedback with the calibration data's
    X^T X, damping ``gptq_damp``); stored as ``weight_format`` ``matmulnbits`` (com.microsoft MatMulNBits /
    GatherBlockQuantized, ``accuracy_level`` its attribute) or ``qdq`` (DequantizeLinear with block_size, opset
    >= 21), ``auto`` = matmulnbits unless the target is tensorrt. ``node_bits``: selector -> bits per node (e.g.
    keep the attention output projection in 8 bits). ``codebook``: weight sharing, a k-means codebook of
    2**weight_bits centroids per layer or per output channel (``codebook_scope``), seeded deterministically
    (``codebook_init`` linear, or kmeans++ with the recipe seed), ``kmeans_iterations`` Lloyd steps, then (with
    ``refine`` and calibration data) the centroids refit by least squares against the layer's output.
    ``ternary``/``binary``: per-output-channel {-a, 0, +a} (TWN threshold ``ternary_threshold`` * mean|W|) or
    {-a, +a}. Weights with fewer than ``min_weight_elements`` elements stay float in every weight mode.
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
    smooth_quant: float | str | None = "auto"
    rewrites: bool = True
    verify: bool = True
    strict: bool = False  # calibration-data warnings (constant inputs, extreme outliers) become errors
    weight_bits: int = 4
    block_size: int = 32
    method: str = "rtn"
    weight_format: str = "auto"
    weight_symmetric: bool = False
    accuracy_level: int = 0
    embeddings: bool = True
    gptq_damp: float = 0.01
    node_bits: dict[str, int] = field(default_factory=dict)
    codebook_scope: str = "layer"
    codebook_init: str = "linear"
    kmeans_iterations: int = 25
    refine: bool = True
    ternary_threshold: float = 0.7
    min_weight_elements: int = 1024
    transformer_fusion: str = "off"
    placement: str = "cost-model"
    float_nodes: tuple[str, ...] = ()  # exact node names kept float by a placement (written back by measure)
    placement_batch: int = 32
    placement_min_gain: float = 0.05
    placement_iterations: int = 10  # measure: interleaved timed rounds per candidate

    def __post_init__(self):
        _one_of("mode", self.mode, MODES)
        if self.target not in TARGETS and isinstance(self.target, str) and provider_key(self.target) not in (None, "auto"):
            object.__setattr__(self, "target", provider_key(self.target))  # CUDAExecutionProvider -> cuda
        self._check_weight_settings()
        _one_of("target", self.target, TARGETS)
        _one_of("calibrator", self.calibrator, CALIBRATORS)
        _one_of("activation_dtype", self.activation_dtype, ACTIVATION_DTYPES)
        _one_of("layer_policy", self.layer_policy, LAYER_POLICIES)
        _one_of("placement", self.placement, PLACEMENTS)
        _one_of("transformer_fusion", self.transformer_fusion, TRANSFORMER_FUSIONS)
        self._check_placement()
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
        if self.smooth_quant is None:
            object.__setattr__(self, "smooth_quant", "off")
        if self.smooth_quant not in ("auto", "off") and (isinstance(self.smooth_quant, (bool, str)) or not isinstance(
                self.smooth_quant, (int, float)) or not math.isfinite(self.smooth_quant) or not 0 < self.smooth_quant < 1):
            raise RecipeError(f"smooth_quant must be 'auto', 'off' or an alpha in (0, 1), got {self.smooth_quant!r}",
                              hint="e.g. smooth_quant = 0.5")
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

    def _check_placement(self) -> None:
        object.__setattr__(self, "float_nodes", tuple(self.float_nodes))
        if any(not isinstance(n, str) or not n for n in self.float_nodes):
            raise RecipeError(f"float_nodes must be node names, got {list(self.float_nodes)!r}",
                              hint='e.g. float_nodes = ["Conv_3"] (exact names, see the report\'s placement section)')
        for key in ("placement_batch", "placement_iterations"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RecipeError(f"{key} must be a positive integer, got {v!r}", hint=f"e.g. {key} = 32")
        g = self.placement_min_gain
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or not 0 <= g < 1:
            raise RecipeError(f"placement_min_gain must be a fraction in [0, 1), got {g!r}", hint="e.g. 0.05 (5%)")

    def _check_weight_settings(self) -> None:
        _one_of("method", self.method, WEIGHT_METHODS)
        _one_of("weight_format", self.weight_format, WEIGHT_FORMATS)
        _one_of("codebook_scope", self.codebook_scope, CODEBOOK_SCOPES)
        _one_of("codebook_init", self.codebook_init, CODEBOOK_INITS)
        for key in ("weight_symmetric", "embeddings", "refine"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"{key} must be true or false, got {getattr(self, key)!r}", hint=f"{key} = true")
        _int_in("weight_bits", self.weight_bits, 1, 8)
        if self.mode == "weight_only" and self.weight_bits not in (4, 8):
            raise RecipeError(f"weight_only quantization takes weight_bits 4 or 8, got {self.weight_bits}",
                              hint="weight_bits = 4 (MatMulNBits int4) or 8")
        _int_in("block_size", self.block_size, 16, 4096)
        if self.block_size & (self.block_size - 1):
            raise RecipeError(f"block_size must be a power of two, got {self.block_size}", hint="e.g. 32 or 128")
        _int_in("accuracy_level", self.accuracy_level, 0, 4)
        _int_in("kmeans_iterations", self.kmeans_iterations, 1, 1000)
        _int_in("min_weight_elements", self.min_weight_elements, 0, 2**62)
        for key, lo, hi in (("gptq_damp", 0.0, 1.0), ("ternary_threshold", 0.0, 2.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
                raise RecipeError(f"{key} must be in ({lo:g}, {hi:g}], got {v!r}", hint=f"e.g. {key} = "
                                  + ("0.01" if key == "gptq_damp" else "0.7"))
        bits = {}
        for pattern, value in dict(self.node_bits).items():
            _check_pattern("node_bits", pattern)
            if isinstance(value, bool) or value not in (4, 8):
                raise RecipeError(f"node_bits['{pattern}'] must be 4 or 8, got {value!r}",
                                  hint="e.g. [quantize.node_bits] \"re:attention\" = 8")
            bits[pattern] = int(value)
        object.__setattr__(self, "node_bits", bits)

    @property
    def compresses_weights_only(self) -> bool:
        return self.mode in WEIGHT_MODES

    def resolved_weight_format(self) -> str:
        """matmulnbits (com.microsoft kernels of onnxruntime) unless asked for, or the target is tensorrt."""
        if self.weight_format != "auto":
            return self.weight_format
        return "qdq" if self.target == "tensorrt" else "matmulnbits"

    def bits_for(self, name: str, op_type: str) -> int:
        """Weight bits of one node: the first ``node_bits`` selector that matches it, else ``weight_bits``."""
        hit = next((b for p, b in self.node_bits.items() if matches(p, name, op_type)), None)
        return self.weight_bits if hit is None else hit

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


def _int_in(key: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RecipeError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}", hint=f"e.g. {key} = {lo}")


def _check_pattern(key: str, pattern: object) -> None:
    error = selector_error(pattern)
    if error is not None:
        raise RecipeError(f"{key}: {error}", hint="a node name, an op type, a glob such as 'conv*', or re:<regex>")


def matches(pattern: str, name: str, op_type: str) -> bool:
    """Does a selection entry match a node (see onnxcompress.ir.query.node_matches)?"""
    return node_matches(pattern, name, op_type)
