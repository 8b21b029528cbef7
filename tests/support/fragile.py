"""A fixture MLP with one deliberately fragile layer.

``fragile`` (the middle MatMul) has one input row of huge weights that meets an input channel which the layer
before always leaves at exactly 0 (its weight column is zero, then Relu): the float output does not depend on
those weights, but every weight column's int8 scale is set by them, so the small weights that do matter round to
zero. Every other layer quantizes well.
"""

from __future__ import annotations

import numpy as np

from support import graphs


def fragile_mlp():
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((16, 32)) / 4).astype(np.float32)
    w1[:, 0] = 0.0  # channel 0 of h1 is always 0 after Relu
    w2 = (rng.standard_normal((32, 32)) / 6).astype(np.float32)
    w2[0, :] = 40.0  # dominates every column's weight scale, multiplies only zeros
    w3 = (rng.standard_normal((32, 24)) / 6).astype(np.float32)
    w4 = (rng.standard_normal((24, 10)) / 5).astype(np.float32)
    return graphs.make("""
    g (float[N,16] x, float[16,32] w1, float[32] b1, float[32,32] w2, float[32] b2, float[32,24] w3, float[24] b3,
       float[24,10] w4) => (float[N,10] y) {
      m1 = MatMul (x, w1)
      h1 = Add (m1, b1)
      r1 = Relu (h1)
      m2 = MatMul (r1, w2)
      h2 = Add (m2, b2)
      r2 = Relu (h2)
      m3 = MatMul (r2, w3)
      h3 = Add (m3, b3)
      r3 = Relu (h3)
      y = MatMul (r3, w4)
    }""", [], values={"w1": w1, "b1": np.zeros(32, np.float32), "w2": w2, "b2": np.full(32, 0.1, np.float32),
                      "w3": w3, "b3": np.full(24, 0.1, np.float32), "w4": w4})


def fragile_data(model, n: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs plus labels = the float model's argmax (so the float top-1 is 1.0)."""
    from support.common import ort_outputs

    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    labels = ort_outputs(model, {"x": x})["y"].argmax(axis=1).astype(np.int64)
    return {"x": x, "labels": labels}
