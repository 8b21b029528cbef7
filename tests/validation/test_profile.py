"""Latency statistics against a fake clock; ORT profiling parsed from real and synthetic events."""

import numpy as np
import pytest

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import DataError
from onnxcompress.runtime.session import SessionOptions
from onnxcompress.validation import profile as P
from onnxcompress.validation.config import ProfileConfig
from support import graphs


class FakeClock:
    """Each call returns the next time; a run of model X advances the clock by durations[X] (popped in order)."""

    def __init__(self):
        self.now = 0.0
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.now


def test_latency_stats_hand_computed():
    samples = [0.001, 0.002, 0.003, 0.004, 0.010]  # seconds
    s = P.latency_stats(samples, batch_size=4)
    assert s["runs"] == 5
    assert s["p50_ms"] == pytest.approx(3.0)
    assert s["p90_ms"] == pytest.approx(4.0 + 0.6 * 6.0)  # linear interpolation between 4 and 10 ms
    assert s["p99_ms"] == pytest.approx(4.0 + 0.96 * 6.0)
    assert s["mean_ms"] == pytest.approx(4.0)
    assert s["throughput_per_s"] == pytest.approx(4 / 0.004)
    with pytest.raises(ValueError):
        P.latency_stats([])


def test_interleaved_timing_with_fake_clock():
    clock = FakeClock()
    order = []
    durations = {"a": 0.002, "b": 0.001}

    def runner(name):
        def fn():
            order.append(name)
            clock.now += durations[name]
        return fn

    samples = P.time_interleaved({"a": runner("a"), "b": runner("b")}, warmup=2, iterations=4, clock=clock)
    assert order[:4] == ["a", "b", "a", "b"]  # warm-up
    assert order[4:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # ABBA interleaving
    assert samples["a"] == pytest.approx([0.002] * 4) and samples["b"] == pytest.approx([0.001] * 4)
    assert clock.calls == 16  # two clock reads per timed run, none during warm-up
    ref, cand = P.latency_stats(samples["a"]), P.latency_stats(samples["b"])
    assert P.speedup(ref, cand) == pytest.approx(2.0)


def test_parse_ort_profile_and_placement_warnings():
    events = [
        {"cat": "Session", "name": "model_run", "dur": 100},
        {"cat": "Node", "name": "conv1_kernel_time", "dur": 30, "args": {"op_name": "Conv", "provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "conv1_fence_before", "dur": 1, "args": {}},
        {"cat": "Node", "name": "conv2_kernel_time", "dur": 50, "args": {"op_name": "Conv", "provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "topk_kernel_time", "dur": 15, "args": {"op_name": "TopK", "provider": "CPUExecutionProvider"}},
        {"cat": "Node", "name": "copy_kernel_time", "dur": 5,
         "args": {"op_name": "MemcpyToHost", "provider": "CPUExecutionProvider"}},
    ]
    parsed = P.parse_ort_profile(events)
    assert parsed["op_type_time"]["Conv"]["share"] == pytest.approx(0.8)
    assert list(parsed["op_type_time"]) == ["Conv", "TopK", "MemcpyToHost"]
    assert parsed["nodes_by_provider"] == {"CUDAExecutionProvider": 2, "CPUExecutionProvider": 2}
    warnings = P.placement_warnings(parsed, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert len(warnings) == 2 and "topk" in warnings[0] and "memcpy" in warnings[1]
    assert P.placement_warnings(parsed, ["CPUExecutionProvider"]) == []


def test_feeds_for_batch_repeats_and_checks_static_batch():
    model = graphs.conv_bn_head()
    specs = model_input_specs(model)
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    feeds = P.feeds_for_batch({"x": x}, specs, 5)
    assert feeds["x"].shape == (5, 3, 8, 8)
    assert np.array_equal(feeds["x"][2], x[0]) and np.array_equal(feeds["x"][3], x[1])
    static = graphs.make("g (float[1,4] x) => (float[1,4] y) { y = Relu (x) }", [])
    with pytest.raises(DataError, match="static batch"):
        P.feeds_for_batch({"x": np.zeros((1, 4), np.float32)}, model_input_specs(static), 8)


def test_profile_sessions_real_ort():
    model = graphs.conv_bn_head()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    config = ProfileConfig(batch_sizes=(1, 4), warmup=1, iterations=6, op_profile_runs=2, min_rounds=3, max_rounds=3)
    result = P.profile_sessions({"reference": model, "candidate": model}, {"x": x}, model_input_specs(model),
                                config, SessionOptions(providers="cpu", threads=1)).to_dict()
    assert [b["batch_size"] for b in result["batches"]] == [1, 4]
    assert result["batches"][1]["models"]["candidate"]["runs"] == 6  # 3 A/B rounds of 2 runs each
    assert result["batches"][0]["speedup_p50"] > 0
    rounds = result["batches"][0]["speedup"]
    assert rounds["rounds"] == 3 and rounds["runs_per_round"] == 2 and len(rounds["ratios"]) == 3
    assert rounds["lower"] <= rounds["median"] <= rounds["upper"] and not rounds["exact_interval"]
    prof = result["op_profile"]["reference"]
    assert prof["nodes_by_provider"]["CPUExecutionProvider"] >= 3
    assert "Conv" in prof["op_type_time"] and sum(t["share"] for t in prof["op_type_time"].values()) == pytest.approx(1)
    assert result["peak_rss_mb"] > 10 and result["warnings"] == []


def test_feeds_for_batch_takes_samples_on_a_state_axis_and_keeps_0d_inputs():
    model = graphs.make("""
    g (float[N,4] x, float[2,N,4] state, int64 sr) => (float[2,N,4] out) {
      out = Add (state, x)
    }""", [], check=False)
    sample = {"x": np.arange(12, dtype=np.float32).reshape(3, 4),
              "state": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "sr": np.array(16000)}
    feeds = P.feeds_for_batch(sample, model_input_specs(model), 5)
    assert feeds["x"].shape == (5, 4) and feeds["state"].shape == (2, 5, 4) and feeds["sr"].shape == ()
    assert (feeds["state"][:, 3] == sample["state"][:, 0]).all()  # cycled along the batch axis


def test_profile_a_recurrent_zoo_model_against_itself():
    """silero_vad: the state input has its samples on axis 1 and sr is 0-d; optimize's default gate profiles it."""
    from onnxcompress import api
    from support.common import zoo_member

    folder = zoo_member("silero_vad")
    if not (folder / "model.onnx").exists():
        pytest.skip("silero_vad is not available")
    config = ProfileConfig(batch_sizes=(4,), warmup=1, iterations=5, op_profile=False, min_rounds=5, max_rounds=5)
    report = api.profile(folder / "model.onnx", vs=folder / "model.onnx", data=folder / "calib.npz", config=config,
                         providers="cpu")
    est = report.profile.batches[0].speedup
    assert est is not None and est.rounds == 5 and est.lower <= est.median <= est.upper
