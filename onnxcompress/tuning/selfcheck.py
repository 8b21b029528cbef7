"""quantize checks its own result: the full INT8 plan is measured on calibration samples held out from calibration,
every output by its kind's metric against its kind's floor ([validate.floors]); when a floor is missed, the
accuracy-aware search (goal: every floor met) runs by itself. The best model is what the stage leaves; whether it
meets the floors is in ``QuantizeResult.self_check`` (the CLI exits 1 when it does not).

The search here measures no latency, so the model it picks is the same on every machine.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import onnx_graphsurgeon as gs

from onnxcompress.errors import EmptyDataError
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.result import QuantizeResult, SelfCheckSummary
from onnxcompress.tuning.config import SelfCheckConfig, TuneConfig
from onnxcompress.tuning.measure import Score
from onnxcompress.tuning.search import MixedPrecisionSearch
from onnxcompress.validation.config import ValidateConfig

log = logging.getLogger(__name__)


FIRM_SAMPLES = 50  # a passing verdict on fewer held-out samples is reported as rough


def holdout(data, check: SelfCheckConfig) -> tuple[Any, Any, str, bool]:
    """(calibration part, held-out part, what the check runs on, in-sample?)."""
    n = len(data)
    every = check.holdout_every(n)
    if every is None:
        return data, data, (f"the {n} calibration samples themselves (fewer than {2 * check.min_holdout}: too few "
                            "to hold any out)"), True
    calib, held = data.split_every(every)
    return calib, held, f"{len(held)} calibration samples held out from calibration (every {every}th of {n})", False


def floor_table(score: Score) -> dict[str, dict[str, Any]]:
    return {f.output: {"kind": f.kind, **f.to_dict()} for f in score.floors}


class SelfCheckQuantizePass(Pass):
    """Quantize (``quant``), then check the result on held-out calibration samples against the fidelity floors of
    ``validate`` (its [outputs] kind overrides and [floors]); below a floor, run the search (``check.search``)."""

    def __init__(self, quant: QuantizeConfig, check: SelfCheckConfig, validate: ValidateConfig):
        self.quant, self.check, self.validate = quant, check, validate

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if ctx.calibration is None:
            raise EmptyDataError("quantize's self-check needs calibration data",
                                 hint="pass --calib DATA, or turn the check off with --no-self-check")

    def _tune(self) -> TuneConfig:
        return TuneConfig(metric="floors", max_drop=0.0, time_budget=self.check.time_budget, measure_latency=False,
                          eval_samples=None, batch_size=self.quant.batch_size, labels=self.validate.labels,
                          calibrators=self.check.calibrators)

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        calib, held, note, in_sample = holdout(ctx.calibration, self.check)
        search = MixedPrecisionSearch(to_model(graph), calib, self.quant, self._tune(), eval_data=held, ctx=ctx,
                                      outputs=self.validate.outputs, floors=self.validate.floors, data_note=note)
        base = search.trial({}, "baseline")
        searched = not base.met and self.check.search
        if base.met:
            search.state.stopped = "full INT8 meets every floor"
        elif not self.check.search:
            search.state.stopped = "full INT8 misses a floor; the search is off ([self_check] search = false)"
        else:
            log.info("self-check: full INT8 misses a floor on %s; running the accuracy-aware search", note)
        model, result = search.run() if searched else search.finish()
        best = search.state.best
        assert best is not None
        summary = SelfCheckSummary(best.met, note, search.evaluator.samples, in_sample,
                                   {n: d.to_dict() for n, d in search.evaluator.kinds.items()},
                                   floor_table(base.score), floor_table(best.score), searched, search.state.stopped)
        result = self._result(result, summary, searched)
        ctx.put(result)
        self._decide(ctx, summary, result)
        return PassResult(to_graph(model), True, {"self_check": summary.passed, "searched": searched,
                                                  "trials": len(search.state.trials)})

    def _result(self, result: QuantizeResult, summary: SelfCheckSummary, searched: bool) -> QuantizeResult:
        warnings = result.warnings
        if not summary.passed:
            warnings += (f"self-check: the written model misses the fidelity floor on {summary.data}: "
                         + "; ".join(summary.failures) + f" ({summary.stopped})",)
        elif summary.samples < FIRM_SAMPLES:
            warnings += (f"self-check: passed on only {summary.samples} samples ({summary.data}), too few to "
                         f"resolve a floor finer than 1/{summary.samples}: give more calibration samples, or judge "
                         "the model on evaluation data (validate, or optimize's gate)",)
        return replace(result, search=result.search if searched else None, self_check=summary, warnings=warnings)

    def _decide(self, ctx: PassContext, summary: SelfCheckSummary, result: QuantizeResult) -> None:
        for name, kind in summary.kinds.items():
            ctx.decide(self.name, name, f"kind {kind['kind']}", f"{kind['reason']} ({kind['source']}); judged by "
                       f"{kind['metric']}")
        for name, c in summary.final.items():
            word = "meets" if c["passed"] else "misses"
            ctx.decide(self.name, name, f"{word} floor", f"{c['metric']} {c['value']:.4g} vs {c['floor_name']} "
                       f"{c['floor']:g} on {summary.data}")
        if result.search is not None:
            for node, precision in result.search.higher_precision.items():
                ctx.decide(self.name, node, f"kept {precision}", "the full INT8 plan missed a fidelity floor")
