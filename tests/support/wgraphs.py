"""Fixtures of the precision and weight-compression tests: small graphs whose numerics are known."""

from __future__ import annotations

import numpy as np

from support.graphs import make


def overflow_chain():
    """x [N, 16] -> MatMul (|h| ~ 1e5 > 65504) -> Clip(min 0) -> Mul 1e-5 -> Relu -> MatMul -> Softmax: only h and
    the Clip's output leave fp16's range. Clip has an fp16 kernel on onnxruntime's CPU provider, so an unguarded
    conversion really stores h in fp16 there (MatMul and Mul run in float32 behind inserted casts)."""
    rng = np.random.default_rng(3)
    w1 = (np.abs(rng.standard_normal((16, 32))) * 600 + 400).astype(np.float32)
    w2 = (rng.standard_normal((32, 10)) * 0.3).astype(np.float32)
    return make("""
    g (float[N,16] x, float[16,32] w1, float zero, float scale, float[32,10] w2) => (float[N,10] y) {
      h = MatMul(x, w1)
      c = Clip(h, zero)
      s = Mul(c, scale)
      t = Relu(s)
      z = MatMul(t, w2)
      y = Softmax<axis = -1>(z)
    }""", [], values={"w1": w1, "w2": w2, "zero": np.array(0.0, np.float32), "scale": np.array(1e-5, np.float32)})


def overflow_data(n: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": (np.abs(rng.standard_normal((n, 16))) * 8 + 4).astype(np.float32)}


def layernorm_decomposed():
    """x -> MatMul -> decomposed LayerNorm (ReduceMean, Sub, Pow 2, ReduceMean, Add eps 1e-12, Sqrt, Div) -> Gemm.
    With |x| ~ 400, Pow's output (~1.6e5) overflows fp16 and eps flushes to zero."""
    rng = np.random.default_rng(5)
    return make("""
    g (float[N,8] x, float[8,64] w, float two, float eps, float[64,4] wo) => (float[N,4] y) {
      h = MatMul(x, w)
      m = ReduceMean<axes = [-1]>(h)
      d = Sub(h, m)
      p = Pow(d, two)
      v = ReduceMean<axes = [-1]>(p)
      ve = Add(v, eps)
      sd = Sqrt(ve)
      n = Div(d, sd)
      y = MatMul(n, wo)
    }""", [], values={"w": (rng.standard_normal((8, 64)) * 120).astype(np.float32),
                      "two": np.array(2.0, np.float32), "eps": np.array(1e-12, np.float32),
                      "wo": rng.standard_normal((64, 4)).astype(np.float32)})


def big_reduction():
    """ReduceSum over 8192 elements (beyond max_reduction 4096), then a small Gemm."""
    rng = np.random.default_rng(7)
    return make("""
    g (float[N,4,8192] x, int64[1] axes, float[4,3] w) => (float[N,3] y) {
      s = ReduceSum<keepdims = 0>(x, axes)
      y = MatMul(s, w)
    }""", [], values={"axes": np.array([-1], np.int64), "w": rng.standard_normal((4, 3)).astype(np.float32)})


def linear_stack(k: int = 64, n: int = 48, seed: int = 11):
    """x [N, k] -> MatMul W1 (k x n) -> Add b1 -> Relu -> Gemm(transB) W2 (24 x n) + b2."""
    return make(f"""
    g (float[N,{k}] x, float[{k},{n}] w1, float[{n}] b1, float[24,{n}] w2, float[24] b2) => (float[N,24] y) {{
      h = MatMul(x, w1)
      a = Add(h, b1)
      r = Relu(a)
      y = Gemm<transB = 1>(r, w2, b2)
    }}""", ["w1", "b1", "w2", "b2"], seed=seed)


def correlated_inputs(n: int, k: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs with a strongly anisotropic covariance (where second-order rounding pays off); every seed draws
    samples of the same distribution (the mixing matrix is fixed)."""
    mixer = np.random.default_rng(1234)
    mix = mixer.standard_normal((k, k)) * (mixer.random(k) ** 4)[None, :]
    rng = np.random.default_rng(seed)
    return {"x": (rng.standard_normal((n, k)) @ mix + 0.1 * rng.standard_normal((n, k))).astype(np.float32)}


def embedding_matmul(vocab: int = 50, dim: int = 64):
    """ids -> Gather(E) -> MatMul W -> y: an embedding table and a linear layer."""
    return make(f"""
    g (int64[N,5] ids, float[{vocab},{dim}] emb, float[{dim},32] w) => (float[N,5,32] y) {{
      e = Gather(emb, ids)
      y = MatMul(e, w)
    }}""", ["emb", "w"], seed=13)


def conv_stack():
    """Conv 3->16 (3x3) -> Relu -> Conv 16->16 (3x3) -> GlobalAveragePool -> Flatten -> Gemm 16->10."""
    return make("""
    g (float[N,3,12,12] x, float[16,3,3,3] w1, float[16] b1, float[16,16,3,3] w2, float[16] b2, float[10,16] wf,
       float[10] bf) => (float[N,10] y) {
      c1 = Conv<pads = [1,1,1,1]>(x, w1, b1)
      r1 = Relu(c1)
      c2 = Conv<pads = [1,1,1,1]>(r1, w2, b2)
      r2 = Relu(c2)
      p = GlobalAveragePool(r2)
      f = Flatten(p)
      y = Gemm<transB = 1>(f, wf, bf)
    }""", ["w1", "b1", "w2", "b2", "wf", "bf"], seed=17)
