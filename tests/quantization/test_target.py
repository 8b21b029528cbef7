"""Host-independent output: the target is named, resolved without looking at the host (except auto, which is
recorded), and written into the recipe, the result and the model's metadata. Inserted names never capture a tensor
the model already has."""

import json

import numpy as np
import pytest

import onnxcompress as oc
from onnxcompress import pipeline
from onnxcompress.quantization import target as T
from support import graphs, qgraphs
from support.common import ort_outputs
from support.stages import quantize_model

VNNI = T.HostFacts("x86_64", frozenset({"avx2", "avx512_vnni"}))
AVX2 = T.HostFacts("x86_64", frozenset({"avx2"}))
ARM = T.HostFacts("aarch64", frozenset({"asimd"}))
DATA = qgraphs.data((3, 16, 16))


def test_resolution_from_pinned_host_facts():
    assert T.resolve_target("auto", VNNI).name == "cpu-vnni" and T.resolve_target("auto", VNNI).weight_bits == 8
    assert T.resolve_target("auto", AVX2).name == "cpu-avx2" and T.resolve_target("auto", AVX2).weight_bits == 7
    assert T.resolve_target("auto", ARM).name == "arm64"
    for name, bits, dtype in (("cpu", 7, "uint8"), ("cpu-avx2", 7, "uint8"), ("cpu-vnni", 8, "uint8"),
                              ("arm64", 8, "uint8"), ("cuda", 8, "int8"), ("tensorrt", 8, "int8")):
        t = T.resolve_target(name, VNNI)
        assert (t.weight_bits, t.activation_dtype) == (bits, dtype), name
        assert T.resolve_target(name, AVX2) == t  # only auto looks at the host
    assert "VNNI yes" in T.resolve_target("auto", VNNI).reason


def _run_on(host, monkeypatch, config):
    monkeypatch.setattr(T, "host_facts", lambda: host)
    return quantize_model(qgraphs.conv_residual(), DATA, config)


def test_same_inputs_same_bytes_on_any_host(monkeypatch):
    a, ra = _run_on(VNNI, monkeypatch, oc.QuantizeConfig())
    b, rb = _run_on(AVX2, monkeypatch, oc.QuantizeConfig())
    assert a.SerializeToString() == b.SerializeToString()
    assert ra["reduce_range"] == {"enabled": True, "reason": ra["reduce_range"]["reason"]}
    meta = json.loads({p.key: p.value for p in a.metadata_props}["onnxcompress.quantization"])
    assert meta == {"activation_dtype": "uint8", "mode": "static", "provider": "cpu", "target": "cpu",
                    "weight_bits": 7}


def test_auto_is_resolved_and_recorded(monkeypatch):
    a, _ = _run_on(VNNI, monkeypatch, oc.QuantizeConfig(target="auto"))
    b, _ = _run_on(AVX2, monkeypatch, oc.QuantizeConfig(target="auto"))
    targets = [json.loads({p.key: p.value for p in m.metadata_props}["onnxcompress.quantization"])["target"]
               for m in (a, b)]
    assert targets == ["cpu-vnni", "cpu-avx2"]
    recipe = pipeline.resolve(oc.Recipe(quantize=oc.QuantizeConfig(target="auto")), oc.data.load_input_data(DATA))
    assert recipe.recipe.quantize.target in ("cpu-vnni", "cpu-avx2", "arm64")
    assert recipe.recipe.quantize.reduce_range is not None and any("auto resolved" in n for n in recipe.notes)
    vnni = T.resolve_target("cpu-vnni")
    pinned, _ = _run_on(AVX2, monkeypatch, oc.QuantizeConfig(target=vnni.name))
    assert pinned.SerializeToString() == a.SerializeToString()  # the effective target reproduces the auto run


def test_cli_dump_recipe_reproduces_an_auto_run(tmp_path, monkeypatch):
    import onnx
    from typer.testing import CliRunner

    from onnxcompress.cli import app
    onnx.save(qgraphs.conv_residual(), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **DATA)
    monkeypatch.setattr(T, "host_facts", lambda: VNNI)
    r = CliRunner().invoke(app, ["quantize", "--placement", "fixed", str(tmp_path / "m.onnx"), "-o",
                                 str(tmp_path / "a.onnx"), "--calib",
                                 str(tmp_path / "c.npz"), "--target", "auto", "--dump-recipe", str(tmp_path / "r.toml")])
    assert r.exit_code == 0, r.output
    assert 'target = "cpu-vnni"' in (tmp_path / "r.toml").read_text()
    monkeypatch.setattr(T, "host_facts", lambda: AVX2)  # another machine, the dumped recipe
    r = CliRunner().invoke(app, ["quantize", "--placement", "fixed", str(tmp_path / "m.onnx"), "-o",
                                 str(tmp_path / "b.onnx"), "--calib",
                                 str(tmp_path / "c.npz"), "--recipe", str(tmp_path / "r.toml")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_inserted_names_never_capture_existing_tensors():
    """An initializer already named like the scale the quantizer would insert (``x_scale``) stays untouched."""
    model = graphs.make("""
    g (float[N,3,16,16] x, float[8,3,3,3] w, float[8] b, float x_scale) => (float[N,8,16,16] y) {
      c = Conv <pads = [1,1,1,1]> (x, w, b)
      y = Mul (c, x_scale)
    }""", ["w", "b"], values={"x_scale": np.array(2.0, np.float32)})
    q, report = quantize_model(model, DATA)
    inits = {t.name: t for t in q.graph.initializer}
    assert float(np.frombuffer(inits["x_scale"].raw_data, np.float32)[0]) == 2.0  # the model's own tensor
    assert any(n.startswith("x_scale_") for n in inits)  # the inserted one got a fresh name
    x = DATA["x"][:8]
    ref, out = ort_outputs(model, {"x": x})["y"], ort_outputs(q, {"x": x})["y"]
    assert np.abs(ref - out).max() < 0.05 * np.abs(ref).max()
    names = [n.name for n in q.graph.node] + [t.name for t in q.graph.initializer]
    assert len(names) == len(set(names))


def test_unknown_target_is_a_recipe_error():
    with pytest.raises(oc.RecipeError, match="unknown target 'cpu-fast'"):
        oc.QuantizeConfig(target="cpu-fast")
