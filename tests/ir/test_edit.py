"""ir/edit.extract: the part of a model after a cut, fed the cut tensors, computes what the whole model does."""

import numpy as np
import onnx

from onnxcompress.ir.edit import expose_outputs, extract
from support import graphs
from support.common import ort_outputs


def test_extract_from_a_cut_computes_what_the_model_does():
    model = graphs.make(
        """
        g (float[N,4] x, float[4,4] w) => (float[N,2] y, float[N,2] z) {
            h = MatMul (x, w)
            a, b = Split <axis = 1, num_outputs = 2> (h)
            y = Add (a, b)
            z = Mul (b, b)
        }
        """, ["w"], check=False)
    model.opset_import[0].version = 18
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    full = ort_outputs(model, {"x": x})
    a = ort_outputs(expose_outputs(model, ["a"]), {"x": x})["a"]
    part = extract(model, {"a": np.dtype(np.float32)}, ["y"])  # needs a (cut) and b (from x, through Split)
    assert sorted(i.name for i in part.graph.input) == ["a", "x"]
    split = next(n for n in part.graph.node if n.op_type == "Split")
    assert len(split.output) == 2 and split.output[1] == "b"  # the Split keeps its slot for a, under a fresh name
    np.testing.assert_allclose(ort_outputs(part, {"a": a, "x": x})["y"], full["y"], rtol=1e-6)
    only_cut = extract(model, {"b": np.dtype(np.float32)}, ["z"])
    assert [i.name for i in only_cut.graph.input] == ["b"] and [n.op_type for n in only_cut.graph.node] == ["Mul"]

