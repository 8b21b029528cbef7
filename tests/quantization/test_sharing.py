"""Weight sharing (k-means codebooks) and ternary/binary weights: the decoded weights onnxruntime computes with
(read back through the graph), determinism, error vs bits, the least-squares refit, the stored bytes."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

import onnxcompress as oc
from onnxcompress.ir.edit import expose_outputs
from onnxcompress.quantization.codebook import kmeans_codebook
from support import wgraphs
from support.common import ort_outputs

CONV = {"x": np.random.default_rng(0).standard_normal((32, 3, 12, 12)).astype(np.float32)}


def _decoded(q: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    """{layer: the weight onnxruntime computes with} for every Conv/Gemm/MatMul whose weight is decoded."""
    consts = {t.name for t in q.graph.initializer}
    weights = {n.name: n.input[1] for n in q.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
               and n.input[1] not in consts}
    out = ort_outputs(expose_outputs(q, list(weights.values())), feeds)
    return {layer: out[t] for layer, t in weights.items()}


def _rel_error(model, q, feeds) -> float:
    ref, got = ort_outputs(model, feeds)["y"], ort_outputs(q, feeds)["y"]
    return float(np.linalg.norm(ref - got) / np.linalg.norm(ref))


def test_codebook_values_per_layer_and_error_decreases_with_bits():
    model = wgraphs.conv_stack()
    errors = []
    for bits in (1, 2, 3, 4, 6):
        q, result = oc.quantize(model, CONV, oc.QuantizeConfig(mode="codebook", weight_bits=bits, min_weight_elements=0))
        for layer, w in _decoded(q, {k: v[:2] for k, v in CONV.items()}).items():
            assert len(np.unique(w)) <= 2 ** bits, (layer, bits)
        assert {w.bits for w in result.weights.layers} == {bits}
        errors.append(_rel_error(model, q, CONV))
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.05


def test_codebook_is_deterministic_byte_for_byte():
    model = wgraphs.conv_stack()
    for init in ("linear", "kmeans++"):
        cfg = oc.QuantizeConfig(mode="codebook", weight_bits=4, codebook_init=init, min_weight_elements=0)
        a, _ = oc.quantize(model, CONV, cfg)
        b, _ = oc.quantize(model, CONV, cfg)
        assert a.SerializeToString() == b.SerializeToString(), init
    w = np.random.default_rng(1).standard_normal((1, 4000))
    i1, c1 = kmeans_codebook(w, np.ones_like(w), 4, init="kmeans++", seed=1)
    i2, c2 = kmeans_codebook(w, np.ones_like(w), 4, init="kmeans++", seed=2)
    assert not np.array_equal(c1, c2), "the k-means++ seed is the recipe seed"


def test_per_channel_codebook_has_its_own_values_per_output_channel():
    model = wgraphs.conv_stack()
    q, result = oc.quantize(model, CONV, oc.QuantizeConfig(mode="codebook", weight_bits=2, codebook_scope="channel",
                                                          min_weight_elements=0))
    w = _decoded(q, {k: v[:2] for k, v in CONV.items()})["Conv_2"]
    assert all(len(np.unique(w[c])) <= 4 for c in range(w.shape[0]))
    assert len(np.unique(w)) > 4
    layer = next(x for x in result.weights.layers if x.node == "Conv_2")
    assert layer.format == "codebook 2-bit per channel"
    assert layer.bytes_after == 16 * 144 // 4 + 16 * 4 * 4  # 2-bit indices + a 4-entry float32 codebook per channel


@pytest.mark.parametrize("mode,values", [("ternary", 3), ("binary", 2)])
def test_ternary_and_binary_take_three_or_two_values_per_channel(mode, values):
    model = wgraphs.conv_stack()
    q, result = oc.quantize(model, CONV, oc.QuantizeConfig(mode=mode, min_weight_elements=0))
    decoded = _decoded(q, {k: v[:2] for k, v in CONV.items()})
    assert set(decoded) == {"Conv_0", "Conv_2", "Gemm_6"}
    for layer, w in decoded.items():  # output channels on axis 0 (Conv, Gemm with transB)
        for c in range(w.shape[0]):
            v = np.unique(w[c])
            a = np.abs(v).max()
            assert len(v) <= values, (layer, c, v)
            allowed = [-a, 0.0, a] if mode == "ternary" else [-a, a]
            assert all(np.isclose(x, allowed).any() for x in v), (layer, c, v)
    assert {w.bits for w in result.weights.layers} == {2 if mode == "ternary" else 1}


def test_least_squares_refit_lowers_the_output_error():
    model = wgraphs.linear_stack(k=128, n=96)
    calib, held_out = wgraphs.correlated_inputs(512, k=128), wgraphs.correlated_inputs(256, k=128, seed=1)
    errors = {}
    for refine in (False, True):
        cfg = oc.QuantizeConfig(mode="codebook", weight_bits=3, refine=refine, min_weight_elements=0)
        q, result = oc.quantize(model, calib, cfg)
        errors[refine] = _rel_error(model, q, held_out)
        methods = {w.method for w in result.weights.layers}
        assert all(("least-squares" in m) == refine for m in methods), methods
    assert errors[True] < 0.9 * errors[False], errors


def test_ternary_refit_uses_the_layer_inputs():
    model = wgraphs.linear_stack(k=128, n=96)
    calib, held_out = wgraphs.correlated_inputs(512, k=128), wgraphs.correlated_inputs(256, k=128, seed=1)
    plain, _ = oc.quantize(model, None, oc.QuantizeConfig(mode="ternary", min_weight_elements=0))
    fitted, _ = oc.quantize(model, calib, oc.QuantizeConfig(mode="ternary", min_weight_elements=0))
    assert _rel_error(model, fitted, held_out) < _rel_error(model, plain, held_out)


def test_sizes_are_reported_and_onnxruntime_folds_the_decoder():
    model = wgraphs.conv_stack()
    q, result = oc.quantize(model, CONV, oc.QuantizeConfig(mode="codebook", weight_bits=4, min_weight_elements=0))
    w = result.weights
    assert w.bytes_after < w.bytes_before / 3
    assert sum(x.bytes_after for x in w.layers) < sum(x.bytes_before for x in w.layers) / 6
    assert result.kernel_ops == {"Conv": 2, "Gemm": 1}, "the decoders are constant-folded at session creation"
    formats = oc.inspect(q)["weights_by_format"]
    assert set(formats) >= {"codebook", "codebook-indices"} and formats["codebook-indices"]["tensors"] == 3
    small, r2 = oc.quantize(model, CONV, oc.QuantizeConfig(mode="codebook"))  # default: >= 1024 elements only
    assert [x.node for x in r2.weights.layers] == ["Conv_2"]
    assert any("min_weight_elements" in reason for _, reason in r2.skipped)


def test_embedding_tables_are_shared_too():
    model = wgraphs.embedding_matmul(vocab=200, dim=64)
    data = {"ids": np.random.default_rng(0).integers(0, 200, (16, 5)).astype(np.int64)}
    q, result = oc.quantize(model, data, oc.QuantizeConfig(mode="codebook", weight_bits=4, min_weight_elements=0))
    layers = {w.node: w for w in result.weights.layers}
    assert layers["Gather_0"].op == "Gather" and layers["Gather_0"].bytes_after < layers["Gather_0"].bytes_before / 7
    gather = next(n for n in q.graph.node if n.op_type == "Gather")
    table = ort_outputs(expose_outputs(q, [gather.input[0]]), data)[gather.input[0]]
    assert len(np.unique(table)) <= 16 and table.shape == (200, 64)
    e = ort_outputs(expose_outputs(q, ["e"]), data)["e"]
    np.testing.assert_array_equal(e, table[data["ids"]])
    assert result.kernel_ops == {"Gather": 1, "MatMul": 1}


def test_static_batch_models_are_measured_one_sample_at_a_time():
    model = wgraphs.conv_stack()
    model.graph.input[0].type.tensor_type.shape.dim[0].Clear()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # a fixed batch of 1
    data = {"x": CONV["x"][:8]}
    _, result = oc.quantize(model, data, oc.QuantizeConfig(mode="codebook", min_weight_elements=0))
    assert result.weights.data is not None and len(result.weights.layers) == 3
