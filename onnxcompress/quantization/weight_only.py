"""Weight-only quantization: MatMul/Gemm weights (and Gather embedding tables) block-wise in 4 or 8 bits,
activations stay float.

Formats (``QuantizeConfig.resolved_weight_format``):
  matmulnbits  ``MatMul(x, W)`` -> com.microsoft ``MatMulNBits(x, B, scales[, zero_points], , [bias])`` (a Gemm's
               bias becomes MatMulNBits' bias); ``Gather(E, ids)`` -> ``GatherBlockQuantized(E_q, ids, scales[,
               zero_points])`` with E blocked along its last axis (int4/uint4 data; uint8 for 8 bits). onnxruntime
               dequantizes block by block inside the kernel (or quantizes x too with ``accuracy_level`` 4).
  qdq          ``DequantizeLinear(W_q, scales, zero_points, axis, block_size) -> MatMul`` (ONNX opset >= 21, int4/
               uint4/int8/uint8 data): portable, for runtimes without the com.microsoft ops. Embedding tables stay
               float in this format (a DequantizeLinear of the whole table would run on every inference).
Rounding is RTN or GPTQ (:mod:`gptq`, from the calibration data's X^T X of each layer input). Every node gets a
decision (quantized with its format, or kept float with the reason) and a :class:`CompressedWeight` record.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.errors import DataError, UnsupportedModelError, UserError
from onnxcompress.ir.edit import Names, name_nodes
from onnxcompress.ir.query import constant_bytes, constant_value
from onnxcompress.ops.facts import trans_a, trans_b
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization.blockwise import BlockQuantized, rtn, weight_sqnr_db
from onnxcompress.quantization.compressed import CompressedWeight, WeightCompression
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.gptq import gptq
from onnxcompress.quantization.hessian import MomentsCache, collect_moments
from onnxcompress.quantization.plan import selected

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"
QDQ_MIN_OPSET = 21
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "MatMulNBits",
                 "GatherBlockQuantized")


@dataclass(frozen=True)
class Linear:
    """A MatMul/Gemm with a constant weight, as ``y = x @ W (+ bias)`` with W (K, N)."""

    node: gs.Node
    weight: np.ndarray  # (K, N) float32, transposed back for a Gemm with transB
    bias: np.ndarray | None


def linear_of(node: gs.Node) -> Linear | str:
    """The (K, N) view of a MatMul/Gemm's constant weight, or why it has none."""
    if node.op not in ("MatMul", "Gemm"):
        return f"no weight-only rule for {node.op}"
    x = node.inputs[0]
    if constant_value(x) is not None or (x.dtype is not None and np.dtype(x.dtype) != np.float32):
        return "first operand is not a float32 activation"
    w = constant_value(node.inputs[1])
    if w is None:
        return "second operand is not a constant (activation x activation MatMul)"
    if w.ndim != 2 or w.dtype != np.float32:
        return "weight is not a constant 2-D float32 matrix"
    if node.op == "MatMul":
        return Linear(node, w, None)
    if trans_a(node) or float(node.attrs.get("alpha", 1.0)) != 1.0:
        return "Gemm with transA=1 or alpha != 1"
    bias = None
    if len(node.inputs) > 2 and node.inputs[2].name:
        c = constant_value(node.inputs[2])
        if c is None or float(node.attrs.get("beta", 1.0)) != 1.0 or c.size not in (1, w.shape[0 if trans_b(node) else 1]):
            return "Gemm bias C is not a constant vector with beta=1"
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0 if trans_b(node) else 1],)).astype(np.float32)
    return Linear(node, np.ascontiguousarray(w.T) if trans_b(node) else w, bias)


def embedding_of(node: gs.Node, block_size: int) -> np.ndarray | str:
    """The constant (V, D) table of a Gather embedding lookup, or why it is not one."""
    if node.op != "Gather":
        return f"no weight-only rule for {node.op}"
    table = constant_value(node.inputs[0])
    if table is None or table.ndim != 2 or table.dtype != np.float32:
        return "data is not a constant 2-D float32 table"
    if int(node.attrs.get("axis", 0)) != 0:
        return "Gather along an axis other than 0"
    if constant_value(node.inputs[1]) is not None:
        return "constant indices (folded, not an embedding lookup)"
    if table.shape[1] % block_size:
        return f"embedding width {table.shape[1]} is not a multiple of block_size {block_size}"
    return table


def weight_digest(w: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest()


class QuantizeWeightOnlyPass(Pass):
    """Replace the selected MatMul/Gemm (and Gather) nodes by their weight-only quantized form (module docstring)."""

    def __init__(self, config: QuantizeConfig):
        self.config = config

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if any(n.op in QUANTIZED_OPS for n in graph.nodes):
            raise UserError("the model is already quantized", hint="quantize the float model")
        if self.config.method == "gptq" and ctx.calibration is None:
            raise DataError("method gptq needs calibration data (it rounds against the layer inputs' X^T X)",
                            hint="pass --calib DATA, or use method = \"rtn\"")
        if self.config.resolved_weight_format() == "qdq" and (graph.opset or 0) < QDQ_MIN_OPSET:
            raise UnsupportedModelError(
                f"weight_format qdq needs opset >= {QDQ_MIN_OPSET} (DequantizeLinear with block_size); the model "
                f"uses opset {graph.opset}",
                hint=f"set [preprocess] min_opset = {QDQ_MIN_OPSET} (optimize/quantize then upgrade it), or use "
                "weight_format = \"matmulnbits\"")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        graph.toposort()
        name_nodes(graph)
        config, fmt = self.config, self.config.resolved_weight_format()
        before = constant_bytes(graph)
        targets, skipped = self._select(graph, ctx)
        cache = ctx.get(MomentsCache) or MomentsCache()
        if config.method == "gptq" and targets:
            gram = [t.node.inputs[0].name for t in targets if isinstance(t, Linear)]
            collect_moments(graph, ctx.calibration, gram, [], samples=config.calibration_samples,
                            batch_size=config.batch_size, into=cache.moments)
        names = Names(graph)
        layers = []
        for target in targets:
            if isinstance(target, Linear):
                layers.append(self._linear(graph, target, fmt, cache, names))
            else:
                layers.append(_embedding(graph, target[0], target[1], config, names))
            ctx.decide(self.name, layers[-1].node, "weight-only", f"{layers[-1].format}, {layers[-1].method}")
        graph.cleanup().toposort()
        data = ctx.calibration.source if config.method == "gptq" and ctx.calibration is not None else None
        ctx.put(WeightCompression("weight_only", tuple(layers), tuple(skipped), before, constant_bytes(graph), data))
        return PassResult(graph, bool(layers), {"quantized_nodes": len(layers), "kept_float": len(skipped)})

    def _select(self, graph: gs.Graph, ctx: PassContext) -> tuple[list, list[tuple[str, str]]]:
        config, fmt = self.config, self.config.resolved_weight_format()
        targets: list = []
        skipped: list[tuple[str, str]] = []
        first_last = _first_last_linear(graph)
        for node in graph.nodes:
            if node.op not in ("MatMul", "Gemm", "Gather"):
                continue
            found: Linear | np.ndarray | str = linear_of(node) if node.op != "Gather" else (
                embedding_of(node, config.block_size) if config.embeddings else "embeddings = false")
            if isinstance(found, str):
                if node.op != "Gather" or isinstance(constant_value(node.inputs[0]), np.ndarray):
                    skipped.append((node.name, found))
                continue
            size = found.weight.size if isinstance(found, Linear) else found.size
            reason = selected(node, config, first_last) or (
                f"weight has {size} elements < min_weight_elements {config.min_weight_elements}"
                if size < config.min_weight_elements else None) or (
                "embedding tables stay float in weight_format qdq" if node.op == "Gather" and fmt == "qdq" else None)
            if reason is not None:
                skipped.append((node.name, reason))
                continue
            targets.append(found if isinstance(found, Linear) else (node, found))
        for node, reason in skipped:
            ctx.decide(self.name, node, "kept float", reason)
        return targets, skipped

    def _linear(self, graph: gs.Graph, lin: Linear, fmt: str, cache: MomentsCache, names: Names) -> CompressedWeight:
        config, node = self.config, lin.node
        bits = config.bits_for(node.name, node.op)
        h = cache.moments.gram.get(node.inputs[0].name)
        key = (node.name, weight_digest(lin.weight), bits, config.block_size, config.method, config.weight_symmetric,
               config.gptq_damp, h is not None)
        bq = cache.layers.get(key)
        if not isinstance(bq, BlockQuantized):
            bq = (gptq(lin.weight, h, bits, config.block_size, config.weight_symmetric, config.gptq_damp)
                  if config.method == "gptq" and h is not None else
                  rtn(lin.weight, bits, config.block_size, config.weight_symmetric))
            cache.layers[key] = bq
        deq = bq.dequantize()
        w_tensor = node.inputs[1].name
        if fmt == "matmulnbits":
            _to_matmulnbits(graph, lin, bq, config, names)
            label = f"MatMulNBits int{bits} block {config.block_size}"
            after = bq.nbytes(with_zeros=not config.weight_symmetric)
        else:
            _to_qdq_matmul(graph, lin, bq, config, names)
            label = f"DequantizeLinear int{bits} block {config.block_size} -> {node.op}"
            after = int(bq.k * bq.scales.shape[1] * bits // 8 + bq.scales.nbytes
                        + (0 if config.weight_symmetric else bq.zeros.size * bits // 8))
        method = config.method if (config.method == "rtn" or h is not None) else "rtn"
        return CompressedWeight(node.name, node.op, w_tensor, tuple(lin.weight.shape), label, bits, method,
                                int(lin.weight.nbytes), int(after), weight_sqnr_db(lin.weight, deq),
                                None if h is None else weight_sqnr_db(lin.weight, deq, h))


def _first_last_linear(graph: gs.Graph) -> tuple[set[str], set[str]]:
    weighted = [n.name for n in graph.nodes if n.op in ("MatMul", "Gemm") and isinstance(linear_of(n), Linear)]
    return ({weighted[0]} if weighted else set()), ({weighted[-1]} if weighted else set())


def _const(names: Names, base: str, value: np.ndarray) -> gs.Constant:
    return gs.Constant(names.tensor(base), value)


def _to_matmulnbits(graph: gs.Graph, lin: Linear, bq: BlockQuantized, config: QuantizeConfig, names: Names) -> None:
    node, base = lin.node, lin.node.name
    k, n = lin.weight.shape
    inputs = [node.inputs[0], _const(names, f"{base}_B_q{bq.bits}", bq.matmulnbits_b()),
              _const(names, f"{base}_B_scales", bq.matmulnbits_scales())]
    inputs.append(gs.Variable.empty() if config.weight_symmetric else
                  _const(names, f"{base}_B_zero_points", bq.matmulnbits_zeros()))
    if lin.bias is not None:
        inputs += [gs.Variable.empty(), _const(names, f"{base}_bias", lin.bias)]
    attrs = {"K": int(k), "N": int(n), "bits": int(bq.bits), "block_size": int(bq.block_size),
             "accuracy_level": int(config.accuracy_level)}
    new = gs.Node("MatMulNBits", names.node(f"{base}_MatMulNBits"), attrs=attrs, domain=MS_DOMAIN,
                  inputs=inputs, outputs=list(node.outputs))
    node.outputs.clear()
    node.inputs.clear()
    graph.nodes.append(new)


def _typed_codes(codes: np.ndarray, zeros: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (and zero points) in the ONNX type a DequantizeLinear/GatherBlockQuantized reads: symmetric codes
    are signed (zero point 0, omitted); asymmetric ones unsigned with their zero points."""
    if symmetric:
        signed = codes.astype(np.int16) - (1 << (bits - 1))
        return signed.astype(ml_dtypes.int4 if bits == 4 else np.int8), None
    utype = ml_dtypes.uint4 if bits == 4 else np.uint8
    return codes.astype(utype), zeros.astype(utype)


def _to_qdq_matmul(graph: gs.Graph, lin: Linear, bq: BlockQuantized, config: QuantizeConfig, names: Names) -> None:
    """W (as stored: (K, N), or (N, K) for a Gemm with transB) <- DequantizeLinear(blocked along K)."""
    node, base = lin.node, lin.node.name
    codes, zeros = bq.codes[: bq.k], bq.zeros
    transposed = node.op == "Gemm" and trans_b(node)
    scales = bq.scales
    if transposed:
        codes, zeros, scales = codes.T, zeros.T, scales.T
    q, zp = _typed_codes(np.ascontiguousarray(codes), np.ascontiguousarray(zeros), bq.bits, config.weight_symmetric)
    inputs = [_const(names, f"{base}_W_q{bq.bits}", q), _const(names, f"{base}_W_scale", np.ascontiguousarray(scales))]
    if zp is not None:
        inputs.append(_const(names, f"{base}_W_zero_point", zp))
    w = gs.Variable(names.tensor(f"{base}_W_dequantized"), dtype=np.float32, shape=list(node.inputs[1].shape))
    graph.nodes.append(gs.Node("DequantizeLinear", names.node(f"{base}_W_DequantizeLinear"),
                               attrs={"axis": 1 if transposed else 0, "block_size": int(bq.block_size)},
                               inputs=inputs, outputs=[w]))
    node.inputs[1] = w


def _embedding(graph: gs.Graph, node: gs.Node, table: np.ndarray, config: QuantizeConfig, names: Names
               ) -> CompressedWeight:
    """Gather(E, ids) -> GatherBlockQuantized(E_q, ids, scales[, zero_points]), E blocked along D."""
    bits, base = config.bits_for(node.name, node.op), node.name
    bq = rtn(table.T, bits, config.block_size, config.weight_symmetric)  # blocks along D: quantize E^T along K
    codes, zeros = np.ascontiguousarray(bq.codes[: bq.k].T), np.ascontiguousarray(bq.zeros.T)
    if bits == 8:  # uint8 data; a symmetric table uses the default zero point 128
        q, zp = codes, (None if config.weight_symmetric else zeros)
    else:
        q, zp = _typed_codes(codes, zeros, bits, config.weight_symmetric)
    inputs = [_const(names, f"{base}_data_q{bits}", q), node.inputs[1],
              _const(names, f"{base}_scales", np.ascontiguousarray(bq.scales.T))]
    if zp is not None:
        inputs.append(_const(names, f"{base}_zero_points", zp))
    attrs = {"bits": int(bits), "block_size": int(config.block_size), "gather_axis": 0, "quantize_axis": 1}
    tensor = node.inputs[0].name
    graph.nodes.append(gs.Node("GatherBlockQuantized", names.node(f"{base}_GatherBlockQuantized"), attrs=attrs,
                               domain=MS_DOMAIN, inputs=inputs, outputs=list(node.outputs)))
    node.outputs.clear()
    node.inputs.clear()
    after = int(table.size * bits // 8 + bq.scales.nbytes + (0 if zp is None else bq.zeros.size * bits // 8))
    return CompressedWeight(base, "Gather", tensor, tuple(table.shape), f"GatherBlockQuantized int{bits} block "
                            f"{config.block_size}", bits, "rtn", int(table.nbytes), after,
                            weight_sqnr_db(table.T, bq.dequantize()))
