"""Fixture graphs for the quantizer, one per op rule (ONNX text, seeded weights)."""

from __future__ import annotations

import numpy as np

from support import graphs


def conv_residual():
    """Conv+Relu, depthwise Conv+Clip(0,6), residual Add (multi-fan-out), MaxPool, 1x1 Conv+Relu, GAP, Flatten, Gemm."""
    return graphs.make("""
    g (float[N,3,16,16] x, float[8,3,3,3] w1, float[8] b1, float[8,1,3,3] w2, float[8] b2, float[16,8,1,1] w3,
       float[10,16] wf, float[10] bf, float lo, float hi) => (float[N,10] y) {
      c1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
      r1 = Relu (c1)
      c2 = Conv <pads=[1,1,1,1], group=8> (r1, w2, b2)
      r2 = Clip (c2, lo, hi)
      a = Add (r1, r2)
      p = MaxPool <kernel_shape=[2,2], strides=[2,2]> (a)
      c3 = Conv (p, w3)
      r3 = Relu (c3)
      g1 = GlobalAveragePool (r3)
      f = Flatten (g1)
      y = Gemm <transB=1> (f, wf, bf)
    }""", ["w1", "b1", "w2", "b2", "w3", "wf", "bf"],
        values={"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)})


def concat_pools():
    """Inception-style Concat of two Conv branches, AveragePool, then a MatMul with a constant weight."""
    return graphs.make("""
    g (float[N,4,8,8] x, float[6,4,1,1] wa, float[6] ba, float[5,4,3,3] wb, float[5] bb, float[44,7] wm,
       int64[2] shp) => (float[N,7] y) {
      ca = Conv (x, wa, ba)
      ra = Relu (ca)
      cb = Conv <pads=[1,1,1,1]> (x, wb, bb)
      rb = Relu (cb)
      k = Concat <axis=1> (ra, rb)
      p = AveragePool <kernel_shape=[4,4], strides=[4,4]> (k)
      t = Transpose <perm=[0,2,3,1]> (p)
      r = Reshape (t, shp)
      y = MatMul (r, wm)
    }""", ["wa", "ba", "wb", "bb", "wm"], values={"shp": np.array([-1, 44], np.int64)})


def attention():
    """Gemm(transB=0) -> activation x activation MatMul -> Softmax -> MatMul (single-head attention, 2-D)."""
    return graphs.make("""
    g (float[N,16] x, float[16,16] wq, float[16] bq, float[16,16] wk, float[16,16] wv) => (float[N,16] y) {
      q = Gemm (x, wq, bq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      kt = Transpose <perm=[1,0]> (k)
      s = MatMul (q, kt)
      a = Softmax <axis=1> (s)
      y = MatMul (a, v)
    }""", [], values={k: _small((16, 16), i) for i, k in enumerate(("wq", "wk", "wv"))} | {"bq": _small((16,), 3)})


def _small(shape, seed):
    """Weights with the scale of a trained layer (1/sqrt(fan_in)), so the attention logits stay moderate."""
    return (np.random.default_rng(seed).standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def mul_sigmoid():
    """Gating: Conv -> Sigmoid, Mul of two activations (QLinearSigmoid, QLinearMul)."""
    return graphs.make("""
    g (float[N,4,6,6] x, float[4,4,1,1] w, float[4] b) => (float[N,4,6,6] y) {
      c = Conv (x, w, b)
      s = Sigmoid (c)
      y = Mul (c, s)
    }""", ["w", "b"])


FIXTURES = {
    "conv_residual": (conv_residual, (3, 16, 16)),
    "concat_pools": (concat_pools, (4, 8, 8)),
    "attention": (attention, (16,)),
    "mul_sigmoid": (mul_sigmoid, (4, 6, 6)),
}


def data(shape, n=64, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)}
