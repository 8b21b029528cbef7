"""onnxruntime CalibrationDataReaders, data loader scripts and explicit random data, through the API and the CLI."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress import api
from onnxcompress.cli import app
from onnxcompress.data import load_input_data, model_input_specs
from onnxcompress.data.config import DataConfig
from onnxcompress.data.readers import from_reader
from onnxcompress.data.scripts import split_spec
from onnxcompress.errors import DataError
from onnxcompress.quantization.config import QuantizeConfig
from support import graphs

runner = CliRunner()


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


class Reader:
    """An onnxruntime-style CalibrationDataReader: get_next() until None (one-shot)."""

    made = 0

    def __init__(self):
        Reader.made += 1
        self.items = iter([{"x": _x(4, i)} for i in range(5)])

    def get_next(self):
        return next(self.items, None)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    onnx.save(graphs.conv_bn_head(), d / "m.onnx")
    np.savez(d / "calib.npz", x=np.concatenate([_x(4, i) for i in range(5)]))
    return d / "m.onnx"


def test_reader_instance_is_cached_and_read_twice():
    data = from_reader(Reader())
    assert "cached in memory" in data.source
    first, second = list(data), list(data)
    assert len(first) == len(second) == 5 and len(data) == 20
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["x"], b["x"])
    # a partly read reader is continued, not restarted
    partial = from_reader(Reader())
    next(iter(partial))
    assert sum(len(b["x"]) for b in partial) == 20


def test_reader_factory_is_recreated_per_pass():
    data = load_input_data(Reader)  # the class: a factory
    assert len([b for b in data]) == 5
    made = Reader.made
    assert len([b for b in data]) == 5 and Reader.made == made + 1  # every pass reads a new reader
    assert "re-created" in data.source


def test_reader_cache_is_bounded():
    with pytest.raises(DataError, match="cached in memory") as e:
        list(from_reader(Reader(), max_bytes=1000))
    assert "class" in e.value.hint or "function" in e.value.hint


def test_reader_quantizes_like_the_same_arrays(model_file):
    """A CalibrationDataReader gives the byte-identical quantized model as the same batches in a .npz."""
    by_reader, _ = api.quantize(model_file, Reader(), QuantizeConfig())
    by_npz, _ = api.quantize(model_file, model_file.parent / "calib.npz", QuantizeConfig())
    assert by_reader.SerializeToString() == by_npz.SerializeToString()


SCRIPT = """
import numpy as np

def load_data():
    rng = np.random.default_rng(0)
    for _ in range(3):
        yield {"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32)}

def with_labels():
    x = np.random.default_rng(1).standard_normal((6, 3, 8, 8)).astype(np.float32)
    return [{"x": x, "labels": np.arange(6) % 4}]

def broken():
    data = [{"x": 1}]
    return data[5]
"""


def test_loader_script_functions_and_reiteration(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(SCRIPT)
    data = load_input_data(str(script))
    a, b = [x["x"] for x in data], [x["x"] for x in data]
    assert len(a) == 3 and all(np.array_equal(p, q) for p, q in zip(a, b))  # a generator, created anew per pass
    labelled = load_input_data(f"{script}:with_labels")
    assert sorted(next(iter(labelled))) == ["labels", "x"] and labelled.source.endswith(":with_labels")
    assert split_spec("C:\\data\\l.py") == (split_spec("C:\\data\\l.py")[0], "load_data")


def test_loader_script_errors_name_the_script_and_line(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(SCRIPT)
    with pytest.raises(DataError, match=r"IndexError.*loader.py, line 15"):
        list(load_input_data(f"{script}:broken"))
    with pytest.raises(DataError, match="has no function 'nope'") as e:
        load_input_data(f"{script}:nope")
    assert "with_labels" in e.value.hint
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\n\nraise RuntimeError('no data here')\n")
    with pytest.raises(DataError, match=r"while loading: RuntimeError: no data here .*bad.py, line 3"):
        load_input_data(str(bad))


def test_cli_loader_script_option(model_file, tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(SCRIPT)
    out = tmp_path / "q.onnx"
    r = runner.invoke(app, ["quantize", str(model_file), "-o", str(out), "--data-loader-script", str(script),
                            "--placement", "fixed", "--json"])
    assert r.exit_code == 0, r.output
    assert out.exists() and json.loads(r.stdout)["coverage"] > 0
    r = runner.invoke(app, ["quantize", str(model_file), "-o", str(out), "--calib", str(model_file.parent / "calib.npz"),
                            "--data-loader-script", str(script)])
    assert r.exit_code == 3 and "not both" in r.output


def test_random_data_is_explicit_seeded_and_reported(model_file, tmp_path):
    specs = model_input_specs(onnx.load(model_file))
    a = next(iter(load_input_data("random:8", DataConfig(seed=3), specs)))["x"]
    b = next(iter(load_input_data("random:8", DataConfig(seed=3), specs)))["x"]
    assert a.shape == (8, 3, 8, 8) and np.array_equal(a, b)
    with pytest.raises(DataError, match="random"):
        load_input_data("random:x", None, specs)
    out = tmp_path / "r.onnx"
    args = ["quantize", str(model_file), "-o", str(out), "--calib", "random", "--seed", "3", "--placement", "fixed",
            "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert any("random(seed=3, samples=64)" in w and "as requested" in w for w in info["warnings"])
    first = out.read_bytes()
    assert runner.invoke(app, args).exit_code == 0 and out.read_bytes() == first  # same seed, same model


def test_random_data_takes_dynamic_dims_from_flags(tmp_path):
    model = graphs.make("""
    g (float[B,S,4] x) => (float[B,S,4] y) {
      y = Relu (x)
    }""", [])
    specs = model_input_specs(model)
    batch = next(iter(load_input_data("random:2", DataConfig(dims={"S": 5}), specs)))
    assert batch["x"].shape == (2, 5, 4)
    onnx.save(model, tmp_path / "seq.onnx")
    r = runner.invoke(app, ["profile", str(tmp_path / "seq.onnx"), "--data", "random:4", "--dim", "S=7",
                            "--iterations", "2", "--warmup", "0", "--no-op-profile", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["data"]["profile"]["source"].startswith("random(seed=0, samples=4)")
