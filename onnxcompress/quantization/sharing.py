"""Weight sharing (k-means codebooks) and ternary/binary weights: size optimizations stored as packed indices +
a small codebook, decoded in the graph.

Each compressed weight W of a Conv/Gemm/MatMul (and each Gather embedding table, shared per embedding dimension)
becomes
``packed uint8 [G, m] -> Cast(int32) [-> Unsqueeze -> Div(2^(b*j)) -> Mod(2^b) -> Reshape [-> Slice]]
-> GatherElements(codebook [G, V], axis=1) -> Reshape [-> Transpose] -> W``: G = 1 for a per-layer codebook, the
output channels otherwise (ternary and binary are always per channel: codebooks [-a, 0, +a] and [-a, +a]);
indices use b = 1, 2, 4 or 8 bits each (3-bit codebooks are stored in 4). Every input of the decoder is a
constant, so onnxruntime folds it when the session is created: the file is small, the weights it computes with
are float32 again, and latency is that of the float model (session creation takes longer). The numbers go in the
report, including when that is worse.

Data awareness (with calibration data): the k-means is weighted by the energy of each weight's input feature
(E[x_k^2]: the diagonal of X^T X; per input channel for a Conv), and for Gemm/MatMul the shared values are then
refit by least squares against the layer's output on the calibration inputs (full X^T X; for ternary/binary the
per-channel scale). Conv layers use the diagonal weighting only.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.errors import UserError
from onnxcompress.ir.edit import Names, name_nodes
from onnxcompress.ir.query import constant_bytes, constant_value
from onnxcompress.ops.facts import LAYERS, group_of
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization.blockwise import weight_sqnr_db
from onnxcompress.quantization.codebook import (
    binary,
    decode,
    error_feedback_assign,
    kmeans_codebook,
    refit_least_squares,
    refit_scale,
    ternary,
)
from onnxcompress.quantization.compressed import CompressedWeight, WeightCompression
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.hessian import Moments, MomentsCache, collect_moments
from onnxcompress.quantization.packing import pack_bits, packed_length, storage_bits
from onnxcompress.quantization.plan import selected
from onnxcompress.quantization.weight_only import QUANTIZED_OPS

log = logging.getLogger(__name__)

SHARED_OPS = ("Conv", "Gemm", "MatMul", "Gather")


def _float_constant(t: gs.Tensor) -> bool:
    value = constant_value(t)
    return value is not None and value.dtype == np.float32


def weight_index(node: gs.Node) -> int:
    """The input holding the weight: a layer's (ops.facts), an embedding lookup's table (Gather input 0)."""
    if node.op == "Gather":
        return 0
    facts = LAYERS.lookup(node.op, node.domain)
    assert facts is not None
    return facts.weight


def _embedding(node: gs.Node, config: QuantizeConfig) -> tuple[np.ndarray, int] | str:
    """A Gather embedding lookup: its (V, D) table, shared per embedding dimension (axis 1) like a (K, N) weight."""
    table = constant_value(node.inputs[0])
    if table is None or table.dtype != np.float32 or table.ndim != 2 or int(node.attrs.get("axis", 0)) != 0:
        return "not an embedding lookup (a constant 2-D float32 table gathered along axis 0)"
    if constant_value(node.inputs[1]) is not None:
        return "constant indices (folded, not an embedding lookup)"
    if table.size < config.min_weight_elements:
        return f"weight has {table.size} elements < min_weight_elements {config.min_weight_elements}"
    return table, 1


def _layer(node: gs.Node, config: QuantizeConfig) -> tuple[np.ndarray, int] | str:
    """(weight, output-channel axis) of a layer whose weight can be shared, or why not."""
    if node.op not in SHARED_OPS:
        return f"no weight-sharing rule for {node.op}"
    if node.op == "Gather":
        return _embedding(node, config)
    facts = LAYERS.lookup(node.op, node.domain)
    if facts is None:
        return f"no weight-sharing rule for {node.op}"
    w = constant_value(node.inputs[facts.weight])
    if w is None or w.dtype != np.float32 or w.ndim < 2 or (node.op != "Conv" and w.ndim != 2):
        return "weight is not a constant float32 tensor"
    axis = facts.out_axis(node, w.ndim)
    if axis is None:
        return "no output-channel axis for this weight"
    if w.size < config.min_weight_elements:
        return f"weight has {w.size} elements < min_weight_elements {config.min_weight_elements}"
    return w, axis


class ShareWeightsPass(Pass):
    """Codebook / ternary / binary weights for every selected Conv, Gemm and MatMul (see the module docstring)."""

    def __init__(self, config: QuantizeConfig):
        self.config = config

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if any(n.op in QUANTIZED_OPS for n in graph.nodes):
            raise UserError("the model is already quantized", hint="compress the float model")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        graph.toposort()
        name_nodes(graph)
        before = constant_bytes(graph)
        targets, skipped = self._select(graph, ctx)
        moments = self._moments(graph, targets, ctx)
        names = Names(graph)
        layers = []
        for node, w, axis in targets:
            record = self._share(graph, node, w, axis, moments, ctx.seed, names)
            layers.append(record)
            ctx.decide(self.name, node.name, self.config.mode, f"{record.format}, {record.method}")
        graph.cleanup().toposort()
        data = None if moments is None else ctx.calibration.source
        ctx.put(WeightCompression(self.config.mode, tuple(layers), tuple(skipped), before, constant_bytes(graph), data))
        return PassResult(graph, bool(layers), {"compressed": len(layers), "kept_float": len(skipped)})

    def _select(self, graph: gs.Graph, ctx: PassContext):
        weighted = [n.name for n in graph.nodes if n.op in SHARED_OPS and not isinstance(_layer(n, self.config), str)]
        first_last = ({weighted[0]}, {weighted[-1]}) if weighted else (set(), set())
        targets, skipped = [], []
        for node in graph.nodes:
            if node.op not in SHARED_OPS or (node.op == "Gather" and not _float_constant(node.inputs[0])):
                continue  # a Gather of shapes or of activations is no embedding: nothing to record
            found = _layer(node, self.config)
            reason = found if isinstance(found, str) else selected(node, self.config, first_last)
            if reason is not None:
                skipped.append((node.name, reason))
                ctx.decide(self.name, node.name, "kept float", reason)
                continue
            targets.append((node, *found))
        return targets, skipped

    def _moments(self, graph: gs.Graph, targets, ctx: PassContext) -> Moments | None:
        if ctx.calibration is None or not targets:
            return None
        cache = ctx.get(MomentsCache) or ctx.put(MomentsCache())
        gram = [n.inputs[0].name for n, _, _ in targets if n.op in ("Gemm", "MatMul")]
        channel = [n.inputs[0].name for n, _, _ in targets if n.op == "Conv"]
        return collect_moments(graph, ctx.calibration, gram, channel, samples=self.config.calibration_samples,
                               batch_size=self.config.batch_size, into=cache.moments)

    def _share(self, graph: gs.Graph, node: gs.Node, w: np.ndarray, axis: int, moments: Moments | None, seed: int,
               names: Names) -> CompressedWeight:
        config = self.config
        moved = np.moveaxis(w, axis, 0)
        rows = moved.reshape(moved.shape[0], -1)
        importance, gram = _importance(node, w, axis, moments)
        indices, book, bits, label = _compress(config, rows, importance, seed)
        method = "k-means" if config.mode == "codebook" else ("TWN" if config.mode == "ternary" else "sign")
        if moments is not None:
            method += " (input-energy weighted)"
        if gram is not None and config.refine:
            indices, book = _refit(config.mode, w, axis, indices, book, gram)
            method += ", GPTQ-style assignment + least-squares refit on X^T X"
        shared = decode(indices, book).reshape(rows.shape).reshape(moved.shape)
        approx = np.moveaxis(shared, 0, axis)
        stored = _decoder(graph, node, w, axis, indices, book, bits, names)
        out_sqnr = None
        if gram is not None:
            kn = (w, approx) if (node.op == "MatMul" or axis == 1) else (w.T, approx.T)
            out_sqnr = weight_sqnr_db(kn[0], kn[1], gram)
        return CompressedWeight(node.name, node.op, stored, tuple(w.shape), label, bits, method, int(w.nbytes),
                                int(packed_length(indices.shape[1], storage_bits(bits)) * indices.shape[0] + book.nbytes),
                                weight_sqnr_db(w, approx), out_sqnr)


def _importance(node: gs.Node, w: np.ndarray, axis: int, moments: Moments | None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(importance of every weight element in moved-row layout [C, n], the input Gram (K, K) or None)."""
    moved_shape = np.moveaxis(w, axis, 0).shape
    ones = np.ones((moved_shape[0], int(np.prod(moved_shape[1:]))))
    if moments is None or node.op == "Gather":  # an embedding table has no input activations to weigh it by
        return ones, None
    x = node.inputs[0].name
    if node.op == "Conv":
        energy = moments.channel.get(x)
        if energy is None or energy.size != w.shape[1] * group_of(node):
            return ones, None
        cout, cin_g = w.shape[0], w.shape[1]
        per_group = cout // group_of(node)
        channel = (np.arange(cout)[:, None] // per_group) * cin_g + np.arange(cin_g)[None, :]
        imp = np.broadcast_to(energy[channel][:, :, None], (cout, cin_g, int(np.prod(w.shape[2:]))))
        return np.maximum(imp.reshape(cout, -1), 1e-12), None
    gram = moments.gram.get(x)
    if gram is None:
        return ones, None
    diag = np.maximum(np.diag(gram), 1e-12)
    return np.broadcast_to(diag[None, :], ones.shape).copy(), gram


def _compress(config: QuantizeConfig, rows: np.ndarray, importance: np.ndarray, seed: int):
    """(indices, codebook, index bits, format label) for the rows of one weight."""
    if config.mode == "ternary":
        idx, book = ternary(rows, importance, config.ternary_threshold)
        return idx, book, 2, "ternary per channel"
    if config.mode == "binary":
        idx, book = binary(rows, importance)
        return idx, book, 1, "binary per channel"
    bits = config.weight_bits
    if config.codebook_scope == "layer":
        idx, book = kmeans_codebook(rows.reshape(1, -1), importance.reshape(1, -1), bits, init=config.codebook_init,
                                    iterations=config.kmeans_iterations, seed=seed)
        return idx, book, bits, f"codebook {bits}-bit per layer"
    idx, book = kmeans_codebook(rows, importance, bits, init=config.codebook_init,
                                iterations=config.kmeans_iterations, seed=seed)
    return idx, book, bits, f"codebook {bits}-bit per channel"


def _refit(mode: str, w: np.ndarray, axis: int, indices: np.ndarray, book: np.ndarray, gram: np.ndarray,
           rounds: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction-aware refinement of a Gemm/MatMul weight in its (K, N) view, ``rounds`` times: assign
    every element by error feedback on X^T X (codebook.error_feedback_assign), then refit the shared values by
    least squares against the layer's output (for ternary/binary: the per-channel scale). Returns the new
    (indices in the layout of ``indices``, codebook)."""
    w_kn = np.moveaxis(w, axis, 0).T  # (K, N)
    n = w_kn.shape[1]
    for _ in range(rounds):
        per_column = np.broadcast_to(book, (n, book.shape[1])) if book.shape[0] == 1 else book
        assign = error_feedback_assign(w_kn, per_column, gram)
        if mode in ("ternary", "binary"):
            signs = (assign - 1) if mode == "ternary" else (2 * assign - 1)
            a = np.abs(refit_scale(w_kn, signs, gram)).astype(np.float32)
            book = np.stack([-a, np.zeros_like(a), a], axis=1) if mode == "ternary" else np.stack([-a, a], axis=1)
        else:
            book = refit_least_squares(w_kn, assign, book, gram, per_column=book.shape[0] > 1)
    return assign.T.reshape(indices.shape), book


def _decoder(graph: gs.Graph, node: gs.Node, w: np.ndarray, axis: int, indices: np.ndarray, book: np.ndarray,
             bits: int, names: Names) -> str:
    """Replace the node's weight by the decoder of ``indices``/``book``; returns the packed tensor's name."""
    index = weight_index(node)
    base = node.inputs[index].name
    width = storage_bits(bits)
    groups, n = indices.shape
    packed = gs.Constant(names.tensor(f"{base}_indices_u{width}"), pack_bits(indices, width))
    codebook = gs.Constant(names.tensor(f"{base}_codebook"), book.astype(np.float32))
    nodes: list[gs.Node] = []
    idx = _unpack(nodes, packed, width, groups, n, names, base)
    values = gs.Variable(names.tensor(f"{base}_shared"), dtype=np.float32)
    nodes.append(gs.Node("GatherElements", names.node(f"{base}_GatherElements"), attrs={"axis": 1},
                         inputs=[codebook, idx], outputs=[values]))
    moved_shape = np.moveaxis(w, axis, 0).shape
    out = _reshape(nodes, values, moved_shape, names, base, final=axis == 0)
    if axis != 0:
        order = [axis] + [i for i in range(w.ndim) if i != axis]  # the moved layout's axes
        perm = list(np.argsort(order))
        decoded = gs.Variable(names.tensor(f"{base}_decoded"), dtype=np.float32, shape=list(w.shape))
        nodes.append(gs.Node("Transpose", names.node(f"{base}_Transpose"), attrs={"perm": [int(p) for p in perm]},
                             inputs=[out], outputs=[decoded]))
        out = decoded
    graph.nodes.extend(nodes)
    node.inputs[index] = out
    return packed.name


def _unpack(nodes: list[gs.Node], packed: gs.Constant, width: int, groups: int, n: int, names: Names,
            base: str) -> gs.Variable:
    """int32 indices [G, n] from the packed bytes (low bits first)."""
    as_int = gs.Variable(names.tensor(f"{base}_indices_i32"), dtype=np.int32)
    nodes.append(gs.Node("Cast", names.node(f"{base}_indices_Cast"), attrs={"to": onnx.TensorProto.INT32},
                         inputs=[packed], outputs=[as_int]))
    if width == 8:
        return as_int
    per = 8 // width
    c = lambda suffix, v: gs.Constant(names.tensor(f"{base}_{suffix}"), np.asarray(v))
    steps = [("Unsqueeze", [c("axis", np.array([-1], np.int64))], {}),
             ("Div", [c("shifts", (1 << (width * np.arange(per))).astype(np.int32))], {}),
             ("Mod", [c("levels", np.array(1 << width, np.int32))], {}),
             ("Reshape", [c("unpacked_shape", np.array([groups, packed.values.shape[1] * per], np.int64))], {})]
    if packed.values.shape[1] * per != n:
        steps.append(("Slice", [c("start", np.array([0], np.int64)), c("stop", np.array([n], np.int64)),
                                c("slice_axis", np.array([1], np.int64))], {}))
    x = as_int
    for op, extra, attrs in steps:
        y = gs.Variable(names.tensor(f"{base}_indices_{op.lower()}"), dtype=np.int32)
        nodes.append(gs.Node(op, names.node(f"{base}_indices_{op}"), attrs=attrs, inputs=[x, *extra], outputs=[y]))
        x = y
    return x


def _reshape(nodes: list[gs.Node], values: gs.Variable, shape: tuple[int, ...], names: Names, base: str, *,
             final: bool) -> gs.Variable:
    target = gs.Constant(names.tensor(f"{base}_weight_shape"), np.asarray(shape, np.int64))
    out = gs.Variable(names.tensor(f"{base}_decoded" if final else f"{base}_moved"), dtype=np.float32,
                      shape=[int(d) for d in shape])
    nodes.append(gs.Node("Reshape", names.node(f"{base}_Reshape"), inputs=[values, target], outputs=[out]))
    return out
