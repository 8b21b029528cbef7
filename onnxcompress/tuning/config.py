"""TuneConfig: the goal and the budget of the accuracy-aware search (typed, frozen, validated in __post_init__)."""

from __future__ import annotations

from dataclasses import dataclass

from onnxcompress.errors import RecipeError
from onnxcompress.quantization.config import CALIBRATORS

#: goal metrics: the drop is a fraction (0.005 = half a point of top-1; for cosine, 1 - mean cosine to fp32);
#: ``floors``: every output keeps its kind's fidelity floor ([validate.floors]; the drop is the summed shortfall)
METRICS = ("top1", "agreement", "cosine", "floors")
#: higher-precision choices for one node: int16 activations (weights stay int8; static mode), 8-bit weights instead
#: of ``weight_bits`` (weight_only mode), or the node kept float (every mode)
PRECISIONS = ("int16", "int8", "float")


def _calibrators(value) -> tuple[str, ...]:
    """The search's alternative calibrators, validated."""
    names = tuple(value)
    odd = [c for c in names if c not in CALIBRATORS]
    if odd:
        raise RecipeError(f"unknown calibrator(s) {odd} in calibrators", hint=f"use any of {CALIBRATORS}, or []")
    return names


@dataclass(frozen=True)
class TuneConfig:
    """What the mixed-precision search must reach and how much it may spend.

    ``max_drop``: allowed drop of ``metric`` against the float model (top1: reference top-1 minus candidate
    top-1; agreement: 1 - top-1 agreement; cosine: 1 - mean cosine, both on the primary output; floors: the summed
    shortfall of every output below its kind's floor, so ``max_drop = 0`` asks for every floor to be met).
    ``time_budget``: seconds for the whole search
    (None = unlimited); the best model found so far is always kept. ``precisions``: the higher-precision choices
    tried per node, in order of preference. ``top_k``: nodes whose full-model sensitivity is measured after the
    one-pass proxy. ``max_candidates``: how many of the ranked nodes the greedy phase may move to higher precision.
    ``metric`` ``auto`` means top1 when the evaluation data has labels, else agreement (resolved and
    recorded before the search). ``measure_latency``: time every trial against fp32 (interleaved) and prefer the
    faster of equally good
    choices; off, the choice follows ``precisions`` order and the result is deterministic. ``output``: the model
    output the goal metric is measured on (default: the first; e.g. the pooled sentence embedding of an encoder).
    ``calibrators``: static mode, when full INT8 misses the goal, the whole model is tried with each of these
    calibrators too; one that meets the goal ends the search, one that at least halves the drop is kept for the
    per-node search (empty: only the configured one).
    """

    metric: str = "top1"
    max_drop: float = 0.005
    time_budget: float | None = None
    precisions: tuple[str, ...] = ("float", "int16", "int8")
    top_k: int = 5
    max_candidates: int = 16
    eval_samples: int | None = 1000
    batch_size: int = 32
    measure_latency: bool = True
    latency_batch: int = 32
    latency_iterations: int = 10
    threads: int = 0
    labels: str = "labels"
    output: str | None = None  # the output the goal is measured on (default: the model's first output)
    calibrators: tuple[str, ...] = ("percentile", "mse", "entropy")

    def __post_init__(self):
        if self.metric not in (*METRICS, "auto"):
            raise RecipeError(f"unknown tuning metric '{self.metric}'",
                              hint=f"use auto or one of {', '.join(METRICS)}")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) or not 0 <= self.max_drop < 1:
            raise RecipeError(f"max_drop must be a fraction in [0, 1), got {self.max_drop!r}",
                              hint="e.g. --max-drop 0.005 (half a point of top-1)")
        if self.time_budget is not None and not self.time_budget > 0:
            raise RecipeError(f"time_budget must be > 0 seconds, got {self.time_budget!r}", hint="e.g. --time-budget 300")
        object.__setattr__(self, "precisions", tuple(self.precisions))
        object.__setattr__(self, "calibrators", _calibrators(self.calibrators))
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if not self.precisions or bad:
            raise RecipeError(f"unknown precision choice(s) {bad or '(none given)'}", hint=f"use any of {PRECISIONS}")
        for name in ("top_k", "max_candidates", "batch_size", "latency_batch", "latency_iterations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "top_k" else 1):
                raise RecipeError(f"{name} must be a positive integer, got {v!r}", hint=f"e.g. {name} = 8")
        if self.output is not None and (not isinstance(self.output, str) or not self.output):
            raise RecipeError(f"output must be an output name, got {self.output!r}", hint="e.g. output = \"logits\"")
        if self.eval_samples is not None and (not isinstance(self.eval_samples, int) or self.eval_samples <= 0):
            raise RecipeError(f"eval_samples must be a positive integer, got {self.eval_samples!r}", hint="e.g. 1000")

    def usable_precisions(self, mode: str) -> tuple[str, ...]:
        """The choices that exist in ``mode``: static int16/float (in the given order); weight_only int8 then float
        (smaller first); dynamic and the other weight modes only float."""
        if mode == "static":
            return tuple(p for p in self.precisions if p != "int8") or ("float",)
        if mode == "weight_only":
            return tuple(p for p in ("int8", "float") if p in self.precisions) or ("float",)
        return ("float",)


@dataclass(frozen=True)
class SelfCheckConfig:
    """quantize's check of its own result (the recipe's [self_check]; on by default when no [tune] goal is given).

    ``holdout``: the fraction of the calibration samples held out (every k-th sample) to measure the quantized
    model's fidelity on, each output by its kind's floor ([validate.floors]); the rest calibrates. At least
    ``min_holdout`` and at most ``max_holdout`` samples are held out; with fewer than ``2 * min_holdout``
    calibration samples the check runs on the calibration data itself and says so. ``search``: when the full INT8
    plan misses a floor, run the accuracy-aware search (goal: every floor met) within ``time_budget`` seconds,
    trying ``calibrators`` on the whole model first; if no plan meets the floors, the best one is written and the
    command exits 1.
    """

    enabled: bool = True
    holdout: float = 0.2
    min_holdout: int = 8
    max_holdout: int = 256
    search: bool = True
    time_budget: float | None = 900.0
    calibrators: tuple[str, ...] = ("percentile", "mse", "entropy")  # the search's (TuneConfig.calibrators)

    def __post_init__(self):
        object.__setattr__(self, "calibrators", _calibrators(self.calibrators))
        for key in ("enabled", "search"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"{key} must be true or false, got {getattr(self, key)!r}", hint=f"{key} = true")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)) or not 0 < self.holdout < 1:
            raise RecipeError(f"holdout must be a fraction in (0, 1), got {self.holdout!r}", hint="e.g. holdout = 0.2")
        for key in ("min_holdout", "max_holdout"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RecipeError(f"{key} must be a positive integer, got {v!r}", hint=f"e.g. {key} = 8")
        if self.max_holdout < self.min_holdout:
            raise RecipeError(f"max_holdout ({self.max_holdout}) must be >= min_holdout ({self.min_holdout})",
                              hint="e.g. min_holdout = 8, max_holdout = 256")
        if self.time_budget is not None and (isinstance(self.time_budget, bool) or not self.time_budget > 0):
            raise RecipeError(f"time_budget must be > 0 seconds, got {self.time_budget!r}", hint="time_budget = 600")

    def holdout_every(self, samples: int) -> int | None:
        """Hold out every k-th sample (k returned), or None: too few samples, check on the calibration data."""
        if samples < 2 * self.min_holdout:
            return None
        wanted = min(max(round(samples * self.holdout), self.min_holdout), self.max_holdout, samples // 2)
        every = max(2, samples // wanted)
        while samples // every > self.max_holdout:
            every += 1
        return every
