"""Typed configuration of validation and latency profiling (the recipe's [validate] section); no numpy here, so
that the CLI starts fast."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from onnxcompress.errors import RecipeError
from onnxcompress.runtime.providers import check_provider_spec

#: task metrics computed from labels: class indices (metrics.py), strings or sequences with a decoder (text.py)
CLASS_METRICS = ("top1", "top5", "f1", "auc")
TASK_METRICS = CLASS_METRICS + ("cer", "exact_match")
DECODERS = ("ctc_greedy",)

#: what an output is (validation.outputs infers it; ``[validate.outputs.NAME] kind`` overrides it)
OUTPUT_KINDS = ("class_logits", "class_probabilities", "embedding", "dense_map", "sequence", "regression", "decision",
                "state")

CHECK_STATS = ("elemwise", "max", "mean", "median")
#: the data key read as labels unless another is named (a key named explicitly must exist)
DEFAULT_LABELS = "labels"
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5


@dataclass(frozen=True)
class Tolerance:
    """Absolute and relative tolerance of one output; an element fails only if it exceeds both."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def __post_init__(self):
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise RecipeError(f"{name} must be a number >= 0, got {v!r}", hint="e.g. atol = 1e-3")
        object.__setattr__(self, "atol", float(self.atol))
        object.__setattr__(self, "rtol", float(self.rtol))


def tolerance_for(tolerances: dict[str, Tolerance], output: str) -> Tolerance:
    return tolerances.get(output) or tolerances.get("") or Tolerance()


def parse_tolerance(spec: str) -> tuple[str, Tolerance]:
    """``[OUTPUT:]atol=X,rtol=Y`` -> (output or "", Tolerance); a missing atol/rtol keeps the default."""
    name, _, body = spec.rpartition(":") if ":" in spec else ("", "", spec)
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, val = part.partition("=")
        if not sep or key.strip() not in ("atol", "rtol"):
            raise RecipeError(f"bad tolerance '{spec}'", hint="write [OUTPUT:]atol=1e-3,rtol=1e-2")
        try:
            values[key.strip()] = float(val)
        except ValueError as e:
            raise RecipeError(f"bad tolerance value '{val}' in '{spec}'", hint="use numbers such as 1e-3") from e
    if not values:
        raise RecipeError(f"bad tolerance '{spec}'", hint="write [OUTPUT:]atol=1e-3,rtol=1e-2")
    return name, Tolerance(**values)


PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")  # or onnxruntime's full names (runtime.providers)


@dataclass(frozen=True)
class ProfileConfig:
    """Latency measurement: warm-up, then timed runs per model and batch size, interleaved (A B B A ...).

    Two models (a reference and a candidate) are timed in *rounds*: the first ``min_rounds`` rounds share
    ``iterations`` runs per model (each round runs ceil(iterations / min_rounds)); more rounds follow until the
    ``confidence`` interval of the median speed-up over the rounds is narrower than ``max_spread`` (relative to the
    median), ``max_rounds`` is reached or ``time_budget_s`` (per batch size) is spent. ``min_speedup`` is judged on
    the interval's lower bound. One model is timed in one round of ``iterations`` runs.
    """

    enabled: bool = True
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 10
    iterations: int = 50
    op_profile: bool = True  # per-op-type time share and node placement from ORT's profiling JSON
    op_profile_runs: int = 10
    min_rounds: int = 5
    max_rounds: int = 40
    max_spread: float = 0.05
    time_budget_s: float = 30.0
    confidence: float = 0.9

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0
                                       for b in self.batch_sizes):
            raise RecipeError(f"batch_sizes must be positive integers, got {self.batch_sizes!r}",
                              hint="e.g. batch_sizes = [1, 8, 32]")
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        for name, low in (("warmup", 0), ("iterations", 1), ("op_profile_runs", 1), ("min_rounds", 1),
                          ("max_rounds", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise RecipeError(f"{name} must be an integer >= {low}, got {v!r}", hint=f"e.g. {name} = 20")
        if self.max_rounds < self.min_rounds:
            raise RecipeError(f"max_rounds ({self.max_rounds}) must be >= min_rounds ({self.min_rounds})",
                              hint="e.g. min_rounds = 5, max_rounds = 40")
        for name, lo, hi in (("max_spread", 0.0, math.inf), ("time_budget_s", 0.0, math.inf),
                             ("confidence", 0.5, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v < hi:
                raise RecipeError(f"{name} must be a number in ({lo:g}, {hi:g}), got {v!r}",
                                  hint="e.g. max_spread = 0.05, time_budget_s = 30, confidence = 0.9")
            object.__setattr__(self, name, float(v))

    @property
    def round_iterations(self) -> int:
        """Timed runs per model in one A/B round."""
        return -(-self.iterations // self.min_rounds)


@dataclass(frozen=True)
class OutputSpec:
    """What one output is, when inference should not decide: ``kind`` (one of OUTPUT_KINDS) and, for decisions and
    probability maps, the ``threshold`` a value must exceed to count as positive (default 0.5)."""

    kind: str
    threshold: float | None = None

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise RecipeError(f"unknown output kind {self.kind!r}", hint=f"use one of {', '.join(OUTPUT_KINDS)}")
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise RecipeError(f"threshold must be a finite number, got {t!r}", hint="e.g. threshold = 0.5")
        if t is not None:
            object.__setattr__(self, "threshold", float(t))


def parse_output_kind(spec: str) -> tuple[str, OutputSpec]:
    """``NAME=KIND[,threshold=T]`` (the --output-kind flag) -> (output name, OutputSpec)."""
    head, *rest = spec.split(",")
    name, sep, kind = head.rpartition("=")
    if not sep or not name:
        raise RecipeError(f"bad --output-kind '{spec}'", hint="write NAME=KIND, e.g. sentence_embedding=embedding")
    threshold = None
    for part in rest:
        key, sep, value = part.partition("=")
        if key.strip() != "threshold" or not sep:
            raise RecipeError(f"bad --output-kind option '{part}' in '{spec}'",
                              hint="the only option is threshold, e.g. out=decision,threshold=0.3")
        try:
            threshold = float(value)
        except ValueError as e:
            raise RecipeError(f"bad threshold '{value}' in '{spec}'", hint="use a number such as 0.5") from e
    return name, OutputSpec(kind.strip(), threshold)


@dataclass(frozen=True)
class FidelityFloors:
    """The least fidelity to the reference each output kind must keep (the default gate and quantize's
    self-check judge every output by its kind's floor; see docs/report.md).

    Agreements, cosine and IoU are fractions that must be at least the floor; relative errors
    (``||candidate - reference|| / ||reference||``) must be at most it.
    """

    class_top1_agreement: float = 0.98  # class_logits, class_probabilities: same top-1 class
    embedding_cosine: float = 0.99  # embedding: mean cosine of the vectors along the last axis
    dense_map_iou: float = 0.9  # dense_map with values in [0, 1]: IoU of the maps thresholded at 0.5
    dense_map_relative_error: float = 0.05  # other dense maps
    sequence_step_agreement: float = 0.97  # sequence: same argmax class at each step
    decision_agreement: float = 0.98  # decision: same thresholded (or exact integer) decision
    regression_relative_error: float = 0.05  # regression values
    state_relative_error: float = 0.05  # recurrent state passed back to the next call

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            upper = math.inf if f.name.endswith("relative_error") else 1.0
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= upper:
                raise RecipeError(f"floor {f.name} must be a number in [0, {upper:g}], got {v!r}",
                                  hint=f"e.g. {f.name} = {f.default}")
            object.__setattr__(self, f.name, float(v))


@dataclass(frozen=True)
class ValidateConfig:
    """How a candidate is compared with its reference.

    ``metrics``: task metrics from labels (``auto`` = top1, top5 when there are >= 5 classes, f1, and auc for a
    binary output; cer and exact_match for string or sequence labels). ``output``: the primary output (default:
    chosen by kind, see validation.outputs). ``tolerances``: per-output atol/rtol, ``""`` is the default.
    ``max_samples``: evaluate at most this many samples. ``decoder`` (``ctc_greedy``), ``charset`` (the
    characters of the non-blank classes, inline) or ``charset_file`` (one per line), ``blank`` (the blank class
    index), ``time_major`` ([T, N, C] outputs): how per-timestep scores become text for string/sequence labels.
    ``outputs``: the kind of an output when inference should not decide (name -> OutputSpec). ``floors``: the
    fidelity each kind must keep (the default gate and quantize's self-check use them).
    """

    labels: str = DEFAULT_LABELS
    metrics: tuple[str, ...] = ("auto",)
    output: str | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    check_stat: str = "elemwise"
    batch_size: int = 32
    max_samples: int | None = None
    providers: str = "auto"
    threads: int = 0
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    decoder: str | None = None
    charset: str | None = None
    charset_file: str | None = None
    blank: int = 0
    time_major: bool = False
    outputs: dict[str, OutputSpec] = field(default_factory=dict)
    floors: FidelityFloors = field(default_factory=FidelityFloors)

    def __post_init__(self):
        if self.decoder is not None and self.decoder not in DECODERS:
            raise RecipeError(f"unknown decoder '{self.decoder}'", hint=f"use one of {DECODERS}")
        if self.charset is not None and self.charset_file is not None:
            raise RecipeError("give charset or charset_file, not both", hint="charset_file = 'dict.txt'")
        if isinstance(self.blank, bool) or not isinstance(self.blank, int):
            raise RecipeError(f"blank must be a class index, got {self.blank!r}", hint="blank = 0 (or -1: the last)")
        check_output_specs(self.outputs)
        if not isinstance(self.floors, FidelityFloors):
            raise RecipeError("[validate.floors] must be a table of floors", hint="e.g. embedding_cosine = 0.99")
        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = [m for m in self.metrics if m not in TASK_METRICS + ("auto",)]
        if unknown:
            raise RecipeError(f"unknown metric(s) {unknown}", hint=f"use auto or any of {TASK_METRICS}")
        if self.check_stat not in CHECK_STATS:
            raise RecipeError(f"unknown check_stat '{self.check_stat}'", hint=f"use one of {CHECK_STATS}")
        check_provider_spec(self.providers)
        for name in ("batch_size", "max_samples"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise RecipeError(f"{name} must be a positive integer, got {v!r}", hint=f"e.g. {name} = 64")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise RecipeError(f"threads must be an integer >= 0, got {self.threads!r}", hint="0 = onnxruntime default")
        for k, v in self.tolerances.items():
            if not isinstance(v, Tolerance):
                raise RecipeError(f"tolerance of output '{k}' must be a table with atol/rtol",
                                  hint='e.g. [validate.tolerances.""] atol = 1e-3')


def check_output_specs(specs: dict[str, OutputSpec]) -> None:
    for k, v in specs.items():
        if not isinstance(k, str) or not k:
            raise RecipeError(f"output names must be non-empty strings, got {k!r}", hint="name a model output")
        if not isinstance(v, OutputSpec):
            raise RecipeError(f"the kind of output '{k}' must be a table with kind (and threshold)",
                              hint=f'e.g. [validate.outputs."{k}"] kind = "embedding"')
