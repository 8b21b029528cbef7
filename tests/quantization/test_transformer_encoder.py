"""Transformer encoders (tiny BERT fixture with the MiniLM export's structure): onnxruntime's fusions produce the
fused ops and match fp32; the -FLT_MAX attention-mask Add never gets a useless int8 range; automatic SmoothQuant
touches only the outlier normalizations (a Mul where the output also feeds the residual) and improves INT8."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

import onnxcompress as oc
from onnxcompress.data.inputs import load_input_data
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.base import PassContext
from onnxcompress.pipeline import preprocessed
from onnxcompress.quantization.fuse_transformer import FuseTransformerPass
from onnxcompress.quantization.smooth import SmoothQuantPass
from onnxcompress.recipe import Recipe
from support.common import ort_outputs
from support.transformer import TINY_BERT, mean_cosine, tokens


def _prepared() -> onnx.ModelProto:
    return preprocessed(onnx.load(str(TINY_BERT)), Recipe(), PassContext())


@pytest.mark.parametrize("mode, expected", [("norm", {"SkipLayerNormalization", "BiasGelu"}),
                                            ("attention", {"Attention", "EmbedLayerNormalization",
                                                           "SkipLayerNormalization", "BiasGelu"})])
def test_fusions_produce_fused_ops_and_match_fp32(mode, expected):
    model, data = _prepared(), tokens(8)
    ctx = PassContext()
    result = FuseTransformerPass(mode)(to_graph(model), ctx)
    fused = to_model(result.graph, like=model)
    ops = Counter(n.op_type for n in fused.graph.node)
    assert expected <= set(ops) and ops["LayerNormalization"] == 0 and result.modified
    if mode == "attention":
        assert ops["Softmax"] == 0 and ops["Attention"] == 2
    ref, out = ort_outputs(model, data), ort_outputs(fused, data)
    for name in ("last_hidden_state", "sentence_embedding"):
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-3, atol=1e-4)
    assert any(d.subject == "model" and d.action == "fused" for d in ctx.decisions)


def test_fused_model_quantizes_and_keeps_its_fused_ops():
    data = tokens(32)
    q, result = oc.quantize(str(TINY_BERT), data, oc.QuantizeConfig(transformer_fusion="norm", placement="fixed",
                                                                    target="cpu-vnni"))
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["SkipLayerNormalization"] >= 4 and ops["BiasGelu"] == 2 and ops["LayerNormalization"] == 0
    ref, out = ort_outputs(onnx.load(str(TINY_BERT)), data), ort_outputs(q, data)
    assert mean_cosine(ref["sentence_embedding"], out["sentence_embedding"]) > 0.98


def test_attention_mask_sentinel_is_never_quantized():
    """Full INT8 (placement fixed) quantizes every Add and Softmax, except the ones that see -FLT_MAX."""
    data = tokens(32)
    q, result = oc.quantize(str(TINY_BERT), data, oc.QuantizeConfig(placement="fixed", smooth_quant="off"))
    skipped = dict(result.skipped)
    sentinel = [n for n, r in skipped.items() if "sentinel" in r]
    assert sentinel, skipped
    assert all(abs(v.scale) < 1e6 for v in result.tensors.values())  # no range spans -3.4e38
    ref, out = ort_outputs(onnx.load(str(TINY_BERT)), data), ort_outputs(q, data)
    assert mean_cosine(ref["sentence_embedding"], out["sentence_embedding"]) > 0.9


def test_auto_smooth_quant_smooths_only_outlier_norms_and_keeps_the_function():
    model, data = _prepared(), tokens(32)
    ctx = PassContext(calibration=load_input_data(data))
    result = SmoothQuantPass(auto=True)(to_graph(model), ctx)
    smoothed = to_model(result.graph, like=model)
    decisions = {d.subject: (d.action, d.reason) for d in ctx.decisions if d.pass_name == "SmoothQuantPass"}
    assert result.stats["smoothed"] >= 2
    assert any("a Mul for the smoothed layers" in r for a, r in decisions.values() if a == "smoothed")
    ref, out = ort_outputs(model, data), ort_outputs(smoothed, data)
    np.testing.assert_allclose(out["sentence_embedding"], ref["sentence_embedding"], rtol=1e-3, atol=1e-4)
    off, _ = oc.quantize(model, data, oc.QuantizeConfig(placement="fixed", smooth_quant="off", include=("MatMul",)))
    on, res = oc.quantize(model, data, oc.QuantizeConfig(placement="fixed", smooth_quant="auto", include=("MatMul",)))
    assert res.smooth_quant is not None and res.smooth_quant.smoothed == result.stats["smoothed"]
    assert res.self_check is not None  # the self-check's builds report what the prepared graph had
    assert (res.config.smooth_quant, res.config.rewrites) == ("auto", True)  # the effective recipe reproduces it
    test = tokens(64, seed=1)
    fp = ort_outputs(model, test)["sentence_embedding"]
    assert (mean_cosine(fp, ort_outputs(on, test)["sentence_embedding"])
            > mean_cosine(fp, ort_outputs(off, test)["sentence_embedding"]))
