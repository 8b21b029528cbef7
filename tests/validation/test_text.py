"""String and sequence labels: kept, never an error; scored with CER / exact match through a CTC greedy decoder."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress import api
from onnxcompress.cli import app
from onnxcompress.errors import DataError
from onnxcompress.validation.config import ValidateConfig
from onnxcompress.validation.text import CTCGreedy, TextAccumulator, edit_distance, label_sequences
from support import graphs

CHARSET = "abc"  # classes: 0 = blank, 1 = a, 2 = b, 3 = c


def scores_for(paths: list[list[int]], classes: int = 4) -> np.ndarray:
    """One-hot-ish per-timestep scores whose best path is ``paths`` (class per timestep)."""
    out = np.full((len(paths), len(paths[0]), classes), -1.0, np.float32)
    for n, path in enumerate(paths):
        for t, k in enumerate(path):
            out[n, t, k] = 1.0
    return out


def test_edit_distance_and_decoding():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "ab") == 2 and edit_distance((1, 2), (1, 2)) == 0
    s = scores_for([[1, 1, 0, 1, 2, 2, 0], [3, 0, 3, 3, 0, 0, 0]])
    assert CTCGreedy(charset=CHARSET).decode(s) == ["aab", "cc"]  # repeats merged, blanks dropped
    assert CTCGreedy().decode(s) == [(1, 1, 2), (3, 3)]
    assert CTCGreedy(blank=-1, charset="abc").decode(scores_for([[0, 3, 1]])) == ["ab"]  # blank = last class
    assert CTCGreedy(time_major=True, charset=CHARSET).decode(s.transpose(1, 0, 2)) == ["aab", "cc"]
    with pytest.raises(DataError, match="charset has 2 characters"):
        CTCGreedy(charset="ab").decode(s)


def test_accumulator_cer_and_exact_match():
    acc = TextAccumulator(CTCGreedy(charset=CHARSET))
    acc.update(scores_for([[1, 0, 2], [3, 3, 3]]), np.array(["ab", "cab"]))
    assert acc.result(("cer", "exact_match")) == {"cer": pytest.approx(2 / 5), "exact_match": 0.5}
    seq = TextAccumulator(CTCGreedy())
    seq.update(scores_for([[1, 0, 2]]), np.array([[1, 2, -1, -1]]))  # integer sequences padded with -1
    assert seq.result(("cer",)) == {"cer": 0.0} and label_sequences(np.array([[1, -1]])) == [(1,)]


@pytest.fixture(scope="module")
def ocr_case(tmp_path_factory):
    """A 'recognizer' whose output is its input scores (reference), and one that boosts class c (candidate)."""
    d = tmp_path_factory.mktemp("ocr")
    ref = graphs.make("""
    g (float[N,7,4] x) => (float[N,7,4] y) {
      y = Identity (x)
    }""", [])
    cand = graphs.make("""
    g (float[N,7,4] x, float[4] bias) => (float[N,7,4] y) {
      y = Add (x, bias)
    }""", ["bias"], values={"bias": np.array([0, 0, 0, 2.5], np.float32)})
    onnx.save(ref, d / "ref.onnx")
    onnx.save(cand, d / "cand.onnx")
    x = scores_for([[1, 1, 0, 2, 0, 0, 0], [3, 0, 1, 0, 2, 0, 0], [2, 2, 2, 0, 0, 0, 0]])
    np.savez(d / "eval.npz", x=x, labels=np.array(["ab", "cab", "b"]))  # the reference reads all three right
    (d / "charset.txt").write_text("a\nb\nc\n")
    return d


def test_string_labels_are_kept_without_a_decoder(ocr_case):
    report = api.validate(ocr_case / "ref.onnx", ocr_case / "cand.onnx", ocr_case / "eval.npz")
    v = report.validation
    assert v.task is None and v.extra_keys == ("labels",)
    assert any("strings, not class indices" in n and "--decoder ctc_greedy" in n for n in v.notes)


def test_cer_and_exact_match_with_a_ctc_decoder(ocr_case):
    config = ValidateConfig(decoder="ctc_greedy", charset_file=str(ocr_case / "charset.txt"))
    task = api.validate(ocr_case / "ref.onnx", ocr_case / "cand.onnx", ocr_case / "eval.npz", config=config
                        ).validation.task
    assert task.reference == {"cer": 0.0, "exact_match": 1.0}
    # the candidate's bias on class c turns every timestep into c: "c", "c", "c" vs "ab", "cab", "b"
    assert task.candidate["exact_match"] == 0.0 and task.candidate["cer"] == pytest.approx((2 + 2 + 1) / 6)


def test_cli_gate_on_exact_match(ocr_case, tmp_path):
    policy = tmp_path / "gate.toml"
    policy.write_text('[gate]\naccuracy_metric = "cer"\nmax_accuracy_drop = 0.1\n'
                      '[validate]\ndecoder = "ctc_greedy"\ncharset = "abc"\n')
    r = CliRunner().invoke(app, ["gate", str(ocr_case / "ref.onnx"), str(ocr_case / "cand.onnx"), "--policy",
                                 str(policy), "--data", str(ocr_case / "eval.npz"), "--report-dir", str(tmp_path / "g"),
                                 "--json"])
    assert r.exit_code == 1, r.output  # the CER rose by 0.83 > 0.1: a lower-is-better metric's drop is its rise
    report = json.loads(r.stdout)
    assert report["gate"]["criteria"][0]["value"] == pytest.approx(5 / 6)


def test_optimize_keeps_string_labels_instead_of_failing(tmp_path):
    """The OCR case that used to exit 3 ("labels must be integers"): optimize runs, validates and notes the labels."""
    rng = np.random.default_rng(0)
    model = graphs.make("""
    g (float[N,7,4] x, float[4,4] w) => (float[N,7,4] y) {
      y = MatMul (x, w)
    }""", ["w"], values={"w": (np.eye(4) + 0.05 * rng.standard_normal((4, 4))).astype(np.float32)})
    onnx.save(model, tmp_path / "rec.onnx")
    x = rng.standard_normal((24, 7, 4)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, labels=np.array(["ab", "c", "abc"] * 8))
    r = CliRunner().invoke(app, ["optimize", str(tmp_path / "rec.onnx"), "-o", str(tmp_path / "o.onnx"), "--calib",
                                 str(tmp_path / "eval.npz"), "--no-profile", "--json"])
    assert r.exit_code in (0, 1) and "labels must be integers" not in r.output, r.output
    report = json.loads(r.stdout)
    assert report["validation"]["extra_keys"] == ["labels"]
    assert any("strings, not class indices" in n for n in report["validation"]["notes"])
