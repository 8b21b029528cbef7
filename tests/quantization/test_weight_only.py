"""Weight-only INT4/INT8: MatMulNBits / GatherBlockQuantized / blocked DequantizeLinear structure, onnxruntime's
outputs against a numpy dequantize-then-matmul reference read back from the stored bytes, GPTQ vs RTN, bytes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxcompress as oc
from onnxcompress.errors import DataError, UnsupportedModelError, UserError
from onnxcompress.passes.base import PassContext, apply_to_model
from onnxcompress.quantization.weight_only import QuantizeWeightOnlyPass
from support import wgraphs
from support.common import ort_outputs

W4 = dict(mode="weight_only", weight_bits=4, block_size=16, min_weight_elements=0)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dequantize_nbits(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    """The (K, N) weight a MatMulNBits node computes with, unpacked here independently of the library."""
    a = _attrs(node)
    k, n, bits, bs = a["K"], a["N"], a["bits"], a["block_size"]
    packed = inits[node.input[1]]  # [N, kb, bs * bits / 8]
    if bits == 4:
        codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1, bs)
    else:
        codes = packed.reshape(n, -1, bs)
    kb = codes.shape[1]
    scales = inits[node.input[2]].reshape(n, kb)
    if len(node.input) > 3 and node.input[3]:
        zp = inits[node.input[3]]
        zeros = (np.stack([zp & 0x0F, zp >> 4], axis=-1).reshape(n, -1)[:, :kb] if bits == 4 else zp.reshape(n, kb))
    else:
        zeros = np.full((n, kb), 1 << (bits - 1))
    w = (codes.astype(np.float32) - zeros[..., None]) * scales[..., None]  # [N, kb, bs]
    return w.reshape(n, -1)[:, :k].T


def test_int4_matmulnbits_matches_numpy_dequantize_then_matmul():
    model = wgraphs.linear_stack()
    data = wgraphs.correlated_inputs(64)
    q, result = oc.quantize(model, data, oc.QuantizeConfig(**W4))
    nodes = [n for n in q.graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == 2 and all(n.domain == "com.microsoft" for n in nodes)
    assert [(_attrs(n)["K"], _attrs(n)["N"], _attrs(n)["bits"], _attrs(n)["block_size"]) for n in nodes] == \
        [(64, 48, 4, 16), (48, 24, 4, 16)]
    assert result.kernel_ops.get("MatMulNBits") == 2, "onnxruntime runs both as MatMulNBits"
    inits = _inits(q)
    w1, w2 = (_dequantize_nbits(n, inits) for n in nodes)
    ref = _inits(model)
    x = data["x"][:16]
    hidden = np.maximum(x @ w1 + ref["b1"], 0)
    expected = hidden @ w2 + inits[nodes[1].input[5]]  # the Gemm's bias moved into MatMulNBits
    got = ort_outputs(q, {"x": x})["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # and it is a quantization of the float model: within 4-bit error, per weight
    assert np.abs(w1 - ref["w1"]).max() <= np.abs(ref["w1"]).max() / 15 * 0.51 * 2
    layer = {w.node: w for w in result.weights.layers}
    assert layer["MatMul_0"].weight_sqnr_db > 15 and layer["MatMul_0"].bytes_after < layer["MatMul_0"].bytes_before / 5


@pytest.mark.parametrize("bits,symmetric", [(8, False), (4, True), (8, True)])
def test_bits_and_symmetry_variants(bits, symmetric):
    model = wgraphs.linear_stack()
    data = wgraphs.correlated_inputs(32)
    cfg = oc.QuantizeConfig(**{**W4, "weight_bits": bits, "weight_symmetric": symmetric})
    q, _ = oc.quantize(model, data, cfg)
    nodes = [n for n in q.graph.node if n.op_type == "MatMulNBits"]
    assert all(_attrs(n)["bits"] == bits for n in nodes)
    assert all((len(n.input) > 3 and n.input[3] != "") != symmetric for n in nodes)
    inits = _inits(q)
    w1 = _dequantize_nbits(nodes[0], inits)
    x = data["x"][:8]
    h = ort_outputs(onnx.utils.Extractor(q).extract_model(["x"], [nodes[0].output[0]]), {"x": x})
    np.testing.assert_allclose(h[nodes[0].output[0]], x @ w1, rtol=1e-4, atol=1e-4)
    tol = 0.02 if bits == 8 else 0.2
    assert np.abs(w1 - _inits(model)["w1"]).max() < tol * np.abs(_inits(model)["w1"]).max()


def test_qdq_format_uses_blocked_dequantize_linear_at_opset_21():
    model = wgraphs.linear_stack()
    data = wgraphs.correlated_inputs(32)
    q, result = oc.quantize(model, data, oc.QuantizeConfig(**W4, weight_format="qdq"))
    assert next(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) == 21
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 2 and all(_attrs(n)["block_size"] == 16 for n in dqs)
    assert {_attrs(n)["axis"] for n in dqs} == {0, 1}  # MatMul (K, N) along 0; Gemm transB (N, K) along 1
    types = {t.name: t.data_type for t in q.graph.initializer}
    assert {types[n.input[0]] for n in dqs} == {onnx.TensorProto.UINT4}
    inits = _inits(q)
    w1 = (inits[dqs[0].input[0]].astype(np.float32) - np.repeat(inits[dqs[0].input[2]].astype(np.float32), 16, 0)) \
        * np.repeat(inits[dqs[0].input[1]], 16, 0)
    x = data["x"][:8]
    h = ort_outputs(onnx.utils.Extractor(q).extract_model(["x"], ["h"]), {"x": x})["h"]
    np.testing.assert_allclose(h, x @ w1, rtol=1e-4, atol=1e-4)
    assert result.weights.bytes_after < result.weights.bytes_before / 4


def test_embedding_gather_block_quantized():
    model = wgraphs.embedding_matmul()
    rng = np.random.default_rng(0)
    data = {"ids": rng.integers(0, 50, (16, 5)).astype(np.int64)}
    q, result = oc.quantize(model, data, oc.QuantizeConfig(**W4))
    gbq = [n for n in q.graph.node if n.op_type == "GatherBlockQuantized"]
    assert len(gbq) == 1 and _attrs(gbq[0])["quantize_axis"] == 1 and _attrs(gbq[0])["block_size"] == 16
    types = {t.name: t.data_type for t in q.graph.initializer}
    assert types[gbq[0].input[0]] == onnx.TensorProto.UINT4
    inits = _inits(q)
    table = (inits[gbq[0].input[0]].astype(np.float32) - np.repeat(inits[gbq[0].input[3]].astype(np.float32), 16, 1)) \
        * np.repeat(inits[gbq[0].input[2]], 16, 1)
    e = ort_outputs(onnx.utils.Extractor(q).extract_model(["ids"], ["e"]), data)["e"]
    np.testing.assert_allclose(e, table[data["ids"]], rtol=1e-5, atol=1e-6)
    assert {w.op for w in result.weights.layers} == {"Gather", "MatMul"}
    off, _ = oc.quantize(model, data, oc.QuantizeConfig(**W4, embeddings=False))
    assert not [n for n in off.graph.node if n.op_type == "GatherBlockQuantized"]


def _output_mse(model, quantized, data) -> float:
    return float(np.mean((ort_outputs(model, data)["y"] - ort_outputs(quantized, data)["y"]) ** 2))


def test_gptq_has_lower_output_error_than_rtn():
    model = wgraphs.linear_stack(k=128, n=96)
    calib, held_out = wgraphs.correlated_inputs(512, k=128), wgraphs.correlated_inputs(256, k=128, seed=1)
    rtn, _ = oc.quantize(model, calib, oc.QuantizeConfig(**W4, method="rtn"))
    gptq, result = oc.quantize(model, calib, oc.QuantizeConfig(**W4, method="gptq"))
    err_rtn, err_gptq = _output_mse(model, rtn, held_out), _output_mse(model, gptq, held_out)
    assert err_gptq < 0.8 * err_rtn, (err_gptq, err_rtn)
    layers = {w.node: w for w in result.weights.layers}
    assert all(w.method == "gptq" and w.output_sqnr_db is not None for w in layers.values())
    again, _ = oc.quantize(model, calib, oc.QuantizeConfig(**W4, method="gptq"))
    assert again.SerializeToString() == gptq.SerializeToString(), "byte-identical reruns"


def test_int4_block32_weight_bytes_are_under_a_fifth_of_fp32():
    model = wgraphs.linear_stack(k=256, n=256)
    _, result = oc.quantize(model, None, oc.QuantizeConfig(mode="weight_only", weight_bits=4, block_size=32))
    w = result.weights
    linear = sum(layer.bytes_before for layer in w.layers)
    assert sum(layer.bytes_after for layer in w.layers) <= 0.17 * linear  # 4 bits + fp32 scale and zero per 32
    assert w.bytes_after <= 0.2 * w.bytes_before


def test_node_bits_and_selection():
    model = wgraphs.linear_stack()
    cfg = oc.QuantizeConfig(**W4, node_bits={"Gemm": 8}, exclude=())
    q, result = oc.quantize(model, None, cfg)
    assert {w.node: w.bits for w in result.weights.layers} == {"MatMul_0": 4, "Gemm_3": 8}
    q2, r2 = oc.quantize(model, None, oc.QuantizeConfig(**W4, exclude=("MatMul",)))
    assert [w.node for w in r2.weights.layers] == ["Gemm_3"] and ("MatMul_0", "excluded by 'MatMul'") in r2.skipped


def test_errors_are_typed():
    model = wgraphs.linear_stack()
    with pytest.raises(DataError, match="GPTQ"):
        oc.quantize(model, None, oc.QuantizeConfig(**W4, method="gptq"))
    with pytest.raises(oc.RecipeError, match="weight_bits 4 or 8"):
        oc.QuantizeConfig(mode="weight_only", weight_bits=3)
    with pytest.raises(oc.RecipeError, match="power of two"):
        oc.QuantizeConfig(mode="weight_only", block_size=48)
    with pytest.raises(oc.RecipeError, match="node_bits"):
        oc.QuantizeConfig(mode="weight_only", node_bits={"MatMul": 5})
    with pytest.raises(UnsupportedModelError, match="opset >= 21"):
        apply_to_model(model, QuantizeWeightOnlyPass(oc.QuantizeConfig(**W4, weight_format="qdq")), PassContext())
    q, _ = oc.quantize(model, None, oc.QuantizeConfig(**W4))
    with pytest.raises(UserError, match="already quantized"):
        oc.quantize(q, None, oc.QuantizeConfig(**W4))
