"""The accuracy-aware mixed-precision search.

Start from the full INT8 plan; if it misses the goal, try the whole model with the other calibrators
(``TuneConfig.calibrators``: percentile, MSE and entropy ranges clip outliers minmax keeps) and go on with one that
clearly helps; then rank the nodes by sensitivity and move them, most sensitive first, to a higher precision (the
choices of ``TuneConfig.precisions``: float, or int16 activations) until the goal is met; then try to give back
each of those nodes while the goal still holds. Among choices that meet the goal the faster one wins (latency timed
against fp32 in the same process, interleaved), else the one with the smaller drop. With latency measured, whole-
model presets (only the layers with weights in INT8; dynamic quantization) are timed right after the baseline, so
the search can pick one of them when it is the fastest model that meets the goal (a preset that meets it ends the
search). Every trial is appended to the trace; the best model so far is saved (atomically) as soon as it is found,
so an interrupted or over-budget search still leaves a usable result. ``QuantizeResult.search.goal_met`` says
whether the goal was reached (the CLI exits 1 when it was not).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from onnxcompress.data.inputs import load_input_data
from onnxcompress.ir.io import save_model, write_text_atomic
from onnxcompress.passes.base import PassContext
from onnxcompress.passes.progress import NO_PROGRESS, ProgressTask, track
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.result import QuantizeResult, SearchSummary
from onnxcompress.tuning.config import TuneConfig
from onnxcompress.tuning.measure import Evaluator, LatencyProbe, Score
from onnxcompress.tuning.sensitivity import analyze
from onnxcompress.tuning.trials import Choice, TrialBuilder, choice_key
from onnxcompress.validation.config import FidelityFloors, OutputSpec

log = logging.getLogger(__name__)

#: an alternative calibrator is kept for the node search when its full-INT8 drop is at most this fraction of the
#: configured calibrator's
CALIBRATOR_GAIN = 0.5


@dataclass
class Trial:
    index: int
    phase: str
    choice: Choice
    score: Score
    met: bool
    seconds: float
    latency: dict[str, float] | None = None
    mode: str = "static"
    calibrator: str | None = None  # static mode: the calibrator of its ranges

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.index, "phase": self.phase, "mode": self.mode, "calibrator": self.calibrator,
                "higher_precision": dict(sorted(self.choice.items())),
                "goal_met": self.met, **self.score.to_dict(), "latency": self.latency,
                "seconds": round(self.seconds, 3)}


@dataclass
class SearchState:
    trials: list[Trial] = field(default_factory=list)
    cache: dict[tuple, Trial] = field(default_factory=dict)
    best: Trial | None = None
    stopped: str = ""


class MixedPrecisionSearch:
    """One search run: ``run()`` returns (best model, report); ``output``/``trace`` are written as it goes."""

    def __init__(self, model: onnx.ModelProto, calib, quant: QuantizeConfig, tune: TuneConfig, *, eval_data=None,
                 output: str | Path | None = None, trace: str | Path | None = None, clock=time.monotonic,
                 ctx=None, outputs: dict[str, OutputSpec] | None = None, floors: FidelityFloors | None = None,
                 data_note: str | None = None):

        self.clock = clock
        self.start = clock()
        self.quant, self.tune = quant, tune
        self.output, self.trace = output, trace
        self.ctx = ctx  # the caller's PassContext: the final build's pass records and decisions go there
        calib = load_input_data(calib)
        self.data_note = data_note or ("evaluation data" if eval_data is not None else
                                       "calibration data (no --eval given: the goal is checked on the data the "
                                       "model was calibrated on)")
        self.progress = ctx.progress if ctx is not None else NO_PROGRESS
        self.builder = TrialBuilder(model, calib, quant, self.progress)
        data = load_input_data(eval_data) if eval_data is not None else calib
        self.evaluator = Evaluator(model, data, tune, self.data_note, outputs=outputs, floors=floors)
        self.probe = LatencyProbe(model, self.evaluator, tune) if tune.measure_latency else None
        self.state = SearchState()
        self.sensitivity: dict[str, Any] | None = None
        self.step: ProgressTask | None = None  # the open "search" progress task while run() runs

    # --- budget / ordering ------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.start

    def over_budget(self) -> bool:
        return self.tune.time_budget is not None and self.elapsed() >= self.tune.time_budget

    def _key(self, t: Trial) -> tuple:
        if t.met:
            speed = round(t.latency["speedup"], 2) if t.latency else 0.0
            smaller = -sum(p == "float" for p in t.choice.values()) if t.mode == "weight_only" else 0
            return (1, speed, -len(t.choice), smaller, -t.score.drop)  # weight_only: 8-bit weights before float
        return (0, -t.score.drop, -len(t.choice))

    # --- one trial --------------------------------------------------------------------------------------------
    def trial(self, choice: Choice, phase: str, mode: str | None = None) -> Trial:
        mode = mode or self.quant.mode
        calibrator = self.builder.calibrator if mode == "static" else None
        key = (mode, calibrator, choice_key(choice))
        if key in self.state.cache:
            return self.state.cache[key]
        start = self.clock()
        model, _ = self.builder.build(choice, mode=mode)
        score = self.evaluator.score(model)
        met = score.meets(self.tune.max_drop)
        latency = self.probe.measure(model) if self.probe is not None and met else None
        t = Trial(len(self.state.trials), phase, dict(choice), score, met, self.clock() - start, latency, mode,
                  calibrator)
        self.state.trials.append(t)
        self.state.cache[key] = t
        if self.step is not None:
            self.step.advance()
        log.info("trial %d (%s, %s): %s drop %.4f%s", t.index, phase, mode, dict(choice) or "full int8", score.drop,
                 " (goal met)" if met else "")
        if self.state.best is None or self._key(t) > self._key(self.state.best):
            self.state.best = t
            self._save(model)
        self._write_trace()
        return t

    def score_choice(self, choice: Choice) -> Score:
        return self.trial(choice, "sensitivity").score

    def _save(self, model: onnx.ModelProto) -> None:
        if self.output is not None:

            save_model(model, self.output)

    def _write_trace(self) -> None:
        if self.trace is not None:

            write_text_atomic(self.trace, json.dumps(self.summary(), indent=2, default=_json_default) + "\n")

    # --- phases -----------------------------------------------------------------------------------------------
    def run(self) -> tuple[onnx.ModelProto, QuantizeResult]:
        with track(self.progress, f"mixed-precision search ({self.tune.metric} drop <= {self.tune.max_drop:g})",
                   None, "trials") as self.step:
            self._search()
        self.step = None
        return self.finish()

    def _search(self) -> None:
        base = self.trial({}, "baseline")
        self._presets()
        if not self.state.best.met:
            self._calibrators(base)
        if base.met:
            self.state.stopped = "full INT8 meets the goal" + (
                "" if self.state.best is base else f"; preset '{self._preset_name(self.state.best)}' is faster")
        elif self.state.best.met:
            kind, _, name = self.state.best.phase.partition(":")
            self.state.stopped = f"{kind} '{name}' meets the goal"
        elif self.over_budget():
            self.state.stopped = "time budget exhausted"
        else:
            self._greedy(self._ranking())
            if self.state.best.met:
                self._give_back()

    def _presets(self) -> None:
        """With latency measured, time the whole-model alternatives too (linear layers only, dynamic): on CPUs where
        int8 attention/Softmax or Q/DQ pairs cost more than they save, one of them is the fastest model that meets
        the goal. Without latency they are skipped (ties prefer fewer higher-precision nodes: full INT8)."""
        if self.probe is None:
            return
        for name, (mode, choice) in self.builder.presets().items():
            if self.over_budget():
                return
            self.trial(choice, f"preset:{name}", mode)

    def _calibrators(self, base: Trial) -> None:
        """Static mode: full INT8 with each of ``tune.calibrators`` (ranges that clip outliers can help a whole
        model more than a few nodes kept float). One that meets the goal ends the search; otherwise the node search
        goes on with the best of them if it at least halves the configured calibrator's drop
        (:data:`CALIBRATOR_GAIN`), else with the configured one (a small gain there can cost more nodes later)."""
        if self.quant.mode != "static":
            return
        start = self.builder.calibrator
        tried = []
        for name in self.tune.calibrators:
            if name == start or self.state.best.met or self.over_budget():
                continue
            self.builder.calibrator = name
            tried.append(self.trial({}, f"calibrator:{name}"))
        best = min(tried, key=lambda t: t.score.drop, default=None)
        if best is not None and best.calibrator and (best.met or best.score.drop <= CALIBRATOR_GAIN * base.score.drop):
            self.builder.calibrator = best.calibrator
        else:
            self.builder.calibrator = start

    @staticmethod
    def _preset_name(t: Trial) -> str:
        return t.phase.split(":", 1)[1] if t.phase.startswith("preset:") else t.phase

    def _ranking(self) -> list[str]:

        self.sensitivity = analyze(self.builder, self.evaluator, self.tune, budget=self.over_budget,
                                   score_choice=self.score_choice, progress=self.progress)
        return self.sensitivity["ranking"]

    def _greedy(self, ranking: list[str]) -> None:
        chosen: Choice = {}
        for node in ranking[: self.tune.max_candidates]:
            if self.state.best.met:
                self.state.stopped = "goal met"
                return
            if self.over_budget():
                self.state.stopped = "time budget exhausted"
                return
            options = [self.trial({**chosen, node: p}, "greedy") for p in self.tune.usable_precisions(self.quant.mode)]
            pick = self._pick(options)
            chosen[node] = pick.choice[node]
        self.state.stopped = "goal met" if self.state.best.met else \
            f"no candidates left (the {min(len(ranking), self.tune.max_candidates)} most sensitive nodes tried)"

    def _pick(self, options: list[Trial]) -> Trial:
        met = [t for t in options if t.met]
        if met:
            return max(met, key=lambda t: (t.latency["speedup"] if t.latency else 0.0, -options.index(t)))
        return min(options, key=lambda t: (t.score.drop, options.index(t)))

    def _give_back(self) -> None:
        """Return nodes to INT8 (least sensitive kept node first) while the goal still holds."""
        best, mode = dict(self.state.best.choice), self.state.best.mode
        for node in reversed(list(best)):
            if self.over_budget():
                self.state.stopped += "; give-back cut short by the time budget"
                return
            trial = self.trial({k: v for k, v in best.items() if k != node}, "give-back", mode)
            if trial.met:
                best.pop(node)
            elif self.probe is not None:  # the goal needs this node: is another precision cheaper?
                for p in self.tune.usable_precisions(mode):
                    alt = self.trial({**best, node: p}, "give-back", mode)
                    if alt.met and self.state.best is alt:
                        best[node] = p

    # --- result -----------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        best = self.state.best
        return {
            "goal": {"metric": self.tune.metric, "max_drop": self.tune.max_drop, "data": self.data_note,
                     "samples": self.evaluator.samples},
            "goal_met": bool(best and best.met),
            "stopped": self.state.stopped or "running",
            "time_budget_s": self.tune.time_budget,
            "elapsed_s": round(self.elapsed(), 3),
            "mode": best.mode if best else self.quant.mode,
            "best": best.to_dict() if best else None,
            "higher_precision": dict(sorted(best.choice.items())) if best else {},
            "trials": [t.to_dict() for t in self.state.trials],
            "sensitivity": self.sensitivity,
        }

    def finish(self) -> tuple[onnx.ModelProto, QuantizeResult]:
        """Build the best choice once more with verification, into a child context: its decisions and the result
        reach the caller's context, its pass records stay inside this search (no time is counted twice)."""


        best = self.state.best
        assert best is not None
        if best.calibrator is not None:
            self.builder.calibrator = best.calibrator
        child = PassContext(seed=self.ctx.seed if self.ctx else 0, stage=self.ctx.stage if self.ctx else "")
        model, qresult = self.builder.build(best.choice, verify=self.quant.verify, ctx=child, mode=best.mode)
        qresult = replace(qresult, search=self.search_summary(tuple(r.to_dict() for r in child.records)))
        if self.ctx is not None:
            self.ctx.decisions.extend(child.decisions)
            self.ctx.metadata.update(child.metadata)
            self.ctx.put(qresult)
        self._save(model)
        self._write_trace()
        return model, qresult

    def search_summary(self, final_build: tuple[dict[str, Any], ...] = ()) -> SearchSummary:
        d = self.summary()
        return SearchSummary(d["goal"]["metric"], d["goal"]["max_drop"], d["goal"]["data"], d["goal"]["samples"],
                             d["goal_met"], d["stopped"], d["time_budget_s"], d["elapsed_s"], d["mode"], d["best"],
                             d["higher_precision"], tuple(d["trials"]), d["sensitivity"], final_build)


def _json_default(v):
    return float(v) if hasattr(v, "__float__") else str(v)


def tune_quantization(model: onnx.ModelProto, calib, quant: QuantizeConfig, tune: TuneConfig, *, eval_data=None,
                      output: str | Path | None = None, trace: str | Path | None = None, ctx=None
                      ) -> tuple[onnx.ModelProto, QuantizeResult]:
    """Run the mixed-precision search; ``result.search.goal_met`` says whether the goal was reached."""
    return MixedPrecisionSearch(model, calib, quant, tune, eval_data=eval_data, output=output, trace=trace,
                                ctx=ctx).run()
