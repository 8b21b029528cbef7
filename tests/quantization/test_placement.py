"""Latency-aware placement: the min-cut is the exact optimum of its cost, a deliberately slow int8 region stays
float (committed cost model, and measured on the real session), the cost-model path is deterministic and
host-independent, "no faster plan" writes the float model and exits 1, and a measured run is reproduced by its
effective recipe."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import onnxcompress as oc
from onnxcompress.cli import app
from onnxcompress.ops.cost_rules import Work
from onnxcompress.quantization import target as target_mod
from onnxcompress.quantization.costs import Coefficients, CostModel, fit, load_table, rescaled
from onnxcompress.quantization.placement import Boundary, NodeCost, Problem, estimate, solve
from onnxcompress.recipe import Recipe
from onnxcompress.runtime.session import SessionOptions, optimized_model
from support import graphs
from support.common import ort_outputs

Q, DQ = Coefficients(per_element=0.2e-3), Coefficients(per_element=0.25e-3)
QDQ_MODEL = CostModel("test", "test", {"quantize": Q, "dequantize": DQ})


def _random_problem(rng: random.Random, n: int) -> Problem:
    names = [f"n{i}" for i in range(n)]
    costs = {m: NodeCost(m, "Conv", "conv", rng.uniform(0, 10), rng.uniform(0, 10), True) for m in names}
    boundaries = []
    for i in range(n + 2):
        producer = rng.choice([None] + names[: max(1, i % n)])
        readers = rng.sample(names, rng.randint(0, min(3, n)))
        boundaries.append(Boundary(f"t{i}", producer, [r for r in readers if r != producer], rng.random() < 0.3,
                                   rng.uniform(0, 20000), rng.random() < 0.2))
    pairs = [(a, b, rng.uniform(0, 5)) for a, b in itertools.permutations(names, 2) if rng.random() < 0.1]
    return Problem(costs, boundaries, [], pairs=pairs)


@pytest.mark.parametrize("seed", range(12))
def test_min_cut_is_the_exact_optimum(seed):
    rng = random.Random(seed)
    problem = _random_problem(rng, 6)
    chosen, _ = solve(problem, QDQ_MODEL)
    best = min(estimate(problem, QDQ_MODEL, set(c)) for k in range(7)
               for c in itertools.combinations(problem.costs, k))
    assert estimate(problem, QDQ_MODEL, chosen) == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_fit_recovers_coefficients_and_rescale_matches_totals():
    true = Coefficients(3.0, 2e-5, 1e-3)
    rng = np.random.default_rng(0)
    samples = [("conv.float", Work(m, e), true.us(Work(m, e)))
               for m, e in zip(rng.uniform(1e4, 1e8, 40), rng.uniform(1e3, 1e6, 40))]
    got = fit(samples)["conv.float"]
    assert got.per_node == pytest.approx(3.0, rel=1e-6) and got.per_mac == pytest.approx(2e-5, rel=1e-6)
    model = CostModel("m", "m", {"conv.float": got})
    doubled = [(k, w, 2 * us) for k, w, us in samples]
    scaled, factors = rescaled(model, doubled, "here")
    assert factors == {"conv.float": pytest.approx(2.0)}
    assert scaled.us("conv.float", Work(1e6, 1e4)) == pytest.approx(2 * model.us("conv.float", Work(1e6, 1e4)))


def test_a_single_float_node_between_int8_neighbours_is_forced_int8():
    """onnxruntime fuses DQ -> Softmax -> Q into QLinearSoftmax: the placement must not pretend it runs float."""
    model = graphs.make("""
    g (float[N,16,32,32] x, float[64,16,3,3] w1, float[64] b1, float[64,64,3,3] w2, float[64] b2) => (float[N,64,32,32] y) {
      c1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
      s = Softmax <axis=1> (c1)
      y = Conv <pads=[1,1,1,1]> (s, w2, b2)
    }""", ["w1", "b1", "w2", "b2"])
    q, result = oc.quantize(model, _calib(), oc.QuantizeConfig())
    p = result.placement
    kernels = _kernels(q)
    softmax_int8 = "QLinearSoftmax" in kernels
    assert softmax_int8 == (not any(n.op == "Softmax" for n in p.nodes if not n.int8))
    assert softmax_int8 or "Conv" in kernels  # float softmax only when a neighbouring Conv is float too


def test_committed_tables_load_and_cover_every_class():
    for name in ("x86-vnni", "x86-avx2"):
        t = load_table(name)
        assert {"conv.float", "conv.int8", "matmul.float", "matmul.int8", "quantize", "dequantize"} <= set(t.table)
        assert "bench/cost_model.py" in t.source


# --- a deliberately slow int8 region --------------------------------------------------------------------------------
def slow_softmax_region() -> onnx.ModelProto:
    """Two wide convolutions (int8 pays) with a Softmax (last axis) -> Sigmoid gate on a large map in between
    (QLinearSoftmax is several times slower than the float Softmax on the last axis; a region of two nodes,
    since onnxruntime fuses a single float node between int8 neighbours back into its int8 kernel), then a GAP
    head. (On axis 1 it is the other way round: the float Softmax transposes, the int8 one does not.)"""
    return graphs.make("""
    g (float[N,16,32,32] x, float[64,16,3,3] w1, float[64] b1, float[64,64,3,3] w2, float[64] b2,
       float[10,64] wf, float[10] bf) => (float[N,10] y) {
      c1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
      r1 = Relu (c1)
      s = Softmax <axis=-1> (r1)
      gate = Sigmoid (s)
      c2 = Conv <pads=[1,1,1,1]> (gate, w2, b2)
      r2 = Relu (c2)
      g1 = GlobalAveragePool (r2)
      f = Flatten (g1)
      y = Gemm <transB=1> (f, wf, bf)
    }""", ["w1", "b1", "w2", "b2", "wf", "bf"])


def _calib(n=8, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, 16, 32, 32)).astype(np.float32)}


def _kernels(model) -> set[str]:
    return {n.op_type for n in optimized_model(model, SessionOptions(providers="cpu")).graph.node}


def test_cost_model_keeps_the_slow_softmax_float_and_the_convs_int8():
    model, data = slow_softmax_region(), _calib()
    q, result = oc.quantize(model, data, oc.QuantizeConfig())
    p = result.placement
    assert p is not None and p.faster and p.cost_model == "x86-vnni"
    softmax = [n.node for n in p.nodes if n.op == "Softmax"]
    assert softmax and set(softmax) <= set(p.float_nodes)
    assert {n.node for n in p.nodes if n.op == "Conv"}.isdisjoint(p.float_nodes)
    kernels = _kernels(q)
    assert "QLinearConv" in kernels and "QLinearSoftmax" not in kernels and "Softmax" in kernels
    assert p.estimated_plan_us < min(p.estimated_float_us, p.estimated_int8_us)
    ref, out = ort_outputs(model, data)["y"], ort_outputs(q, data)["y"]
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    reason = dict(result.skipped)[softmax[0]]
    assert "INT8 does not pay" in reason and "x86-vnni" in reason


def test_measured_placement_keeps_the_slow_region_float_and_is_reproduced_by_the_effective_recipe():
    model, data = slow_softmax_region(), _calib()
    cfg = oc.QuantizeConfig(placement="measure", placement_batch=8, placement_iterations=5)
    q, result = oc.quantize(model, data, cfg)
    p = result.placement
    assert p.measured is not None and set(p.measured["median_ms"]) >= {"float", "full_int8"}
    speedups = p.measured["speedup"]
    assert p.measured["chosen"] == max(speedups, key=speedups.get)  # the fastest measured candidate wins
    softmax = [n.node for n in p.nodes if n.op == "Softmax"]
    # the rescaled cost model proposes the slow region float; which candidate wins is this host's (noisy) timing
    assert set(softmax) <= set(p.measured["candidates"]["placement"])
    assert p.float_nodes == tuple(p.measured["candidates"].get(p.measured["chosen"], [n.node for n in p.nodes]))
    assert p.measured["rescale_factors"]  # the table was rescaled to this host's kernel times
    assert result.config.placement == "fixed" and result.config.float_nodes == p.float_nodes
    again, _ = oc.quantize(model, data, result.config)  # the effective recipe reproduces the measured model
    assert again.SerializeToString() == q.SerializeToString()


def test_cost_model_output_does_not_depend_on_the_host(monkeypatch):
    model, data = slow_softmax_region(), _calib()
    blobs = []
    for machine, flags in (("x86_64", {"avx2", "avx512_vnni"}), ("x86_64", {"avx2"}), ("aarch64", {"asimd"})):
        monkeypatch.setattr(target_mod, "host_facts", lambda m=machine, f=flags: target_mod.HostFacts(m, frozenset(f)))
        q, _ = oc.quantize(model, data, oc.QuantizeConfig(target="cpu"))
        blobs.append(q.SerializeToString())
    assert blobs[0] == blobs[1] == blobs[2]


def tiny_mlp() -> onnx.ModelProto:
    return graphs.make("""
    g (float[N,16] x, float[16,16] w1, float[16] b1, float[16,4] w2) => (float[N,4] y) {
      m = MatMul (x, w1)
      h = Add (m, b1)
      r = Relu (h)
      y = MatMul (r, w2)
    }""", ["w1", "b1", "w2"])


def test_no_faster_plan_writes_the_float_model_and_the_cli_exits_1(tmp_path):
    model = tiny_mlp()
    data = {"x": np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)}
    q, result = oc.quantize(model, data)
    assert result.no_faster_plan and result.nothing_quantized
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in q.graph.node)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **data)
    r = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"),
                                 "--calib", str(tmp_path / "c.npz"), "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 1, r.output
    assert "no INT8 plan is faster than the float model" in r.output and (tmp_path / "q.onnx").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["placement"]["faster"] is False and report["placement"]["float_nodes"]
    forced = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "f.onnx"),
                                      "--calib", str(tmp_path / "c.npz"), "--placement", "fixed"])
    assert forced.exit_code == 0, forced.output


def test_placement_fields_are_validated_and_reach_the_recipe(tmp_path):
    with pytest.raises(oc.RecipeError):
        oc.QuantizeConfig(placement="fastest")
    with pytest.raises(oc.RecipeError):
        oc.QuantizeConfig(placement_min_gain=1.5)
    with pytest.raises(oc.RecipeError, match="float_nodes"):
        oc.quantize(tiny_mlp(), {"x": np.ones((4, 16), np.float32)}, oc.QuantizeConfig(float_nodes=("nope",)))
    recipe = Recipe.from_dict({"quantize": {"placement": "fixed", "float_nodes": ["MatMul_0"]}})
    path = recipe.write(tmp_path / "r.toml")
    assert Recipe.from_file(path).quantize.float_nodes == ("MatMul_0",)
