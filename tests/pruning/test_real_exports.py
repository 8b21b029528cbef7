"""Pruning on the shapes real exports have: reshapes computed at run time (Paddle/TF), RNN state batched on
axis 1 next to a 0-d input (Silero), and weighted layers that live only inside If branches."""

import numpy as np
import onnx
import pytest

import onnxcompress as oc
from onnxcompress.errors import UnsupportedModelError
from onnxcompress.ir.shapes import incomplete, infer_shapes, known_shapes, value_shapes, with_input_shapes
from onnxcompress.pruning.groups import analyze_groups
from support import graphs
from support.common import assert_close_rel, ort_outputs
from support.prune_helpers import zeroed_reference

RNG = np.random.default_rng(0)

COMPUTED = """
g (float[N,3,8,8] x, float[16,3,3,3] w1, float[16,32] wa, float[32,4] wb, int64[1] zero, int64[1] one,
   int64[1] two, int64[1] four) => (float[N,64,4] y) {
    c1 = Conv <pads = [1,1,1,1]> (x, w1)
    r1 = Relu (c1)
    s = Shape (r1)
    n = Slice (s, zero, one)
    hw = Slice (s, two, four)
    p = ReduceProd <keepdims = 1> (hw)
    f = Cast <to = 1> (p)
    k = Cast <to = 7> (f)
    cc = Slice (s, one, two)
    t = Concat <axis = 0> (n, cc, k)
    v = Reshape (r1, t)
    tr = Transpose <perm = [0, 2, 1]> (v)
    h = MatMul (tr, wa)
    hr = Relu (h)
    y = MatMul (hr, wb)
}
"""


def _computed_reshape():
    ints = {"zero": np.array([0]), "one": np.array([1]), "two": np.array([2]), "four": np.array([4])}
    return graphs.make(COMPUTED, ["w1", "wa", "wb"], values=ints)


def test_observed_shapes_complete_what_static_inference_loses():
    model = _computed_reshape()
    static = value_shapes(infer_shapes(with_input_shapes(model, {})))
    assert "h" in incomplete(model, static)  # the flattened spatial dim is symbolic after the computed Reshape
    sample = {"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    shapes = known_shapes(model, {"x": [1, 3, 8, 8]}, sample)
    assert shapes["h"] == (1, 64, 32) and shapes["y"] == (1, 64, 4) and not incomplete(model, shapes)


def test_prune_follows_a_computed_reshape_with_data():
    model = _computed_reshape()
    assert not analyze_groups(model)["groups"]  # statically: nothing prunable
    x = RNG.standard_normal((8, 3, 8, 8)).astype(np.float32)
    pruned, result = oc.prune(model, oc.PruneConfig(ratio=0.5, round_to=1), {"x": x})
    assert [(g.channels_before, g.channels_after) for g in result.groups] == [(32, 16)]
    report = result.to_dict()
    feeds = {"x": x[:2]}
    assert_close_rel(ort_outputs(zeroed_reference(model, report), feeds)["y"], ort_outputs(pruned, feeds)["y"], 1e-5)
    assert result.before.macs > result.after.macs > 0  # MACs counted past the Reshape (observed shapes)


STATEFUL = """
g (float[N,4] x, float[2,N,8] state, int64 sr, float[4,16] w1, float[16,3] w2) => (float[N,3] y, float[2,N,8] out) {
    h = MatMul (x, w1)
    r = Relu (h)
    z = MatMul (r, w2)
    srf = Cast <to = 1> (sr)
    y = Mul (z, srf)
    out = Identity (state)
}
"""


def test_state_batched_on_axis_1_and_scalar_inputs():
    model = graphs.make(STATEFUL, ["w1", "w2"])
    data = {"x": RNG.standard_normal((6, 4)).astype(np.float32),
            "state": RNG.standard_normal((2, 6, 8)).astype(np.float32), "sr": np.array(16000, np.int64)}
    pruned, result = oc.prune(model, oc.PruneConfig(ratio=0.5, round_to=1), data)
    assert [(g.channels_before, g.channels_after) for g in result.groups] == [(16, 8)]
    feeds = {"x": data["x"][:2], "state": data["state"][:, :2], "sr": data["sr"]}
    want = ort_outputs(zeroed_reference(model, result.to_dict()), feeds)
    got = ort_outputs(pruned, feeds)
    assert_close_rel(want["y"], got["y"], 1e-5)
    np.testing.assert_array_equal(got["out"], feeds["state"])


def test_layers_only_inside_subgraphs_are_named_in_the_refusal():
    text = """
    g (float[N,3,8,8] x, bool c) => (float[N,4,8,8] y) {
      y = If (c) <
        then_branch = t () => (float[N,4,8,8] ty) {
          tw = Constant <value = float[4,3,3,3] {W}> ()
          ty = Conv <pads = [1,1,1,1]> (x, tw)
        },
        else_branch = e () => (float[N,4,8,8] ey) { ey = Identity (x2) }>
    }""".replace("W", ", ".join(["0.5"] * 108))
    text = text.replace("ey = Identity (x2)", "ew = Constant <value = float[4,3,1,1] {" + ", ".join(["0.1"] * 12)
                        + "}> ()\n ey = Conv (x, ew)")
    model = graphs.make(text, [])
    before = model.SerializeToString()
    with pytest.raises(UnsupportedModelError, match="inside If/Loop/Scan subgraphs") as e:
        oc.prune(model, oc.PruneConfig(ratio=0.5))
    assert "quantize" in e.value.hint and model.SerializeToString() == before
    onnx.checker.check_model(model)
