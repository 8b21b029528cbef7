"""Bad policies, recipes, weights, records, models and data, tried as a hostile user would: each is a user error
(exit 3) with one message and a hint, no traceback, nothing written, inputs unchanged; ``--json`` prints exactly
one JSON document; names from a model never reach the terminal or junit.xml raw; anything named that matches
nothing is an error listing what exists.
"""

from __future__ import annotations

import io
import json
import struct
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxcompress as oc
from onnxcompress.errors import RecipeError
from support import graphs
from support.clean import invoke, listing, one_json_document, run_clean_failure
from support.common import ort_outputs


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile_in")
    model = graphs.conv_bn_head()
    onnx.save(model, d / "m.onnx")
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.savez(d / "good.npz", x=x, labels=ort_outputs(model, {"x": x})["y"].argmax(1).astype(np.int64))
    (d / "gate.toml").write_text("[gate]\nmin_cosine = 0.9\n")
    return d


def _inputs(ws: Path) -> list[Path]:
    return [ws / "m.onnx", ws / "good.npz", ws / "gate.toml"]


# --- gate policies ----------------------------------------------------------------------------------------------
POLICIES = {
    "empty": ("[gate]\n", "checks nothing"),
    "only_metric": ('[gate]\naccuracy_metric = "top5"\n', "checks nothing"),
    "unknown_metric": ('[gate]\naccuracy_metric = "top7"\nmax_accuracy_drop = 0.01\n',
                       "unknown accuracy_metric 'top7'"),
    "nan": ("[gate]\nmin_sqnr_db = nan\n", "gate.min_sqnr_db must be a number, got nan"),
    "nan_fraction": ("[gate]\nmin_top1_agreement = nan\n", "must be a number, got nan"),
    "bool": ("[gate]\nmin_cosine = true\n", "gate.min_cosine must be a number, got True"),
    "string": ('[gate]\nmax_size_mb = "big"\n', "gate.max_size_mb must be a number"),
    "tolerances_list": ("[gate]\ntolerances = [1, 2]\n", "gate.tolerances must be a table of tables"),
    "not_a_table": ("gate = 3\n", "[gate] must be a table"),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_bad_gate_policies_are_policy_errors(name, ws, tmp_path):
    text, match = POLICIES[name]
    (tmp_path / "p.toml").write_text(text)
    m = ws / "m.onnx"
    out = run_clean_failure(["gate", m, m, "--policy", tmp_path / "p.toml", "--data", ws / "good.npz",
                             "--report-dir", tmp_path / "rep"], tmp_path, [*_inputs(ws), tmp_path / "p.toml"],
                            match=match)
    if name == "unknown_metric":
        assert "top1, top5, f1, auc" in out


@pytest.mark.parametrize("gate", ["[gate]\n", "gate = true\n", '[gate]\naccuracy_metric = "nope"\nmin_cosine = 0.5\n'])
def test_a_recipe_whose_gate_checks_nothing_or_names_no_metric_is_an_error(gate, ws, tmp_path):
    (tmp_path / "r.toml").write_text(gate)
    run_clean_failure(["optimize", ws / "m.onnx", "-o", tmp_path / "o.onnx", "--recipe", tmp_path / "r.toml",
                       "--no-profile"], tmp_path, [*_inputs(ws), tmp_path / "r.toml"])


def test_user_metrics_are_accuracy_metrics_where_the_api_knows_them(ws):
    m, data = ws / "m.onnx", ws / "good.npz"
    mine = {"mine": lambda outputs, extras: float(outputs["y"].mean() * 0 + 1)}
    report = oc.gate(m, m, data, oc.GatePolicy(accuracy_metric="mine", max_accuracy_drop=0.0), user_metrics=mine)
    assert report.passed and report.validation.task.candidate["mine"] == 1.0
    with pytest.raises(RecipeError, match="unknown accuracy_metric 'nope'") as e:
        oc.gate(m, m, data, oc.GatePolicy(accuracy_metric="nope", max_accuracy_drop=0.0), user_metrics=mine)
    assert "mine" in e.value.hint


# --- recipe values of the wrong type ----------------------------------------------------------------------------
RECIPES = [
    ("[quantize]\nnum_bins = \"lots\"\n", "quantize.num_bins must be an integer, got 'lots'"),
    ("[validate]\nproviders = 1\n", "validate.providers must be a string, got 1"),
    ("[quantize]\ncalibration_samples = 1.5\n", "quantize.calibration_samples must be an integer, got 1.5"),
    ("[validate]\ntolerances = [1, 2]\n", "validate.tolerances must be a table of tables, got [1, 2]"),
    ("[prune]\nratio = true\n", "prune.ratio must be a number, got True"),
    ("[prune]\nexclude = [1]\n", "prune.exclude must be a list of strings"),
    ("[prune]\nmin_channels = 2.0\n", "prune.min_channels must be an integer"),
    ("[validate.profile]\nbatch_sizes = [\"a\"]\n", "validate.profile.batch_sizes must be a list of integers"),
    ("[quantize.overrides.x]\nrange = [0.0]\n", "quantize.overrides.x.range must be a list of 2 numbers"),
    ("[limits]\nmax_data_mb = \"x\"\n", "limits.max_data_mb must be a number"),
    ("[tune]\nprecisions = \"float\"\n", "tune.precisions must be a list of strings"),
    ("[preprocess]\nfold_constants = 1\n", "preprocess.fold_constants must be true or false, got 1"),
    ("seed = 1.5\n", "seed must be an integer"),
    ("[distill]\nsamples = nan\n", "distill.samples must be an integer, got nan"),
]


@pytest.mark.parametrize("case", range(len(RECIPES)))
def test_recipe_values_of_the_wrong_type_name_the_key_and_the_type(case, ws, tmp_path):
    text, match = RECIPES[case]
    (tmp_path / "r.toml").write_text(text)
    out = run_clean_failure(["optimize", ws / "m.onnx", "-o", tmp_path / "o.onnx", "--recipe", tmp_path / "r.toml",
                             "--no-profile"], tmp_path, [*_inputs(ws), tmp_path / "r.toml"], match=match)
    assert "hint:" in out


# --- weights, records, models ------------------------------------------------------------------------------------
def _safetensors(header: object, body: bytes = b"", length: int | None = None) -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(head) if length is None else length) + head + body


SAFETENSORS = {
    "short": b"\x01\x02",
    "length_past_end": _safetensors({}, length=1 << 40),
    "not_json": _safetensors(b"{not json"),
    "not_utf8": _safetensors(b"\xff\xfe\x00"),
    "list_header": _safetensors([1, 2, 3]),
    "spec_not_object": _safetensors({"w1": 3}),
    "missing_keys": _safetensors({"w1": {"dtype": "F32"}}),
    "bad_dtype": _safetensors({"w1": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "bad_shape": _safetensors({"w1": {"dtype": "F32", "shape": "1x2", "data_offsets": [0, 8]}}, b"\0" * 8),
    "negative_shape": _safetensors({"w1": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "offsets_scalar": _safetensors({"w1": {"dtype": "F32", "shape": [1], "data_offsets": 5}}, b"\0" * 4),
    "offsets_past_end": _safetensors({"w1": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}}, b"\0" * 4),
    "size_mismatch": _safetensors({"w1": {"dtype": "F32", "shape": [1, 3], "data_offsets": [0, 4]}}, b"\0" * 4),
    "deep_json": _safetensors(b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("name", list(SAFETENSORS))
def test_corrupt_safetensors_headers(name, ws, tmp_path):
    (tmp_path / "w.safetensors").write_bytes(SAFETENSORS[name])
    run_clean_failure(["distill", "attach", ws / "m.onnx", tmp_path / "w.safetensors", "-o", tmp_path / "o.onnx"],
                      tmp_path, [*_inputs(ws), tmp_path / "w.safetensors"], match="cannot read weights from")


KEPT = {
    "not_ints": ({"kept": [{"tensor": "c1", "kept": ["a", 1]}]}, "must be a list of non-negative integers"),
    "negative": ({"kept": [{"tensor": "c1", "kept": [-1]}]}, "non-negative integers"),
    "tensor_not_str": ({"kept": [{"tensor": 1, "kept": [0]}]}, "kept-channel record 0 is"),
    "record_not_object": ({"kept": [5]}, "kept-channel record 0 is 5"),
    "bad_axis": ({"kept": [{"tensor": "c1", "kept": [0], "axis": "x"}]}, "axis 'x'"),
    "duplicate": ({"c1": [0, 0]}, "list an index twice"),
    "no_such_tensor": ({"nope": [0, 1]}, "match no tensor of the student"),
    "out_of_range": ({"c1": [0, 99]}, "out of range"),
    "stages_not_object": ({"stages": [1], "kept": [{"tensor": "nope", "kept": [0]}]}, "match no tensor"),
    "not_a_record": ({"x": 1}, "has no kept-channel record"),
}


@pytest.mark.parametrize("name", list(KEPT))
def test_corrupt_or_unmatched_kept_channel_records(name, ws, tmp_path):
    record, match = KEPT[name]
    (tmp_path / "k.json").write_text(json.dumps(record))
    out = run_clean_failure(["distill", ws / "m.onnx", ws / "m.onnx", "--calib", ws / "good.npz",
                             "-o", tmp_path / "o.onnx", "--kept", tmp_path / "k.json"],
                            tmp_path, [*_inputs(ws), tmp_path / "k.json"], match=match)
    if name == "no_such_tensor":
        assert "c1" in out and "gm" in out  # the hint lists the student's tensors


@pytest.mark.parametrize("location", ["/etc/hostname", "../outside.bin", "", "missing.bin", "folder"])
@pytest.mark.parametrize("cmd", ["inspect", "convert"])
def test_external_data_paths_onnx_refuses(cmd, location, ws, tmp_path):
    model = onnx.load(str(ws / "m.onnx"))
    onnx.save(model, tmp_path / "e.onnx", save_as_external_data=True, location="e.bin", size_threshold=0)
    (tmp_path / "folder").mkdir()
    forged = onnx.load(str(tmp_path / "e.onnx"), load_external_data=False)
    for t in forged.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(forged, tmp_path / "e.onnx")
    args = ["inspect", tmp_path / "e.onnx"] if cmd == "inspect" else ["convert", tmp_path / "e.onnx", "-o",
                                                                     tmp_path / "o.onnx"]
    run_clean_failure(args, tmp_path, [tmp_path / "e.onnx", tmp_path / "e.bin"], match="external data")


def test_a_model_output_that_is_also_a_graph_input_is_supported(ws, tmp_path):
    model = graphs.conv_bn_head()
    model.graph.output.append(onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8]))
    onnx.save(model, tmp_path / "mx.onnx")
    for args in (["quantize", tmp_path / "mx.onnx", "-o", tmp_path / "q.onnx", "--calib", ws / "good.npz",
                  "--placement", "fixed"],
                 ["sensitivity", tmp_path / "mx.onnx", "--calib", ws / "good.npz", "--top-k", "1"],
                 ["optimize", tmp_path / "mx.onnx", "-o", tmp_path / "o.onnx", "--calib", ws / "good.npz",
                  "--no-profile"]):
        r = invoke(args)
        assert r.exit_code == 0, r.output
    x = np.load(ws / "good.npz")["x"]
    out = ort_outputs(onnx.load(str(tmp_path / "q.onnx")), {"x": x})
    np.testing.assert_array_equal(out["x"], x)  # the pass-through output is the input, untouched by Q/DQ


def test_special_files_as_inputs_are_refused(ws, tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.npz")
    os.mkfifo(tmp_path / "fifo.onnx")
    run_clean_failure(["validate", ws / "m.onnx", ws / "m.onnx", "--data", tmp_path / "fifo.npz"], tmp_path,
                      _inputs(ws), match="not a regular file")
    run_clean_failure(["inspect", tmp_path / "fifo.onnx"], tmp_path, _inputs(ws), match="not a regular file")


# --- profile -----------------------------------------------------------------------------------------------------
def test_profile_vs_a_model_with_other_inputs(ws, tmp_path):
    other = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]> g (float[N,4] x) => (float[N,4] y) '
                                    "{ y = Relu(x) }")
    onnx.save(other, tmp_path / "other.onnx")
    run_clean_failure(["profile", ws / "m.onnx", "--vs", tmp_path / "other.onnx", "--iterations", "1"], tmp_path,
                      [*_inputs(ws), tmp_path / "other.onnx"], match="the models take different inputs")


@pytest.mark.parametrize("extra, match", [([], "more than the limit of 1,000,000 samples"),
                                          (["--max-data-samples", "200000000"], "more than the data limit of 2048 MB")])
def test_profile_batch_sizes_are_capped(extra, match, ws, tmp_path):
    out = run_clean_failure(["profile", ws / "m.onnx", "--batch", "100000000", *extra], tmp_path, _inputs(ws),
                            match=match)
    assert "--batch" in out or "--max-data-mb" in out


# --- data limits -------------------------------------------------------------------------------------------------
def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _lying_npz(path: Path) -> Path:
    """~200 bytes whose one array declares 10^12 float32 elements."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", _npy_header((10**12,)) + b"\0" * 16)
    return path


def _zip_bomb(path: Path, megabytes: int) -> Path:
    """A deflated .npz whose one array (honest header) decompresses to ``megabytes`` MB of zeros."""
    n = megabytes * 10**6 // (3 * 8 * 8 * 4)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("x.npy", "w", force_zip64=True) as f:
        f.write(_npy_header((n, 3, 8, 8)))
        chunk, left = bytes(1 << 20), n * 3 * 8 * 8 * 4
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return path


def test_a_lying_npy_header_is_a_data_error_at_once(ws, tmp_path):
    bad = _lying_npz(tmp_path / "lie.npz")
    assert bad.stat().st_size < 400
    start = time.perf_counter()
    run_clean_failure(["validate", ws / "m.onnx", ws / "m.onnx", "--data", bad], tmp_path, _inputs(ws),
                      match="declares float32[1000000000000]")
    assert time.perf_counter() - start < 5


def test_a_zip_bomb_is_refused_from_its_headers(ws, tmp_path):
    bomb = _zip_bomb(tmp_path / "bomb.npz", 64)
    assert bomb.stat().st_size < 1_000_000  # 64 MB of data in well under 1 MB
    start = time.perf_counter()
    out = run_clean_failure(["validate", ws / "m.onnx", ws / "m.onnx", "--data", bomb, "--max-data-mb", "16"],
                            tmp_path, _inputs(ws), match="would need 64.0 MB in memory, more than the data limit of 16 MB")
    assert "--max-data-mb" in out and time.perf_counter() - start < 5
    run_clean_failure(["validate", ws / "m.onnx", ws / "m.onnx", "--data", bomb, "--max-data-samples", "1000"],
                      tmp_path, _inputs(ws), match="holds 83,333 samples, more than the limit of 1,000")


def test_the_default_sample_cap_and_its_override(ws, tmp_path):
    np.savez(tmp_path / "many.npz", x=np.zeros((1_000_001,), np.uint8))
    m = ws / "m.onnx"
    run_clean_failure(["validate", m, m, "--data", tmp_path / "many.npz"], tmp_path, _inputs(ws),
                      match="more than the limit of 1,000,000")
    run_clean_failure(["validate", m, m, "--data", ws / "good.npz", "--max-data-samples", "8"], tmp_path,
                      _inputs(ws), match="holds 16 samples")
    assert invoke(["validate", m, m, "--data", ws / "good.npz", "--max-data-samples", "16"]).exit_code == 0
    (tmp_path / "r.toml").write_text("[limits]\nmax_samples = 8\n")
    run_clean_failure(["optimize", m, "-o", tmp_path / "o.onnx", "--calib", ws / "good.npz", "--recipe",
                       tmp_path / "r.toml", "--no-profile"], tmp_path, [*_inputs(ws), tmp_path / "r.toml"],
                      match="holds 16 samples")


def test_limits_cover_chunk_folders_npy_folders_and_weights(ws, tmp_path):
    m = ws / "m.onnx"
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    x = np.load(ws / "good.npz")["x"]
    for i in range(3):
        np.savez(chunks / f"{i}.npz", x=x)
    run_clean_failure(["validate", m, m, "--data", chunks, "--max-data-samples", "40"], tmp_path, _inputs(ws),
                      match="holds 48 samples")
    npy = tmp_path / "npy"
    npy.mkdir()
    (npy / "x.npy").write_bytes(_npy_header((10**12, 3, 8, 8)) + b"\0" * 64)
    run_clean_failure(["validate", m, m, "--data", npy], tmp_path, _inputs(ws), match="declares float32")
    run_clean_failure(["distill", "attach", m, _lying_npz(tmp_path / "w.npz"), "-o", tmp_path / "o.onnx"], tmp_path,
                      _inputs(ws), match="declares float32")


# --- --json -------------------------------------------------------------------------------------------------------
def _json_commands(ws: Path, t: Path) -> dict[str, list]:
    m, g = ws / "m.onnx", ws / "good.npz"
    return {
        "inspect": ["inspect", m], "convert": ["convert", m, "-o", t / "c.onnx"],
        "prune": ["prune", m, "-o", t / "p.onnx"],
        "distill": ["distill", m, m, "--calib", g, "-o", t / "d.onnx", "--samples", "8"],
        "export-weights": ["distill", "export-weights", m, "-o", t / "w.npz"],
        "attach": ["distill", "attach", m, m, "-o", t / "a.onnx"],
        "quantize": ["quantize", m, "-o", t / "q.onnx", "--calib", g, "--exclude", "Gemm", "--placement", "fixed"],
        "sensitivity": ["sensitivity", m, "--calib", g, "--top-k", "1"],
        "validate": ["validate", m, m, "--data", g],
        "profile": ["profile", m, "--iterations", "2", "--warmup", "0", "--no-op-profile"],
        "gate": ["gate", m, m, "--policy", ws / "gate.toml", "--data", g, "--report-dir", t / "rep"],
        "optimize": ["optimize", m, "-o", t / "o.onnx", "--no-profile"],
        "failed gate": ["optimize", m, "-o", t / "f.onnx", "--calib", g, "--no-profile", "--recipe", t / "strict.toml"],
        "user error": ["validate", m, m, "--data", t / "missing.npz"],
    }


@pytest.mark.parametrize("cmd", ["inspect", "convert", "prune", "distill", "export-weights", "attach", "quantize",
                                 "sensitivity", "validate", "profile", "gate", "optimize", "failed gate", "user error"])
def test_json_prints_exactly_one_document_on_stdout(cmd, ws, tmp_path):
    (tmp_path / "strict.toml").write_text("[gate]\nmin_sqnr_db = 1000\n")
    r = invoke([*_json_commands(ws, tmp_path)[cmd], "--json"])
    assert r.exit_code == {"failed gate": 1, "user error": 3}.get(cmd, 0), r.output
    doc = one_json_document(r.stdout)
    assert isinstance(doc, dict) and doc
    if cmd == "user error":  # the error is a document too (and still one line on stderr)
        assert doc["error"]["exit_code"] == 3 and doc["error"]["type"] == "DataError" and doc["error"]["hint"]
        assert r.stderr.startswith("error: data path not found")


# --- control characters in names ----------------------------------------------------------------------------------
NASTY = "y\x1b[2J\x1b]0;pwned\x07\r\x00z"


@pytest.fixture(scope="module")
def nasty_model(ws) -> Path:
    model = graphs.conv_bn_head()
    for i, node in enumerate(model.graph.node):
        node.output[:] = [NASTY if o == "y" else o for o in node.output]
        node.name = f"{NASTY}{node.op_type}{i}"
    model.graph.output[0].name = NASTY
    onnx.save(model, ws / "nasty.onnx")
    return ws / "nasty.onnx"


def _no_raw_controls(text: str) -> bool:
    return not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text)


def test_control_characters_in_names_are_escaped_on_the_terminal(nasty_model, ws, tmp_path):
    g = ws / "good.npz"
    for args in (["inspect", nasty_model], ["validate", nasty_model, nasty_model, "--data", g],
                 ["quantize", nasty_model, "-o", tmp_path / "q.onnx", "--calib", g, "--exclude", "Gemm",
                  "--placement", "fixed"]):
        r = invoke(args)
        assert r.exit_code == 0, r.output
        assert _no_raw_controls(r.output), repr(r.output)
        assert "\\x1b[2J" in r.output
    r = invoke(["validate", nasty_model, nasty_model, "--data", g, "--output", "\x1b[31mnope"])
    assert r.exit_code == 3 and _no_raw_controls(r.output) and "\\x1b[31mnope" in r.output


def test_control_characters_in_names_keep_junit_and_json_valid(nasty_model, ws, tmp_path):
    (tmp_path / "p.toml").write_text('[gate]\nmin_sqnr_db = 1000\n[gate.tolerances.""]\natol = 0.0\nrtol = 0.0\n')
    r = invoke(["gate", nasty_model, nasty_model, "--policy", tmp_path / "p.toml", "--data", ws / "good.npz",
                "--report-dir", tmp_path / "rep", "--json"])
    assert r.exit_code == 0, r.output
    assert one_json_document(r.stdout)["validation"]["primary_output"] == NASTY
    junit = (tmp_path / "rep" / "junit.xml").read_text()
    assert _no_raw_controls(junit)
    cases = ET.fromstring(junit).iter("testcase")
    assert any("\\x1b[2J" in (c.get("name") or "") for c in cases)
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["validation"]["primary_output"] == NASTY
    assert _no_raw_controls((tmp_path / "rep" / "report.md").read_text())


# --- names that match nothing -------------------------------------------------------------------------------------
NAMES = [
    (["--tolerance", "nope:atol=1"], "tolerance(s) for ['nope']: no such output (the model's outputs are ['y'])"),
    (["--labels", "nope"], "labels key 'nope' is not in the evaluation data (its other keys: ['labels'])"),
    (["--output", "nope"], "output 'nope' is not an output of the model (outputs: ['y'])"),
]


@pytest.mark.parametrize("case", range(len(NAMES)))
def test_names_that_match_nothing_list_what_exists(case, ws, tmp_path):
    extra, match = NAMES[case]
    m = ws / "m.onnx"
    run_clean_failure(["validate", m, m, "--data", ws / "good.npz", *extra, "--report-dir", tmp_path / "rep"],
                      tmp_path, _inputs(ws), match=match)


def test_policy_tolerances_and_mapping_entries_that_match_nothing(ws, tmp_path):
    m = ws / "m.onnx"
    (tmp_path / "p.toml").write_text("[gate.tolerances.nope]\natol = 1.0\n")
    run_clean_failure(["gate", m, m, "--policy", tmp_path / "p.toml", "--data", ws / "good.npz",
                       "--report-dir", tmp_path / "rep"], tmp_path, [*_inputs(ws), tmp_path / "p.toml"],
                      match="no such output")
    (tmp_path / "map.json").write_text(json.dumps({"nope": "w1"}))
    run_clean_failure(["distill", "attach", m, m, "--mapping", tmp_path / "map.json", "-o", tmp_path / "o.onnx"],
                      tmp_path, [*_inputs(ws), tmp_path / "map.json"], match="nope")
    assert listing(tmp_path) == ["map.json", "p.toml"]
