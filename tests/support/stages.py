"""Stage runners for the tests: each returns (model, the report section as JSON-ready dict).

``prune_model`` runs the pruning pass alone (no pre-processing), so a fixture's tensors keep their names and the
zeroing identity can be checked against the original; ``quantize_model`` and ``tune_quantization`` run the public
API (pre-processing + the stage)."""

from __future__ import annotations

from typing import Any

import onnx

import onnxcompress as oc
from onnxcompress.data.inputs import load_input_data
from onnxcompress.passes.base import PassContext, apply_to_model
from onnxcompress.pruning import PruneChannelsPass, PruneConfig, PruneResult


def prune_model(model: onnx.ModelProto, config: PruneConfig, calib: Any = None) -> tuple[onnx.ModelProto, dict]:
    ctx = PassContext(seed=config.seed, calibration=None if calib is None else load_input_data(calib))
    pruned, _ = apply_to_model(model, PruneChannelsPass(config), ctx)
    return pruned, ctx.require(PruneResult, "test").to_dict()


#: the mechanics tests quantize every quantizable node (the latency placement would keep the tiny fixtures float,
#: where INT8 does not pay); tests/quantization/test_placement.py exercises the default placement
FIXED = oc.QuantizeConfig(placement="fixed")


def quantize_model(model, calib, config: oc.QuantizeConfig | None = None, **kw) -> tuple[onnx.ModelProto, dict]:
    """The quantize verb: every quantizable node INT8 (:data:`FIXED`) without ``config``; the self-check is off
    unless ``self_check`` is passed (it is tested on its own)."""
    kw.setdefault("self_check", oc.SelfCheckConfig(enabled=False))
    qmodel, result = oc.quantize(model, calib, config if config is not None else FIXED, **kw)
    return qmodel, result.to_dict()


def tune_quantization(model, calib, quant: oc.QuantizeConfig, tune: oc.TuneConfig, *, eval_data=None, **kw
                      ) -> tuple[onnx.ModelProto, dict]:
    qmodel, result = oc.quantize(model, calib, quant, tune=tune, eval=eval_data, **kw)
    return qmodel, result.to_dict()


def reconstruct(teacher, student, calib, config=None, kept=None, ctx: PassContext | None = None
                ) -> tuple[onnx.ModelProto, dict]:
    """ReconstructPass alone on ``student`` (no pre-processing), against ``teacher`` as given."""
    from onnxcompress.distillation import DistillConfig, DistillResult, ReconstructPass
    from onnxcompress.passes.artifacts import KeptChannels, Teacher

    ctx = ctx if ctx is not None else PassContext()
    ctx.calibration = load_input_data(calib)
    ctx.put(Teacher(teacher))
    if kept:
        ctx.put(KeptChannels.from_mapping(kept))
    out, _ = apply_to_model(student, ReconstructPass(config or DistillConfig()), ctx)
    return out, ctx.require(DistillResult, "test").to_dict()
