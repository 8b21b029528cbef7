"""One streaming pass over evaluation data: reference and candidate run batch by batch; task metrics, fidelity
and the tolerance comparison are accumulated without keeping the outputs (memory does not grow with the data).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnx

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.data.labels import is_class_labels
from onnxcompress.errors import InputMismatchError, ModelError, ModelFormatError, RecipeError
from onnxcompress.passes.progress import Progress, track
from onnxcompress.runtime.session import SessionOptions, make_session, run
from onnxcompress.validation.compare import Comparison, OutputComparison
from onnxcompress.validation.config import DEFAULT_LABELS, ValidateConfig, tolerance_for
from onnxcompress.validation.kind_metrics import KindAccumulator, OutputFidelity, output_fidelity
from onnxcompress.validation.metrics import Fidelity, FidelityAccumulator, TaskAccumulator, class_scores
from onnxcompress.validation.outputs import CLASS_KINDS, infer_kinds, primary_output
from onnxcompress.validation.text import TEXT_METRICS, CTCGreedy, TextAccumulator, describe_labels, read_charset

log = logging.getLogger(__name__)


class Metric(Protocol):
    """A user metric: ``update`` per batch with the model's outputs and the extra data keys, then ``compute``."""

    def update(self, outputs: dict[str, np.ndarray], extras: dict[str, np.ndarray]) -> None: ...

    def compute(self) -> float: ...


class BatchMeanMetric:
    """Wraps ``fn(outputs, extras) -> float`` (one value per batch) as a sample-weighted mean."""

    def __init__(self, fn: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], float]):
        self.fn = fn
        self.total = 0.0
        self.count = 0

    def update(self, outputs, extras) -> None:
        n = len(next(iter(outputs.values())))
        self.total += float(self.fn(outputs, extras)) * n
        self.count += n

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


def as_metric(obj: Any) -> Metric:
    if hasattr(obj, "update") and hasattr(obj, "compute"):
        return copy.deepcopy(obj)
    if callable(obj):
        return BatchMeanMetric(obj)
    raise TypeError(f"a user metric must have update()/compute() or be a callable, got {type(obj).__name__}")


@dataclass(frozen=True)
class TaskMetrics:
    """Task metrics of both models against the labels (metric name -> value)."""

    reference: dict[str, float]
    candidate: dict[str, float]

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"reference": dict(self.reference), "candidate": dict(self.candidate)}


@dataclass(frozen=True)
class ValidationResult:
    samples: int
    primary_output: str
    labels: str | None
    metrics: tuple[str, ...]
    task: TaskMetrics | None
    fidelity: dict[str, Fidelity]
    comparison: dict[str, Comparison]
    extra_keys: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    kinds: dict[str, OutputFidelity] = field(default_factory=dict)  # task-aware fidelity of every output

    @property
    def comparison_passed(self) -> bool:
        return all(c.passed for c in self.comparison.values())

    @property
    def floors_passed(self) -> bool:
        """Every output meets its kind's fidelity floor (validation.kind_metrics)."""
        return all(k.floor.passed for k in self.kinds.values())

    @property
    def primary(self) -> Fidelity:
        return self.fidelity[self.primary_output]

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "primary_output": self.primary_output, "labels": self.labels,
                "metrics": list(self.metrics), "task": None if self.task is None else self.task.to_dict(),
                "fidelity": {k: {**v.to_dict(), **(self.kinds[k].to_dict() if k in self.kinds else {})}
                             for k, v in self.fidelity.items()},
                "floors_passed": self.floors_passed,
                "comparison": {k: v.to_dict() for k, v in self.comparison.items()},
                "comparison_passed": self.comparison_passed,
                "extra_keys": list(self.extra_keys), "notes": list(self.notes)}


def resolve_metrics(requested: tuple[str, ...], n_classes: int) -> tuple[tuple[str, ...], list[str]]:
    """Expand ``auto``; drop metrics the output cannot support, with a note."""
    notes: list[str] = []
    if "auto" in requested:
        metrics = ["top1"] + (["top5"] if n_classes >= 5 else []) + ["f1"] + (["auc"] if n_classes <= 2 else [])
        return tuple(metrics), notes
    metrics = []
    for m in requested:
        if m == "auc" and n_classes > 2:
            notes.append(f"auc skipped: the output has {n_classes} classes (binary only)")
        elif m == "top5" and n_classes < 5:
            notes.append(f"top5 skipped: the output has only {n_classes} classes")
        else:
            metrics.append(m)
    return tuple(metrics), notes


def resolve_text_metrics(requested: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """``auto`` -> cer and exact_match; class metrics asked for on string/sequence labels are dropped with a note."""
    if "auto" in requested:
        return TEXT_METRICS, []
    kept = tuple(m for m in requested if m in TEXT_METRICS)
    dropped = [m for m in requested if m not in TEXT_METRICS]
    notes = [f"{', '.join(dropped)} skipped: the labels are not class indices"] if dropped else []
    return kept, notes


def decoder_of(config: ValidateConfig) -> CTCGreedy:
    charset = read_charset(config.charset_file) if config.charset_file else config.charset
    return CTCGreedy(blank=config.blank, charset=charset, time_major=config.time_major)


def output_names(ref_sess, cand_sess) -> list[str]:
    ref = [o.name for o in ref_sess.get_outputs()]
    cand = {o.name for o in cand_sess.get_outputs()}
    missing = [n for n in ref if n not in cand]
    if missing:
        raise ModelError(f"the candidate has no output(s) {missing} (reference outputs: {ref})",
                         hint="compare models with the same output names")
    return ref


def check_inputs(reference: onnx.ModelProto, candidate: onnx.ModelProto) -> None:
    """Both models take the same inputs: names, dtypes, ranks and the static dims both declare."""
    ref = {s.name: s for s in model_input_specs(reference)}
    cand = {s.name: s for s in model_input_specs(candidate)}
    same = ref.keys() == cand.keys() and all(_compatible(ref[n], cand[n]) for n in ref)
    if not same:
        describe = lambda specs: ", ".join(f"{n}: {s.describe()}" for n, s in specs.items()) or "none"
        raise InputMismatchError(f"the models take different inputs: reference ({describe(ref)}) vs candidate "
                                 f"({describe(cand)})",
                                 hint="compare models with the same inputs (names, dtypes and shapes)")


def _compatible(a, b) -> bool:
    if a.dtype != b.dtype:
        return False
    if a.shape is None or b.shape is None:
        return True
    return len(a.shape) == len(b.shape) and all(
        not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a.shape, b.shape))


class _Run:
    """The accumulators of one validation run; the output kinds are inferred on the first batch."""

    def __init__(self, reference: onnx.ModelProto, outputs: list[str], config: ValidateConfig,
                 user_metrics: Mapping[str, Any]):
        self.config = config
        self.reference = reference
        if config.output is not None and config.output not in outputs:
            raise RecipeError(f"output '{config.output}' is not an output of the model (outputs: {outputs})",
                              hint="set --output / [validate] output to one of the model's outputs")
        self.primary = config.output or outputs[0]  # without one configured: chosen by kind on the first batch
        unknown = sorted(k for k in config.tolerances if k and k not in outputs)
        if unknown:
            raise RecipeError(f"tolerance(s) for {unknown}: no such output (the model's outputs are {outputs})",
                              hint="name an output in --tolerance OUTPUT:atol=..., or leave the name out for all")
        self.fidelity = {o: FidelityAccumulator() for o in outputs}
        self.kinds: dict[str, KindAccumulator] = {}
        self.compare = {o: OutputComparison(o, tolerance_for(config.tolerances, o), config.check_stat)
                        for o in outputs}
        self.user_specs = dict(user_metrics)
        self.user: dict[str, tuple[Metric, Metric]] = {n: (as_metric(m), as_metric(m)) for n, m in self.user_specs.items()}
        self.task: tuple[TaskAccumulator, TaskAccumulator] | None = None
        self.text: tuple[TextAccumulator, TextAccumulator] | None = None
        self.labels_kind: str | None = None  # "class" or a description of non-class labels
        self.metrics: tuple[str, ...] = ()
        self.notes: list[str] = []
        self.samples = 0

    def _infer(self, ref: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> None:
        decisions = infer_kinds(self.reference, ref, feeds, self.config.outputs)
        self.kinds = {n: KindAccumulator(d) for n, d in decisions.items()}
        if self.config.output is None:
            self.primary = primary_output(decisions, ref)

    def _class_labels(self) -> bool:
        """Labels score the primary output only when it holds class scores (or a decision)."""
        acc = self.kinds.get(self.primary)
        return acc is None or acc.decision.kind in CLASS_KINDS + ("decision",)

    def update(self, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], extras: dict[str, np.ndarray],
               feeds: dict[str, np.ndarray] | None = None) -> None:
        if not self.samples:
            self._infer(ref, feeds or {})
        for name, acc in self.fidelity.items():
            acc.update(ref[name], cand[name])
            self.compare[name].update(ref[name], cand[name])
            if name in self.kinds:
                self.kinds[name].update(ref[name], cand[name])
        labels = extras.get(self.config.labels)
        if labels is not None:
            self._update_labels(ref, cand, labels)
        for r_metric, c_metric in self.user.values():
            r_metric.update(ref, extras)
            c_metric.update(cand, extras)
        self.samples += len(next(iter(ref.values())))

    def _update_labels(self, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], labels: np.ndarray) -> None:
        """Class labels score the primary output when it holds class scores (or a decision); string or sequence
        labels go through the decoder; class labels of another kind of output are noted once, not scored."""
        is_class = self.labels_kind == "class" if self.labels_kind else is_class_labels(labels)
        if not is_class:
            self._update_text(ref[self.primary], cand[self.primary], labels)
        elif self._class_labels():
            if self.task is None:
                self.labels_kind = "class"
                n_classes = max(class_scores(ref[self.primary]).shape[1], 2)
                self.metrics, self.notes = resolve_metrics(self.config.metrics, n_classes)
                self.task = (TaskAccumulator(self.metrics), TaskAccumulator(self.metrics))
            self.task[0].update(ref[self.primary], labels)
            self.task[1].update(cand[self.primary], labels)
        elif self.labels_kind is None:
            self.labels_kind = "class"
            kind = self.kinds[self.primary].decision.kind
            self.notes.append(f"labels '{self.config.labels}' not scored: the primary output '{self.primary}' is "
                              f"a {kind}, not class scores (fidelity is judged by its kind instead)")

    def _update_text(self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray) -> None:
        """String or sequence labels: scored through the decoder when one is configured, else noted once."""
        if self.labels_kind is None:
            self.labels_kind = describe_labels(labels)
            if self.config.decoder is None:
                self.notes.append(f"labels '{self.config.labels}' are {self.labels_kind}, not class indices: kept, "
                                  "but not scored (give a decoder: --decoder ctc_greedy --charset FILE, for cer "
                                  "and exact_match)")
                return
            self.metrics, self.notes = resolve_text_metrics(self.config.metrics)
            self.text = (TextAccumulator(decoder_of(self.config)), TextAccumulator(decoder_of(self.config)))
        if self.text is not None:
            self.text[0].update(ref, labels)
            self.text[1].update(cand, labels)

    def _task_results(self) -> tuple[dict[str, float], dict[str, float]]:
        if self.task is not None:
            return self.task[0].result(), self.task[1].result()
        if self.text is not None:
            return self.text[0].result(self.metrics), self.text[1].result(self.metrics)
        return {}, {}

    def result(self, extra_keys: list[str]) -> ValidationResult:
        task = None
        if self.task is not None or self.text is not None or self.user:
            task = TaskMetrics(*self._task_results())
            for name, (r_metric, c_metric) in self.user.items():
                task.reference[name] = float(r_metric.compute())
                task.candidate[name] = float(c_metric.compute())
        notes = list(self.notes)
        if self.task is None and self.labels_kind is None:
            notes.append(f"no task metrics: the evaluation data has no '{self.config.labels}' key "
                         f"(it has {extra_keys or 'only model inputs'})")
        kinds = {n: output_fidelity(a, self.config.floors) for n, a in self.kinds.items()}
        scored = self.task is not None or self.text is not None
        return ValidationResult(self.samples, self.primary, self.config.labels if scored else None,
                                self.metrics + tuple(self.user), task,
                                {n: a.result() for n, a in self.fidelity.items()},
                                {n: c.result() for n, c in self.compare.items()}, tuple(extra_keys), tuple(notes),
                                kinds)


def _check_labels(config: ValidateConfig, extra_keys: list[str]) -> None:
    """A labels key other than the default must exist in the data (the default one is used when present)."""
    if config.labels != DEFAULT_LABELS and config.labels not in extra_keys:
        raise RecipeError(f"labels key '{config.labels}' is not in the evaluation data (its other keys: "
                          f"{extra_keys or 'none'})", hint="give --labels one of the data's keys, or leave it out")


def _session(model: onnx.ModelProto, file: Any, options: SessionOptions):
    """A session from the model's file when there is one (a load repair onnxruntime needs falls back to the proto)."""
    if file is not None:
        try:
            return make_session(file, options)
        except ModelFormatError:
            log.info("%s: onnxruntime refused the file as written; using the loaded (repaired) model", file)
    return make_session(model, options)


def evaluate(reference: onnx.ModelProto, candidate: onnx.ModelProto, data, config: ValidateConfig,
             user_metrics: Mapping[str, Any] | None = None,
             progress: Progress | None = None, files: tuple[Any, Any] = (None, None)) -> ValidationResult:
    """Stream ``data`` (an InputData) through both models with identical session options. ``files``: the paths the
    models were loaded from, if any; their sessions read those files (no serialized copy of a large model)."""

    check_inputs(reference, candidate)
    options = SessionOptions(providers=config.providers, threads=config.threads)
    ref_sess, cand_sess = _session(reference, files[0], options), _session(candidate, files[1], options)
    outputs = output_names(ref_sess, cand_sess)
    bound = data.batched(config.batch_size).limited(config.max_samples).bind(model_input_specs(reference))
    total = len(bound)
    state = _Run(reference, outputs, config, user_metrics or {})
    _check_labels(config, bound.extra_keys)
    with track(progress, "validate (reference and candidate)", -(-total // config.batch_size), "batches") as step:
        for feeds, extras in bound.batches():
            state.update(run(ref_sess, feeds, outputs), run(cand_sess, feeds, outputs), extras, feeds)
            step.advance()
    return state.result(bound.extra_keys)
