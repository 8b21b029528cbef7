"""The accuracy-aware quantization stage as one pass: run the mixed-precision search on the current graph and
continue with its best model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx_graphsurgeon as gs

from onnxcompress.errors import EmptyDataError
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.tuning.config import TuneConfig
from onnxcompress.tuning.search import MixedPrecisionSearch
from onnxcompress.validation.config import ValidateConfig


@dataclass(frozen=True)
class SearchFiles:
    """Where the search writes its best model so far and its trial trace (both optional)."""

    output: Path | None = None
    trace: Path | None = None


class TuneQuantizationPass(Pass):
    """Quantize with the mixed-precision search that meets ``tune.max_drop`` (see tuning.search); leaves the
    QuantizeResult of the best model (with its ``search`` summary) in the context. The goal is checked on
    ``ctx.evaluation`` when given, else on the calibration data."""

    def __init__(self, quant: QuantizeConfig, tune: TuneConfig, validate: ValidateConfig | None = None):
        self.quant, self.tune = quant, tune
        self.validate = validate or ValidateConfig()  # output kinds and floors (the "floors" goal)

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if ctx.calibration is None and self.quant.mode == "static":
            raise EmptyDataError("the accuracy-aware search needs calibration data", hint="pass --calib DATA")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:

        files = ctx.get(SearchFiles) or SearchFiles()
        search = MixedPrecisionSearch(to_model(graph), ctx.calibration, self.quant, self.tune,
                                      eval_data=ctx.evaluation, output=files.output, trace=files.trace, ctx=ctx,
                                      outputs=self.validate.outputs, floors=self.validate.floors)
        model, result = search.run()
        summary = result.search
        assert summary is not None
        for node, precision in summary.higher_precision.items():
            ctx.decide(self.name, node, f"kept {precision}",
                       f"goal {self.tune.metric} drop <= {self.tune.max_drop:g} on {summary.data}")
        stats = {"trials": len(summary.trials), "goal_met": summary.goal_met, "final_build": list(summary.final_build)}
        return PassResult(to_graph(model), True, stats)
