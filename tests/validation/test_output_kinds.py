"""Output kinds: inference from producer ops, shapes, names and values on fixtures of every kind and on committed
real models; user overrides; the per-kind metrics against hand-computed values; the report says kind and why."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxcompress.data.inputs import load_input_data, model_input_specs
from onnxcompress.errors import RecipeError
from onnxcompress.ir.io import load_model
from onnxcompress.validation.config import FidelityFloors, OutputSpec, ValidateConfig, parse_output_kind
from onnxcompress.validation.kind_metrics import KindAccumulator, floor_check
from onnxcompress.validation.outputs import KindDecision, infer_kinds, name_words, primary_output
from support import graphs
from support.common import ort_outputs, zoo_member

N = 6


def _kinds(model, feeds, overrides=None):
    outs = ort_outputs(model, feeds)
    return infer_kinds(model, outs, feeds, overrides), outs


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def multi_head():
    """One model with an output of every kind the graph alone can show."""
    return graphs.make("""
    g (float[N,8] x, float[N,4] state, float[8,10] w1, float[10] b1, float[8,4] w2, float[8,16] w3, float[16] g3,
       float[16] o3, float[8,1] w4, float[8,12] w5, float[4,4] w6, int64[3] shape) =>
      (float[N,10] logits, float[N,4] probs, float[N,16] hidden, float[N,1] score, float[N] label,
       float[N,1] value, float[N,4] state_out, float[N,3,4] per_step, float[N,12] pooled_embedding) {
        m1 = MatMul (x, w1)
        logits = Add (m1, b1)
        m2 = MatMul (x, w2)
        probs = Softmax <axis = -1> (m2)
        m3 = MatMul (x, w3)
        hidden = LayerNormalization <axis = -1> (m3, g3, o3)
        m4 = MatMul (x, w4)
        score = Sigmoid (m4)
        label_i = ArgMax <axis = 1, keepdims = 0> (logits)
        label = Cast <to = 1> (label_i)
        value = MatMul (x, w4)
        m6 = MatMul (state, w6)
        s6 = Add (m6, m2)
        state_out = Tanh (s6)
        m5 = MatMul (x, w5)
        r = Reshape (m5, shape)
        per_step = Softmax <axis = -1> (r)
        pooled_embedding = Relu (m5)
    }""", ["w1", "b1", "w2", "w3", "g3", "o3", "w4", "w5", "w6"], values={"shape": np.array([-1, 3, 4], np.int64)})


EXPECTED = {"logits": ("class_logits", "top1_agreement"), "probs": ("class_probabilities", "top1_agreement"),
            "hidden": ("embedding", "cosine"), "score": ("decision", "decision_agreement"),
            "label": ("decision", "decision_agreement"), "value": ("regression", "relative_error"),
            "state_out": ("state", "relative_error"), "per_step": ("sequence", "step_agreement"),
            "pooled_embedding": ("embedding", "cosine")}


def test_every_kind_is_inferred_with_a_reason():
    model = multi_head()
    kinds, outs = _kinds(model, {"x": _x(N, 8), "state": _x(N, 4, seed=1)})
    assert {n: (k.kind, k.metric) for n, k in kinds.items()} == EXPECTED
    assert all(k.source == "inferred" and k.reason for k in kinds.values())
    assert "Softmax" in kinds["probs"].reason and "LayerNormalization" in kinds["hidden"].reason
    assert "'state'" in kinds["state_out"].reason  # the input it is passed back as
    assert kinds["score"].threshold == 0.5 and kinds["label"].threshold is None  # integer values: exact
    assert primary_output(kinds, outs) == "logits"  # class scores first; graph order among equals


def test_dense_maps_sequences_and_normalized_embeddings():
    model = graphs.make("""
    g (float[N,3,8,8] x, float[2,3,3,3] w, float[4,3,1,1] wu, float[3,5] wl) =>
      (float[N,2,8,8] mask, float[N,4,8,8] raw, float[N,8,5] steps, float[N,3] unit) {
        c = Conv <pads = [1,1,1,1]> (x, w)
        mask = Sigmoid (c)
        raw = Conv (x, wu)
        p = GlobalAveragePool (x)
        f = Flatten (p)
        sq = Mul (f, f)
        ss = ReduceSum <keepdims = 1> (sq, axes)
        n = Sqrt (ss)
        unit = Div (f, n)
        t = Reshape (x, tshape)
        steps = MatMul (t, wl)
    }""".replace("float[3,5] wl)", "float[3,5] wl, int64[1] axes, int64[3] tshape)"), ["w", "wu", "wl"],
        values={"axes": np.array([1], np.int64), "tshape": np.array([-1, 8, 3], np.int64)}, check=False)
    kinds, _ = _kinds(model, {"x": _x(N, 3, 8, 8)})
    assert (kinds["mask"].kind, kinds["mask"].metric, kinds["mask"].threshold) == ("dense_map", "iou", 0.5)
    assert (kinds["raw"].kind, kinds["raw"].metric) == ("dense_map", "channel_relative_error")  # unbounded: no IoU
    assert (kinds["steps"].kind, kinds["steps"].metric) == ("sequence", "step_agreement")  # per-step linear head
    assert kinds["unit"].kind == "embedding" and "unit L2 norm" in kinds["unit"].reason


@pytest.mark.parametrize("member, expected, primary", [
    ("ppocr_cls", {"save_infer_model/scale_0.tmp_1": "class_probabilities"}, "save_infer_model/scale_0.tmp_1"),
    ("silero_vad", {"output": "decision", "stateN": "state"}, "output"),
    ("mnist_cntk", {"Plus214_Output_0": "class_logits"}, "Plus214_Output_0"),
])
def test_real_zoo_models(member, expected, primary):
    folder = zoo_member(member)
    if not (folder / "model.onnx").exists():
        pytest.skip(f"{member} is not available")
    model = load_model(folder / "model.onnx")
    data = load_input_data(folder / "calib.npz").batched(1 if member == "mnist_cntk" else 4)
    feeds, _ = next(data.bind(model_input_specs(model)).batches())
    kinds, outs = _kinds(model, feeds)
    assert {n: k.kind for n, k in kinds.items()} == expected
    assert primary_output(kinds, outs) == primary


def test_overrides_replace_inference_and_are_validated():
    model = multi_head()
    feeds = {"x": _x(N, 8), "state": _x(N, 4, seed=1)}
    kinds, _ = _kinds(model, feeds, {"logits": OutputSpec("embedding"), "value": OutputSpec("decision", 0.0)})
    assert (kinds["logits"].kind, kinds["logits"].source, kinds["logits"].reason) == ("embedding", "override",
                                                                                     "set by the user")
    assert kinds["value"].threshold == 0.0 and kinds["probs"].source == "inferred"
    with pytest.raises(RecipeError, match="does not have"):
        _kinds(model, feeds, {"nope": OutputSpec("embedding")})
    with pytest.raises(RecipeError, match="unknown output kind"):
        OutputSpec("segmentation")
    with pytest.raises(RecipeError, match="threshold"):
        OutputSpec("decision", float("nan"))
    assert parse_output_kind("save/scale_0.tmp_1=dense_map,threshold=0.3") == (
        "save/scale_0.tmp_1", OutputSpec("dense_map", 0.3))
    for bad in ("logits", "=embedding", "x=decision,thresh=1", "x=decision,threshold=high"):
        with pytest.raises(RecipeError):
            parse_output_kind(bad)
    cfg = ValidateConfig(outputs={"a": OutputSpec("state")})
    assert cfg.outputs["a"].kind == "state"
    with pytest.raises(RecipeError, match="kind of output"):
        ValidateConfig(outputs={"a": "state"})  # type: ignore[dict-item]


def test_name_words_split_camel_case_and_separators():
    assert name_words("sentence_embedding") == {"sentence", "embedding"}
    assert name_words("stateN") == {"state", "n"} and name_words("save_infer_model/scale_0.tmp_1") >= {"save", "tmp"}


def _metrics(kind, metric, ref, cand, threshold=None):
    acc = KindAccumulator(KindDecision("o", kind, metric, "test", threshold=threshold))
    half = len(ref) // 2
    acc.update(ref[:half], cand[:half])  # accumulated over two batches
    acc.update(ref[half:], cand[half:])
    return acc.metrics()


def test_kind_metrics_match_hand_computed_values():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((8, 7))
    cand = ref.copy()
    cand[0] = -cand[0]  # one flipped row: its argmax changes, cosine -1
    m = _metrics("class_logits", "top1_agreement", ref, cand)
    assert m["top1_agreement"] == pytest.approx(7 / 8) and m["kl_divergence"] > 0
    p = np.exp(ref[1:]) / np.exp(ref[1:]).sum(1, keepdims=True)
    assert _metrics("class_probabilities", "top1_agreement", p, p)["kl_divergence"] == pytest.approx(0.0, abs=1e-9)
    e = _metrics("embedding", "cosine", ref, cand)
    assert e["cosine"] == pytest.approx(6 / 8) and e["cosine_min"] == pytest.approx(-1.0)
    diff = np.linalg.norm(ref - cand) / np.linalg.norm(ref)
    assert e["relative_error"] == pytest.approx(diff)
    a = np.zeros((2, 1, 4, 4))
    b = np.zeros((2, 1, 4, 4))
    a[:, :, :2, :2], b[:, :, :2, :3] = 0.9, 0.8  # 8 shared pixels of 12 set in either map
    d = _metrics("dense_map", "iou", a, b, threshold=0.5)
    assert d["iou"] == pytest.approx(8 / 12) and d["mean_abs_error"] == pytest.approx(np.abs(a - b).mean())
    s = _metrics("sequence", "step_agreement", rng.random((4, 5, 3)), rng.random((4, 5, 3)))
    assert 0 <= s["step_agreement"] <= 1
    dec = _metrics("decision", "decision_agreement", np.array([0.1, 0.6, 0.7, 0.2]), np.array([0.4, 0.4, 0.9, 0.6]),
                   threshold=0.5)
    assert dec["decision_agreement"] == pytest.approx(0.5)
    assert _metrics("state", "relative_error", ref, ref)["relative_error"] == 0.0


def test_worst_channel_catches_scores_lost_next_to_boxes():
    """A per-anchor detector map [N, 6, A]: 4 box channels in pixels and 2 score channels in [0, 1]; quantizing
    the concatenation with one scale zeroes the scores: the whole map barely moves, its worst channel does."""
    from onnxcompress.validation.kind_metrics import channel_axis

    rng = np.random.default_rng(5)
    ref = np.concatenate([rng.uniform(0, 320, (8, 4, 50)), rng.uniform(0, 0.9, (8, 2, 50))], axis=1)
    cand = ref.copy()
    cand[:, 4:] = 0.0
    m = _metrics("dense_map", "channel_relative_error", ref, cand)
    assert m["relative_error"] < 0.01 and m["channel_relative_error"] == pytest.approx(1.0)
    assert channel_axis((8, 6, 50)) == 1 and channel_axis((1, 3549, 6)) == 2 and channel_axis((2, 3, 64, 64)) == 1
    same = _metrics("dense_map", "channel_relative_error", np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    assert same["channel_relative_error"] == 0.0


def test_floor_checks_in_both_directions():
    floors = FidelityFloors(embedding_cosine=0.99, regression_relative_error=0.05)
    emb = floor_check(KindDecision("e", "embedding", "cosine", ""), {"cosine": 0.35}, floors)
    assert not emb.passed and emb.shortfall == pytest.approx(0.64) and "cosine 0.35 < 0.99" in emb.message
    reg = floor_check(KindDecision("r", "regression", "relative_error", ""), {"relative_error": 0.01}, floors)
    assert reg.passed and reg.shortfall == 0 and "<= 0.05" in reg.message
    nan = floor_check(KindDecision("r", "regression", "relative_error", ""), {"relative_error": math.nan}, floors)
    assert not nan.passed
    with pytest.raises(RecipeError, match="dense_map_iou"):
        FidelityFloors(dense_map_iou=1.5)


def test_validate_reports_kind_metric_and_floor(tmp_path):
    from onnxcompress import api

    model = multi_head()
    x, state = _x(32, 8), _x(32, 4, seed=1)
    labels = ort_outputs(model, {"x": x, "state": state})["logits"].argmax(1)
    noisy = load_model_copy(model)
    report = api.validate(model, noisy, {"x": x, "state": state, "labels": labels},
                          config=ValidateConfig(outputs={"value": OutputSpec("regression")}))
    out = report.to_dict()["validation"]
    assert out["primary_output"] == "logits" and out["floors_passed"] is True
    f = out["fidelity"]["hidden"]
    assert f["kind"] == "embedding" and f["metric"] == "cosine" and f["value"] == pytest.approx(1.0)
    assert f["floor"] == {"metric": "cosine", "value": f["value"], "floor": 0.99, "floor_name": "embedding_cosine",
                          "higher_is_better": True, "passed": True}
    assert out["fidelity"]["value"]["source"] == "override"
    assert "agreement 100.0%" in report.verdict
    md = report.to_markdown()
    assert "| hidden | embedding | made by LayerNormalization: hidden states | cosine |" in md


def test_labels_do_not_score_an_embedding_primary():
    from onnxcompress import api

    model = graphs.make("g (float[N,8] x, float[8,16] w) => (float[N,16] pooled_embedding) "
                        "{ pooled_embedding = MatMul (x, w) }", ["w"])
    x = _x(16, 8)
    report = api.validate(model, model, {"x": x, "labels": np.zeros(16, np.int64)})
    v = report.validation
    assert v.task is None and v.labels is None and any("not scored" in n for n in v.notes)
    assert v.kinds["pooled_embedding"].decision.kind == "embedding"


def load_model_copy(model):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
