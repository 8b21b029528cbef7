"""One fixture graph per rule: exact pruned shapes + the zeroing identity in ORT (tests/prune/helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.pruning import analyze_groups
from support import graphs
from support.prune_helpers import prune_and_check, shapes


def test_conv_bn_gap_flatten_gemm():
    pruned, report = prune_and_check(graphs.conv_bn_head())
    s = shapes(pruned)
    assert s["w1"] == (2, 3, 3, 3) and s["b1"] == (2,) and s["s1"] == (2,)
    assert s["w2"] == (3, 2, 1, 1) and s["wf"] == (5, 3) and s["bf"] == (5,)
    assert [b["reasons"] for b in report["blocked"]] == [["'y' is a graph output"]]


RESIDUAL = """
g (float[N,3,8,8] x, float[6,3,3,3] w0, float[6,6,3,3] wa, float[6] sa, float[6] oa, float[6] ma, float[6] vavar,
   float[6,6,1,1] wb, float[6,6,1,1] wc, float[4,6] wf) => (float[N,4] y) {
    c0 = Conv <pads = [1,1,1,1]> (x, w0)
    r = Relu (c0)
    ca = Conv <pads = [1,1,1,1]> (r, wa)
    a = BatchNormalization (ca, sa, oa, ma, vavar)
    s1 = Add (a, r)
    r2 = Relu (s1)
    b = Conv (r2, wb)
    c = Conv (r, wc)
    s2 = Add (b, c)
    s3 = Add (s2, r2)
    gp = GlobalAveragePool (s3)
    fl = Flatten (gp)
    y = Gemm <transB = 1> (fl, wf)
}
"""


def test_residual_add_multi_fan_out_merges_into_one_group():
    model = graphs.make(RESIDUAL, ["w0", "wa", "sa", "oa", "ma", "vavar", "wb", "wc", "wf"])
    info = analyze_groups(model)
    assert len(info["groups"]) == 1 and info["groups"][0]["units"] == 6  # every residual slot couples
    pruned, _ = prune_and_check(model)
    s = shapes(pruned)
    assert s["w0"] == (3, 3, 3, 3) and s["wa"] == (3, 3, 3, 3) and s["wb"] == (3, 3, 1, 1) and s["wf"] == (4, 3)


CONCAT = """
g (float[N,3,6,6] x, float[3,3,1,1] wa, float[5,3,3,3] wb, float[8] s, float[8] o, float[8] m, float[8] vvar,
   float[4,8,1,1] wc) => (float[N,4,6,6] y) {
    a = Conv (x, wa)
    b = Conv <pads = [1,1,1,1]> (x, wb)
    c = Concat <axis = 1> (a, b)
    n = BatchNormalization (c, s, o, m, vvar)
    rn = Relu (n)
    y = Conv (rn, wc)
}
"""


def test_concat_offsets():
    model = graphs.make(CONCAT, ["wa", "wb", "s", "o", "m", "vvar", "wc"])
    assert [g["units"] for g in analyze_groups(model)["groups"]] == [3, 5]
    pruned, report = prune_and_check(model)
    s = shapes(pruned)
    assert s["wa"] == (2, 3, 1, 1) and s["wb"] == (3, 3, 3, 3) and s["s"] == (5,) and s["wc"] == (4, 5, 1, 1)
    kept = {r["tensor"]: r["kept"] for r in report["kept"]}
    assert all(k >= 3 for k in kept["wc"][2:])  # positions 3.. of the concat belong to b


DEPTHWISE = """
g (float[N,3,6,6] x, float[6,3,1,1] w0, float[6,1,3,3] wd, float[6] bd, float[6] s, float[6] o, float[6] m,
   float[6] vvar, float[8,3,3,3] wg, float[4,8,1,1] w2, float c0, float c6) => (float[N,4,6,6] y) {
    a = Conv (x, w0)
    d = Conv <group = 6, pads = [1,1,1,1]> (a, wd, bd)
    bn = BatchNormalization (d, s, o, m, vvar)
    n = Clip (bn, c0, c6)
    g = Conv <group = 2, pads = [1,1,1,1]> (n, wg)
    y = Conv (g, w2)
}
"""


def test_depthwise_and_grouped_conv():
    model = graphs.make(DEPTHWISE, ["w0", "wd", "bd", "s", "o", "m", "vvar", "wg", "w2"],
                        values={"c0": np.array(0, np.float32), "c6": np.array(6, np.float32)})
    pruned, _ = prune_and_check(model)
    s = shapes(pruned)
    # the depthwise conv couples a's channels with its groups; the group=2 conv prunes whole conv groups
    assert s["w0"] == (3, 3, 1, 1) and s["wd"] == (3, 1, 3, 3) and s["wg"] == (4, 3, 3, 3) and s["w2"] == (4, 4, 1, 1)
    groups = {n.op_type + str([a.i for a in n.attribute if a.name == "group"]) for n in pruned.graph.node}
    assert "Conv[3]" in groups and "Conv[1]" in groups


FLATTEN_GEMM = """
g (float[N,2,4,4] x, float[4,2,3,3] w, float[4] b, float[5,16] wf, float[5] bf) => (float[N,5] y) {
    cc = Conv <strides = [2,2], pads = [1,1,1,1]> (x, w, b)
    c = Relu (cc)
    p = MaxPool <kernel_shape = [2,2], strides = [1,1], pads = [0,0,1,1]> (c)
    fl = Flatten (p)
    y = Gemm <transB = 1> (fl, wf, bf)
}
"""


def test_flatten_stride_map_into_gemm():
    pruned, report = prune_and_check(graphs.make(FLATTEN_GEMM, ["w", "b", "wf", "bf"]))
    s = shapes(pruned)
    assert s["w"] == (2, 2, 3, 3) and s["wf"] == (5, 8)
    kept = next(r["kept"] for r in report["kept"] if r["tensor"] == "wf")
    assert len(kept) == 8 and kept[0] % 4 == 0 and kept[3] == kept[0] + 3  # whole 2x2 stride blocks


RESHAPE_MATMUL = """
g (float[N,2,4,4] x, float[4,2,1,1] w, float[64,3] wm, int64[2] shp) => (float[N,3] y) {
    c = Conv (x, w)
    sg = Sigmoid (c)
    rs = Reshape (sg, shp)
    y = MatMul (rs, wm)
}
"""


def test_reshape_stride_map_into_matmul_and_shape_constant():
    model = graphs.make(RESHAPE_MATMUL, ["w", "wm"], values={"shp": np.array([-1, 64], np.int64)})
    pruned, _ = prune_and_check(model)
    s = shapes(pruned)
    assert s["w"] == (2, 2, 1, 1) and s["wm"] == (32, 3)
    shp = next(t for t in pruned.graph.initializer if t.name == "shp")
    assert onnx_list(shp) == [-1, 32]


def onnx_list(t):
    import onnx

    return onnx.numpy_helper.to_array(t).tolist()


SPLIT_SLICE = """
g (float[N,3,5,5] x, float[8,3,1,1] w, float[4,8,1,1] w2, float[4,5,1,1] w3, int64[2] sp, int64[1] st, int64[1] en,
   int64[1] ax) => (float[N,4,5,5] y, float[N,4,5,5] z) {
    c = Conv (x, w)
    a, b = Split <axis = 1> (c, sp)
    rb = Relu (b)
    ta = Tanh (a)
    j = Concat <axis = 1> (rb, ta)
    y = Conv (j, w2)
    sl = Slice (c, st, en, ax)
    z = Conv (sl, w3)
}
"""


def test_split_and_slice_ranges():
    model = graphs.make(SPLIT_SLICE, ["w", "w2", "w3"], values={
        "sp": np.array([3, 5], np.int64), "st": np.array([2], np.int64), "en": np.array([7], np.int64),
        "ax": np.array([1], np.int64)})
    pruned, report = prune_and_check(model)
    s = shapes(pruned)
    # positions {0,1} (a only), {2} (a + slice), {3..6} (b + slice), {7} (b only) are four groups: 2,1,4,1
    assert s["w"] == (5, 3, 1, 1) and s["w2"] == (4, 5, 1, 1)
    kept = next(r["kept"] for r in report["kept"] if r["tensor"] == "w" and r["axis"] == 0)
    sp = [int(v) for v in next(t for t in pruned.graph.initializer if t.name == "sp").int64_data or
          np.frombuffer(next(t for t in pruned.graph.initializer if t.name == "sp").raw_data, np.int64)]
    assert sp == [sum(k < 3 for k in kept), sum(k >= 3 for k in kept)]
    assert s["w3"][1] == sum(2 <= k < 7 for k in kept)


ARITH = """
g (float[N,3,5,5] x, float[4,3,1,1] w1, float[4,3,1,1] w2, float[4,3,1,1] w3, float[4,3,1,1] w4, float[4,1,1] k,
   float[1,4,1,1] q, float[4,1,1] slope, float[2,4,1,1] wo) => (float[N,2,5,5] y) {
    c1 = Conv (x, w1)
    c2 = Conv (x, w2)
    c3 = Conv (x, w3)
    c4 = Conv (x, w4)
    d = Sub (c1, c2)
    e = Mul (d, c3)
    ex = Exp (c4)
    f = Div (e, ex)
    fk = Add (f, k)
    fq = Mul (fk, q)
    g = PRelu (fq, slope)
    y = Conv (g, wo)
}
"""


def test_sub_mul_div_and_per_channel_constants():
    model = graphs.make(ARITH, ["w1", "w2", "w3", "w4", "k", "q", "slope", "wo"])
    pruned, _ = prune_and_check(model)
    s = shapes(pruned)
    assert s["w4"] == (2, 3, 1, 1) and s["k"] == (2, 1, 1) and s["q"] == (1, 2, 1, 1) and s["slope"] == (2, 1, 1)
    assert s["wo"] == (2, 2, 1, 1)


SPATIAL = """
g (float[N,3,4,4] x, float[4,3,3,3] w, float[4] s, float[4] b, float[4,2,2,2] wt, float[2] bt, float[8] sc,
   float[8] of, float[8] mn, float[8] vvar, float[3,8,1,1] w2, float[4] scales, int64[8] pads) => (float[N,3,10,10] y) {
    c = Conv <pads = [1,1,1,1]> (x, w)
    i = InstanceNormalization (c, s, b)
    li = LeakyRelu (i)
    a = AveragePool <kernel_shape = [2,2], strides = [2,2]> (li)
    r = Resize <mode = "nearest"> (a, , scales)
    t = ConvTranspose <strides = [2,2]> (r, wt, bt)
    u = Concat <axis = 1> (t, t, t, t)
    bu = BatchNormalization (u, sc, of, mn, vvar)
    p = Pad (bu, pads)
    y = Conv (p, w2)
}
"""


def test_instance_norm_pooling_resize_convtranspose_pad():
    model = graphs.make(SPATIAL, ["w", "s", "b", "wt", "bt", "sc", "of", "mn", "vvar", "w2"], values={
        "scales": np.array([1, 1, 2, 2], np.float32), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)})
    pruned, _ = prune_and_check(model)
    s = shapes(pruned)
    assert s["w"] == (2, 3, 3, 3) and s["s"] == (2,) and s["wt"] == (2, 1, 2, 2) and s["bt"] == (1,)
    assert s["w2"] == (3, 4, 1, 1) and s["sc"] == (4,)


TRANSPOSE = """
g (float[N,3,4,4] x, float[6,3,1,1] w, float[6,5] wm, float[5] bm) => (float[N,4,4,5] y) {
    c = Conv (x, w)
    hs = HardSwish (c)
    t = Transpose <perm = [0,2,3,1]> (hs)
    mm = MatMul (t, wm)
    y = Add (mm, bm)
}
"""


def test_transpose_channel_last_matmul():
    pruned, _ = prune_and_check(graphs.make(TRANSPOSE, ["w", "wm", "bm"]))
    assert shapes(pruned)["w"] == (3, 3, 1, 1) and shapes(pruned)["wm"] == (3, 5)


FFN = """
g (float[N,5,8] x, float[8,16] w1, float[16] b1, float[16,8] w2, float[8] b2, float[8] ls, float[8] lb, float half,
   float sq2, float one)
   => (float[N,5,8] y) {
    m1 = MatMul (x, w1)
    h = Add (m1, b1)
    hh = Mul (h, half)
    hd = Div (h, sq2)
    he = Erf (hd)
    h1 = Add (he, one)
    gl = Mul (hh, h1)
    m2 = MatMul (gl, w2)
    f = Add (m2, b2)
    res = Add (x, f)
    y = LayerNormalization <axis = -1> (res, ls, lb)
}
"""


def test_transformer_ffn_intermediate_dim():
    model = graphs.make(FFN, ["w1", "b1", "w2", "b2", "ls", "lb"], values={
        "half": np.array(0.5, np.float32), "sq2": np.array(1.4142135, np.float32), "one": np.array(1, np.float32)})
    info = analyze_groups(model)
    assert [g["units"] for g in info["groups"]] == [16]
    assert any("LayerNormalization" in r or "graph input" in r for b in info["blocked"] for r in b["reasons"])
    pruned, _ = prune_and_check(model)
    s = shapes(pruned)
    assert s["w1"] == (8, 8) and s["b1"] == (8,) and s["w2"] == (8, 8) and s["b2"] == (8,)


ATTENTION = """
g (float[N,6,8] x, float[8,8] wq, float[8] bq, float[8,8] wk, float[8] bk, float[8,8] wv, float[8] bv,
   float[8,8] wo, int64[4] split_heads, int64[3] merge_heads, float scale) => (float[N,6,8] y) {
    mq = MatMul (x, wq)
    aq = Add (mq, bq)
    rq = Reshape (aq, split_heads)
    q = Transpose <perm = [0,2,1,3]> (rq)
    mk = MatMul (x, wk)
    ak = Add (mk, bk)
    rk = Reshape (ak, split_heads)
    k = Transpose <perm = [0,2,3,1]> (rk)
    mv = MatMul (x, wv)
    av = Add (mv, bv)
    rv = Reshape (av, split_heads)
    v = Transpose <perm = [0,2,1,3]> (rv)
    qk = MatMul (q, k)
    qs = Mul (qk, scale)
    p = Softmax <axis = -1> (qs)
    pv = MatMul (p, v)
    pt = Transpose <perm = [0,2,1,3]> (pv)
    o = Reshape (pt, merge_heads)
    y = MatMul (o, wo)
}
"""


@pytest.mark.parametrize("batch", [0, -1])
def test_attention_heads_are_head_sized_units(batch):
    model = graphs.make(ATTENTION, ["wq", "bq", "wk", "bk", "wv", "bv", "wo"], values={
        "split_heads": np.array([batch, 6, 4, 2], np.int64), "merge_heads": np.array([batch, 6, 8], np.int64),
        "scale": np.array(0.7, np.float32)})
    info = analyze_groups(model)
    assert [(g["units"], g["channels"]) for g in info["groups"]] == [(4, 8)]  # 4 heads of 2 channels
    pruned, report = prune_and_check(model)
    s = shapes(pruned)
    assert s["wq"] == (8, 4) and s["wk"] == (8, 4) and s["wv"] == (8, 4) and s["wo"] == (4, 8)
    kept = next(r["kept"] for r in report["kept"] if r["tensor"] == "wq")
    assert kept[1] == kept[0] + 1 and kept[0] % 2 == 0  # whole heads
    import onnx

    new = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in pruned.graph.initializer}
    assert new["merge_heads"] == [batch, 6, 4]
    assert [v for k, v in new.items() if k.startswith("split_heads")] == [[batch, 6, 2, 2]] * 3  # one per Reshape
    assert len({t.name for t in pruned.graph.initializer}) == len(pruned.graph.initializer)


def test_op_without_rule_blocks_its_group_and_softmax_over_channels_blocks():
    text = """
    g (float[N,3,4,4] x, float[4,3,1,1] w, float[4,4,1,1] w2, float[4,4,1,1] w3) => (float[N,4,4,4] y) {
        a = Conv (x, w)
        sm = Softmax <axis = 1> (a)
        b = Conv (sm, w2)
        lr = LRN <size = 3> (b)
        y = Conv (lr, w3)
    }
    """
    model = graphs.make(text, ["w", "w2", "w3"])
    info = analyze_groups(model)
    assert info["groups"] == []
    reasons = [r for b in info["blocked"] for r in b["reasons"]]
    assert any("Softmax" in r for r in reasons) and any("no pruning rule for op LRN" in r for r in reasons)
