"""What a trial is judged by: the goal metric on cached evaluation batches (the float model's outputs computed
once) and, optionally, the latency against fp32 timed interleaved in the same process.

The output kinds are inferred from the float model's first batch (validation.outputs). ``top1``/``agreement``/
``cosine`` are measured on the primary output (the most task-like kind); ``floors`` on every output, each by its
kind's metric against its floor (``drop`` is the sum of the shortfalls, 0 when every floor is met). The evaluation
batches are held in memory (at most ``eval_samples`` samples) because every trial replays them.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.data.labels import is_class_labels
from onnxcompress.errors import DataError, EmptyDataError, InputMismatchError
from onnxcompress.runtime.session import SessionOptions, make_session
from onnxcompress.tuning.config import TuneConfig
from onnxcompress.validation.config import FidelityFloors, OutputSpec
from onnxcompress.validation.kind_metrics import FloorCheck, KindAccumulator, output_fidelity
from onnxcompress.validation.metrics import FidelityAccumulator, TaskAccumulator
from onnxcompress.validation.outputs import KindDecision, infer_kinds, primary_output
from onnxcompress.validation.profile import feeds_for_batch, time_interleaved

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Score:
    """One model judged against the float reference on the evaluation batches."""

    metric: str
    value: float  # the candidate's value of the metric (top-1, agreement or cosine)
    reference: float  # the float model's value (1.0 for agreement/cosine)
    drop: float
    top1: float | None
    top1_reference: float | None
    agreement: float | None
    cosine: float
    floors: tuple[FloorCheck, ...] = ()  # every output against its kind's floor (metric "floors")

    def meets(self, max_drop: float) -> bool:
        return self.drop <= max_drop + 1e-12

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()
                               if k != "floors"}
        if self.floors:
            out["floors"] = {f.output: {"kind": f.kind, **f.to_dict()} for f in self.floors}
        return out


class Evaluator:
    """Reference outputs computed once; ``score(model)`` replays the same batches through a candidate.
    ``outputs``: kind overrides (validate's [outputs]); ``floors``: what the ``floors`` metric judges against."""

    def __init__(self, reference: onnx.ModelProto, data, config: TuneConfig, source: str, *,
                 outputs: dict[str, OutputSpec] | None = None, floors: FidelityFloors | None = None):

        self.config = config
        self.source = source
        self.floors = floors or FidelityFloors()
        limit = min(x for x in (data.limit, config.eval_samples) if x is not None) \
            if (data.limit or config.eval_samples) else None  # a limit already on the data is kept
        bound = data.batched(config.batch_size).limited(limit).bind(model_input_specs(reference))
        self.batches = [(feeds, extras.get(config.labels)) for feeds, extras in bound.batches()]
        if not self.batches:
            raise EmptyDataError(f"{data.source} contains no samples", hint="give at least one evaluation sample")
        self.samples = sum(len(next(iter(f.values()))) for f, _ in self.batches)
        self.has_labels = all(labels is not None and is_class_labels(labels) for _, labels in self.batches)
        if config.metric == "top1" and not self.has_labels:
            raise DataError(f"--metric top1 needs class labels: {data.source} has no integer '{config.labels}' key",
                            hint="pass --eval data with labels, or use --metric agreement (or cosine)")
        session = self._session(reference)
        names = [o.name for o in session.get_outputs()]
        if config.output is not None and config.output not in names:
            raise DataError(f"the goal's output '{config.output}' is not an output of the model (outputs: {names})",
                            hint="set [tune] output to one of the model's outputs")
        first = self._run(session, self.batches[0][0], names)
        self.kinds: dict[str, KindDecision] = infer_kinds(reference, dict(zip(names, first)), self.batches[0][0],
                                                          outputs)
        self.output = config.output or (primary_output(self.kinds, dict(zip(names, first))) if self.kinds
                                        else names[0])
        self.outputs = [n for n in names if n in self.kinds] if config.metric == "floors" else [self.output]
        self.reference = [self._run(session, feeds, self.outputs) for feeds, _ in self.batches]
        self.ref_task = self._task([r[self.outputs.index(self.output)] for r in self.reference]) \
            if self.has_labels else None

    def _session(self, model: onnx.ModelProto):

        return make_session(model, SessionOptions(providers="cpu", threads=self.config.threads, opt_level="all"))

    def _run(self, session, feeds, names: list[str]) -> list[np.ndarray]:
        try:
            return session.run(names, feeds)
        except Exception as e:  # onnxruntime's own exception classes
            raise InputMismatchError(f"the model failed on the evaluation data: {str(e).splitlines()[0]}",
                                     hint="check that the data matches the model's inputs") from e

    def _task(self, outputs: list[np.ndarray]) -> float:
        acc = TaskAccumulator(("top1",))
        for out, (_, labels) in zip(outputs, self.batches):
            acc.update(out, labels)
        return acc.result()["top1"]

    def _floors(self, outputs: list[list[np.ndarray]]) -> tuple[FloorCheck, ...]:
        checks = []
        for i, name in enumerate(self.outputs):
            acc = KindAccumulator(self.kinds[name])
            for ref, cand in zip(self.reference, outputs):
                acc.update(ref[i], cand[i])
            checks.append(output_fidelity(acc, self.floors).floor)
        return tuple(checks)

    def score(self, model: onnx.ModelProto) -> Score:
        session = self._session(model)
        outputs = [self._run(session, feeds, self.outputs) for feeds, _ in self.batches]
        at = self.outputs.index(self.output)
        fid = FidelityAccumulator()
        for ref, cand in zip(self.reference, outputs):
            fid.update(ref[at], cand[at])
        f = fid.result()
        top1 = self._task([o[at] for o in outputs]) if self.has_labels else None
        agreement, cosine = f.top1_agreement, float(f.cosine)
        metric = self.config.metric
        if metric == "floors":
            floors = self._floors(outputs)
            met = sum(c.passed for c in floors) / max(len(floors), 1)
            drop = sum(c.shortfall for c in floors)
            return Score(metric, met, 1.0, drop, top1, self.ref_task, agreement, cosine, floors)
        if metric == "agreement" and agreement is None:
            raise DataError(f"output '{self.output}' has no class axis, so top-1 agreement is undefined",
                            hint="use --metric cosine for embedding or regression outputs")
        value, ref = {"top1": (top1, self.ref_task), "agreement": (agreement, 1.0), "cosine": (cosine, 1.0)}[metric]
        return Score(metric, float(value), float(ref), float(ref - value), top1, self.ref_task, agreement, cosine)


class LatencyProbe:
    """p50 latency of a candidate at one batch size, timed interleaved with the fp32 model (ratio = fp32 / cand)."""

    def __init__(self, reference: onnx.ModelProto, evaluator: Evaluator, config: TuneConfig):

        self.config = config
        first = {k: np.concatenate([f[k] for f, _ in evaluator.batches]) for k in evaluator.batches[0][0]}
        self.feeds = feeds_for_batch(first, model_input_specs(reference), config.latency_batch)
        self.reference = evaluator._session(reference)

    def measure(self, model: onnx.ModelProto, clock=time.perf_counter) -> dict[str, float]:

        cand = make_session(model, SessionOptions(providers="cpu", threads=self.config.threads, opt_level="all"))
        fns = {"fp32": lambda: self.reference.run(None, self.feeds), "candidate": lambda: cand.run(None, self.feeds)}
        samples = time_interleaved(fns, warmup=2, iterations=self.config.latency_iterations, clock=clock)
        ref_ms, cand_ms = (statistics.median(samples[k]) * 1e3 for k in ("fp32", "candidate"))
        return {"batch": self.config.latency_batch, "fp32_p50_ms": round(ref_ms, 4), "p50_ms": round(cand_ms, 4),
                "speedup": round(ref_ms / cand_ms, 4) if cand_ms > 0 else float("inf")}
