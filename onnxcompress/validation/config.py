"""Typed configuration of validation and latency profiling (the recipe's [validate] section); no numpy here, so
that the CLI starts fast."""

from __future__ import annotations

from dataclasses import dataclass, field

from onnxcompress.errors import RecipeError
from onnxcompress.runtime.providers import check_provider_spec

#: task metrics computed from labels: class indices (metrics.py), strings or sequences with a decoder (text.py)
CLASS_METRICS = ("top1", "top5", "f1", "auc")
TASK_METRICS = CLASS_METRICS + ("cer", "exact_match")
DECODERS = ("ctc_greedy",)

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
    """Latency measurement: warm-up, then ``iterations`` interleaved timed runs per model and batch size."""

    enabled: bool = True
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 10
    iterations: int = 50
    op_profile: bool = True  # per-op-type time share and node placement from ORT's profiling JSON
    op_profile_runs: int = 10

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0
                                       for b in self.batch_sizes):
            raise RecipeError(f"batch_sizes must be positive integers, got {self.batch_sizes!r}",
                              hint="e.g. batch_sizes = [1, 8, 32]")
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        for name, low in (("warmup", 0), ("iterations", 1), ("op_profile_runs", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise RecipeError(f"{name} must be an integer >= {low}, got {v!r}", hint=f"e.g. {name} = 20")


@dataclass(frozen=True)
class ValidateConfig:
    """How a candidate is compared with its reference.

    ``metrics``: task metrics from labels (``auto`` = top1, top5 when there are >= 5 classes, f1, and auc for a
    binary output; cer and exact_match for string or sequence labels). ``output``: the output holding the class
    scores (default: the first one). ``tolerances``: per-output atol/rtol, ``""`` is the default.
    ``max_samples``: evaluate at most this many samples. ``decoder`` (``ctc_greedy``), ``charset`` (the
    characters of the non-blank classes, inline) or ``charset_file`` (one per line), ``blank`` (the blank class
    index), ``time_major`` ([T, N, C] outputs): how per-timestep scores become text for string/sequence labels.
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

    def __post_init__(self):
        if self.decoder is not None and self.decoder not in DECODERS:
            raise RecipeError(f"unknown decoder '{self.decoder}'", hint=f"use one of {DECODERS}")
        if self.charset is not None and self.charset_file is not None:
            raise RecipeError("give charset or charset_file, not both", hint="charset_file = 'dict.txt'")
        if isinstance(self.blank, bool) or not isinstance(self.blank, int):
            raise RecipeError(f"blank must be a class index, got {self.blank!r}", hint="blank = 0 (or -1: the last)")
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
