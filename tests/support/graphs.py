"""Fixture graphs written in ONNX text (onnx.parser).

Graph inputs listed in ``consts`` become initializers with seeded random values (``*var`` tensors positive), so the
text stays readable and the weights stay reproducible.
"""

from __future__ import annotations

import numpy as np
import onnx

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def make(text: str, consts: list[str], seed: int = 0, values: dict[str, np.ndarray] | None = None,
         check: bool = True) -> onnx.ModelProto:
    """Parse ``text``; inputs named in ``consts`` become initializers (``values`` given, else seeded random)."""
    values_given = dict(values or {})
    consts = list(consts) + list(values_given)
    model = onnx.parser.parse_model(HEADER + "\n" + text)
    rng = np.random.default_rng(seed)
    keep = []
    for vi in model.graph.input:
        if vi.name not in consts:
            keep.append(vi)
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value for d in tt.shape.dim]
        values = rng.standard_normal(shape).astype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if vi.name in values_given:
            values = np.asarray(values_given[vi.name])
        elif vi.name.endswith("var"):
            values = np.abs(values) + 0.5
        model.graph.initializer.append(onnx.numpy_helper.from_array(values, vi.name))
    del model.graph.input[:]
    model.graph.input.extend(keep)
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def conv_bn_head() -> onnx.ModelProto:
    """Conv(bias) -> BN -> Relu -> Conv(no bias) -> BN -> GAP -> Flatten -> Gemm(transB) -> BN."""
    return make(
        """
        g (float[N,3,8,8] x, float[4,3,3,3] w1, float[4] b1, float[4] s1, float[4] o1, float[4] m1, float[4] v1var,
           float[6,4,1,1] w2, float[6] s2, float[6] o2, float[6] m2, float[6] v2var,
           float[5,6] wf, float[5] bf, float[5] s3, float[5] o3, float[5] m3, float[5] v3var) => (float[N,5] y) {
            c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
            n1 = BatchNormalization <epsilon = 0.001> (c1, s1, o1, m1, v1var)
            r1 = Relu (n1)
            c2 = Conv (r1, w2)
            n2 = BatchNormalization (c2, s2, o2, m2, v2var)
            p = GlobalAveragePool (n2)
            f = Flatten (p)
            gm = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (f, wf, bf)
            y = BatchNormalization (gm, s3, o3, m3, v3var)
        }
        """,
        ["w1", "b1", "s1", "o1", "m1", "v1var", "w2", "s2", "o2", "m2", "v2var", "wf", "bf", "s3", "o3", "m3", "v3var"],
    )


def convtranspose_bn() -> onnx.ModelProto:
    """Grouped ConvTranspose -> BN (output channel = group * Cout/g + j)."""
    return make(
        """
        g (float[N,4,5,5] x, float[4,3,3,3] w, float[6] s, float[6] o, float[6] m, float[6] vvar) => (float[N,6,11,11] y) {
            t = ConvTranspose <group = 2, strides = [2,2]> (x, w)
            y = BatchNormalization (t, s, o, m, vvar)
        }
        """,
        ["w", "s", "o", "m", "vvar"],
    )


def bn_kept() -> onnx.ModelProto:
    """BN after Relu (no foldable producer) and BN after a Conv whose output is also a graph output."""
    return make(
        """
        g (float[N,3,6,6] x, float[3] s, float[3] o, float[3] m, float[3] vvar,
           float[3,3,1,1] w, float[3] s2, float[3] o2, float[3] m2, float[3] v2var) => (float[N,3,6,6] y, float[N,3,6,6] c) {
            r = Relu (x)
            n = BatchNormalization (r, s, o, m, vvar)
            c = Conv (n, w)
            y = BatchNormalization (c, s2, o2, m2, v2var)
        }
        """,
        ["s", "o", "m", "vvar", "w", "s2", "o2", "m2", "v2var"],
    )


def dead_code() -> onnx.ModelProto:
    """A node and an initializer that do not reach the output, listed out of topological order."""
    return make(
        """
        g (float[N,4] x, float[4,4] w, float[4,4] unused_w) => (float[N,4] y) {
            y = Relu (h)
            h = MatMul (x, w)
            dead = MatMul (x, unused_w)
        }
        """,
        ["w", "unused_w"],
        check=False,
    )


def macs_fixture() -> onnx.ModelProto:
    """Conv, grouped Conv, ConvTranspose, Gemm and batched MatMul with hand-computable MACs."""
    return make(
        """
        g (float[N,3,8,8] x, float[8,3,3,3] w1, float[8,2,3,3] w2, float[8,4,2,2] w3,
           float[10,8] wf, float[2,16,16] a, float[2,16,4] b, int64[2] shp) => (float[N,10] y, float[2,16,4] z) {
            c1 = Conv <pads = [1,1,1,1]> (x, w1)
            c2 = Conv <group = 4, strides = [2,2]> (c1, w2)
            t = ConvTranspose <group = 2, strides = [2,2]> (c2, w3)
            p = MaxPool <kernel_shape = [4,4], strides = [4,4]> (t)
            r = Reshape (p, shp)
            y = Gemm <transB = 1> (r, wf)
            z = MatMul (a, b)
        }
        """,
        ["w1", "w2", "w3", "wf", "a", "b"],
        values={"shp": np.array([-1, 8], dtype=np.int64)},
    )


def concat_bn() -> onnx.ModelProto:
    """Inception-style: two Conv branches (one without bias) -> Concat(axis 1) -> BN -> Relu."""
    return make(
        """
        g (float[N,3,6,6] x, float[4,3,1,1] wa, float[4] ba, float[2,3,3,3] wb,
           float[6] s, float[6] o, float[6] m, float[6] vvar) => (float[N,6,6,6] y) {
            a = Conv (x, wa, ba)
            b = Conv <pads = [1,1,1,1]> (x, wb)
            c = Concat <axis = 1> (a, b)
            n = BatchNormalization (c, s, o, m, vvar)
            y = Relu (n)
        }
        """,
        ["wa", "ba", "wb", "s", "o", "m", "vvar"],
    )


def hardswish_convs():
    """Conv -> hard-swish as x*Clip(x+3,0,6)/6 -> Conv -> hard-swish as (x*Clip(3+x,0,6))*(1/6) -> Conv + Add bias."""
    return make("""
    g (float[N,3,8,8] x, float[8,3,3,3] w1, float[8] b1, float[8,8,1,1] w2, float[4,8,1,1] w3,
       float[1,4,1,1] bias3, float three, float zero, float sixf, float sixth) => (float[N,4,8,8] y) {
      c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
      a1 = Add (c1, three)
      k1 = Clip (a1, zero, sixf)
      m1 = Mul (c1, k1)
      h1 = Div (m1, sixf)
      c2 = Conv (h1, w2)
      a2 = Add (three, c2)
      k2 = Clip (a2, zero, sixf)
      m2 = Mul (k2, c2)
      h2 = Mul (m2, sixth)
      c3 = Conv (h2, w3)
      y = Add (c3, bias3)
    }""", ["w1", "b1", "w2", "w3", "bias3"],
        values={"three": np.array(3, np.float32), "zero": np.array(0, np.float32),
                "sixf": np.array(6, np.float32), "sixth": np.array(1 / 6, np.float32)})


TEACHER_TEXT = """
g (float[N,3,10,10] x, float[6,3,3,3] w1, float[6] b1, float[4,6,3,3] w2, float[4] b2,
   float[5,16] wf, float[5] bf, int64[2] shp) => (float[N,5] y) {
    c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <pads = [1,1,1,1], strides = [2,2]> (r1, w2, b2)
    r2 = Relu (c2)
    p = MaxPool <kernel_shape = [2,2], strides = [2,2]> (r2)
    f = Reshape (p, shp)
    y = Gemm <transB = 1> (f, wf, bf)
}
"""


def teacher_student():
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w1[4:], b1[4:] = w1[:2], b1[:2]  # channels 4, 5 duplicate channels 0, 1: truly redundant
    values = {"w1": w1, "b1": b1, "shp": np.array([-1, 16], np.int64)}
    teacher = make(TEACHER_TEXT, ["w2", "b2", "wf", "bf"], values=values)
    student = onnx.ModelProto()
    student.CopyFrom(teacher)
    for t in student.graph.initializer:  # prune channels 4, 5 of c1 (and the matching inputs of c2)
        a = onnx.numpy_helper.to_array(t)
        if t.name in ("w1", "b1"):
            t.CopyFrom(onnx.numpy_helper.from_array(a[:4], t.name))
        elif t.name == "w2":
            t.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(a[:, :4]), t.name))
    return teacher, student


def mlp_bn() -> onnx.ModelProto:
    """A 16-32-32-8 MLP with BatchNorm after each hidden Gemm (the shape of a tabular classifier)."""
    return make(
        """
        g (float[N,16] x, float[32,16] w1, float[32] b1, float[32] s1, float[32] o1, float[32] m1, float[32] v1var,
           float[32,32] w2, float[32] b2, float[32] s2, float[32] o2, float[32] m2, float[32] v2var,
           float[8,32] w3, float[8] b3) => (float[N,8] y) {
            g1 = Gemm <transB = 1> (x, w1, b1)
            n1 = BatchNormalization (g1, s1, o1, m1, v1var)
            r1 = Relu (n1)
            g2 = Gemm <transB = 1> (r1, w2, b2)
            n2 = BatchNormalization (g2, s2, o2, m2, v2var)
            r2 = Relu (n2)
            y = Gemm <transB = 1> (r2, w3, b3)
        }
        """,
        ["w1", "b1", "s1", "o1", "m1", "v1var", "w2", "b2", "s2", "o2", "m2", "v2var", "w3", "b3"])


def wide_cnn() -> onnx.ModelProto:
    """A CNN wide enough for INT8 to pay on a CPU (the default latency placement quantizes its 3x3 convolutions):
    Conv 3->32 -> BN -> Relu -> 3 x (Conv 3x3 -> BN -> Relu) at 64 channels, 16x16 -> GAP -> Flatten -> Gemm."""
    return make(
        """
        g (float[N,3,16,16] x, float[32,3,3,3] w1, float[32] b1, float[64,32,3,3] w2, float[64] s2, float[64] o2,
           float[64] m2, float[64] v2var, float[64,64,3,3] w3, float[64] b3, float[64,64,3,3] w4, float[64] b4,
           float[10,64] wf, float[10] bf) => (float[N,10] y) {
            c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
            r1 = Relu (c1)
            c2 = Conv <pads = [1,1,1,1]> (r1, w2)
            n2 = BatchNormalization (c2, s2, o2, m2, v2var)
            r2 = Relu (n2)
            c3 = Conv <pads = [1,1,1,1]> (r2, w3, b3)
            r3 = Relu (c3)
            c4 = Conv <pads = [1,1,1,1]> (r3, w4, b4)
            r4 = Relu (c4)
            p = GlobalAveragePool (r4)
            f = Flatten (p)
            y = Gemm <transB = 1> (f, wf, bf)
        }
        """,
        ["w1", "b1", "w2", "s2", "o2", "m2", "v2var", "w3", "b3", "w4", "b4", "wf", "bf"])
