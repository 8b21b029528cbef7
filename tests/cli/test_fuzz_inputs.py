"""Randomized robustness (hypothesis, derandomized: the same examples on every run): damaged model bytes, odd npz
contents and recipe values of every type for every field of every config. Whatever the input, a command ends
with exit 0, 1, 2 or 3 and never a traceback; a config is built or refused with a RecipeError, nothing else.

The example counts are bounded so the whole module runs in a few seconds to a few tens of seconds.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from onnxcompress.config import config_from_dict
from onnxcompress.data.limits import DataLimits
from onnxcompress.distillation.config import DistillConfig
from onnxcompress.errors import RecipeError
from onnxcompress.passes.preprocess import PreprocessConfig
from onnxcompress.pruning.config import PruneConfig
from onnxcompress.quantization.config import QuantizeConfig, TensorOverride
from onnxcompress.recipe import Recipe
from onnxcompress.tuning.config import TuneConfig
from onnxcompress.validation.config import ProfileConfig, Tolerance, ValidateConfig
from onnxcompress.validation.gate import GatePolicy
from support import graphs
from support.clean import invoke
from support.common import ort_outputs


def _settings(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    model = graphs.conv_bn_head()
    onnx.save(model, d / "m.onnx")
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    np.savez(d / "good.npz", x=x, labels=ort_outputs(model, {"x": x})["y"].argmax(1).astype(np.int64))
    return d


def _assert_clean(result, allowed=(0, 1, 2, 3)) -> None:
    out = result.output
    assert result.exit_code in allowed, f"exit {result.exit_code}:\n{out}"
    assert "Traceback" not in out and "internal error" not in out, out


# --- model bytes --------------------------------------------------------------------------------------------------
MODEL = graphs.conv_bn_head().SerializeToString()


OP_TYPES = ["Relu", "Conv", "Gemm", "Add", "MatMul", "Identity", "BatchNormalization", "Flatten", "Nope"]


def _mutate_proto(draw, kind: str) -> bytes:
    """A model that still parses but is odd: weights, attributes, shapes, opset or op types changed."""
    model = onnx.ModelProto()
    model.ParseFromString(MODEL)
    g = model.graph
    if kind == "weights":
        t = draw(st.sampled_from(list(g.initializer)))
        values = onnx.numpy_helper.to_array(t).copy()
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -1e38, 0.0]))
        t.CopyFrom(onnx.numpy_helper.from_array(values, t.name))
    elif kind == "attribute":
        attrs = [a for n in g.node for a in n.attribute if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        a = draw(st.sampled_from(attrs))
        new = draw(st.integers(-3, 9))
        if a.type == onnx.AttributeProto.INT:
            a.i = new
        else:
            a.ints[draw(st.integers(0, len(a.ints) - 1))] = new
    elif kind == "shape":
        dims = [d for vi in [*g.input, *g.output] for d in vi.type.tensor_type.shape.dim]
        draw(st.sampled_from(dims)).dim_value = draw(st.integers(0, 9))
    elif kind == "opset":
        model.opset_import[0].version = draw(st.integers(1, 30))
    elif kind == "op_type":
        draw(st.sampled_from(list(g.node))).op_type = draw(st.sampled_from(OP_TYPES))
    else:  # a tensor's declared dims no longer match its data
        t = draw(st.sampled_from(list(g.initializer)))
        t.dims[draw(st.integers(0, len(t.dims) - 1))] = draw(st.integers(0, 9))
    return model.SerializeToString()


@st.composite
def damaged_models(draw) -> bytes:
    kind = draw(st.sampled_from(["weights", "attribute", "shape", "opset", "op_type", "dims", "truncate", "flip"]))
    if kind not in ("truncate", "flip"):
        return _mutate_proto(draw, kind)
    data = bytearray(MODEL)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 6))):
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


COMMANDS = {
    "inspect": lambda m, d, o: ["inspect", m],
    "convert": lambda m, d, o: ["convert", m, "-o", o],
    "prune": lambda m, d, o: ["prune", m, "-o", o],
    "quantize": lambda m, d, o: ["quantize", m, "-o", o, "--calib", d],
    "validate": lambda m, d, o: ["validate", d.parent / "m.onnx", m, "--data", d],
    "optimize": lambda m, d, o: ["optimize", m, "-o", o, "--calib", d, "--no-profile"],
}


@_settings(40)
@given(blob=damaged_models(), cmd=st.sampled_from(sorted(COMMANDS)))
def test_damaged_model_bytes(ws, blob, cmd):
    (ws / "bad.onnx").write_bytes(blob)
    result = invoke(COMMANDS[cmd](ws / "bad.onnx", ws / "good.npz", ws / "out.onnx"))
    event(f"{cmd}: exit {result.exit_code}")
    _assert_clean(result)
    assert (ws / "m.onnx").read_bytes() == MODEL  # the intact input is never touched


# --- npz contents -------------------------------------------------------------------------------------------------
DTYPES = ["float32", "float64", "float16", "int64", "int32", "uint8", "bool", "complex64"]


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if draw(st.booleans()):
        shape = [draw(st.integers(0, 12)), 3, draw(st.sampled_from([8, 8, 4])), 8]
    else:
        shape = draw(st.lists(st.integers(0, 6), max_size=4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    with np.errstate(over="ignore", invalid="ignore"):  # huge values cast to small dtypes are part of the point
        arr = (rng.standard_normal(shape) * draw(st.sampled_from([1.0, 1e30, 1e-30]))).astype(dtype)
    if dtype.kind in "fc" and arr.size and draw(st.booleans()):
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return arr


def _forged_npy(shape: tuple[int, ...], stored: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * stored


@st.composite
def npz_files(draw) -> bytes:
    kind = draw(st.sampled_from(["arrays", "arrays", "arrays", "forged", "junk"]))
    buf = io.BytesIO()
    if kind == "junk":
        return draw(st.binary(max_size=64))
    if kind == "forged":  # a header that lies about its shape, or a shape past every limit
        shape = tuple(draw(st.lists(st.sampled_from([0, 1, 3, 8, 10**6, 10**12, 2**62]), min_size=1, max_size=4)))
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(draw(st.sampled_from(["x.npy", "labels.npy", "x"])), _forged_npy(shape, draw(st.integers(0, 64))))
        return buf.getvalue()
    keys = draw(st.lists(st.sampled_from(["x", "labels", "z", "x_"]), max_size=3, unique=True))
    np.savez(buf, **{k: draw(arrays()) for k in keys})
    return buf.getvalue()


@_settings(40)
@given(blob=npz_files())
def test_odd_npz_contents(ws, blob):
    (ws / "odd.npz").write_bytes(blob)
    m = ws / "m.onnx"
    _assert_clean(invoke(["validate", m, m, "--data", ws / "odd.npz", "--max-data-mb", "64"]), allowed=(0, 3))


# --- recipe values ------------------------------------------------------------------------------------------------
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 70000),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.sampled_from(["auto", "top1", "cpu", ""]),
    st.lists(st.one_of(st.integers(-2, 9), st.floats(), st.text(max_size=3), st.booleans()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.none(),
                                                   st.dictionaries(st.sampled_from(["atol", "rtol", "dtype", "x"]),
                                                                   st.floats() | st.text(max_size=3), max_size=2)),
                    max_size=2),
)
SECTIONS = {"preprocess": PreprocessConfig, "prune": PruneConfig, "distill": DistillConfig,
            "quantize": QuantizeConfig, "tune": TuneConfig, "validate": ValidateConfig, "gate": GatePolicy,
            "limits": DataLimits}
NESTED = {"validate.profile": ProfileConfig, "validate.tolerances.": Tolerance, "quantize.overrides.x": TensorOverride}
ALL_FIELDS = [(name, f.name) for name, cls in {**SECTIONS, **NESTED}.items() for f in dataclasses.fields(cls)]


def _nest(section: str, table: dict) -> dict:
    """{"validate.profile": t} -> {"validate": {"profile": t}}; a trailing "." is the key "" (the default output)."""
    parts = section.split(".")
    for part in reversed(parts[1:]):
        table = {part: table}
    return {parts[0]: table}


@_settings(400)
@given(field=st.sampled_from(ALL_FIELDS), value=VALUES, seed=VALUES, with_seed=st.booleans())
def test_every_field_of_every_config_takes_any_value_or_says_why(field, value, seed, with_seed):
    section, key = field
    data = {"seed": seed} if with_seed else {}
    data.update(_nest(section, {key: value}))
    try:
        recipe = Recipe.from_dict(data)
    except RecipeError as e:
        assert e.hint and "\n" not in e.message.strip()
        return
    assert isinstance(recipe, Recipe)
    assert Recipe.from_dict(json.loads(recipe.to_json())) == recipe  # an accepted recipe is written and read back
    tomllib.loads(recipe.to_toml())  # TOML has no null: an unset value is left out (the default is read back)


@_settings(300)
@given(section=st.sampled_from(sorted(SECTIONS)), value=VALUES)
def test_a_whole_section_of_any_type_is_built_or_refused(section, value):
    try:
        Recipe.from_dict({section: value})
    except RecipeError as e:
        assert e.hint
    try:
        config_from_dict(SECTIONS[section], value if isinstance(value, dict) else {"x": value}, section)
    except RecipeError as e:
        assert e.hint


CLI_RECIPES = {
    "prune": ("prune", [f.name for f in dataclasses.fields(PruneConfig)]),
    "quantize": ("quantize", [f.name for f in dataclasses.fields(QuantizeConfig)]),
    "preprocess": ("prune", [f.name for f in dataclasses.fields(PreprocessConfig)]),
    "limits": ("quantize", [f.name for f in dataclasses.fields(DataLimits)]),
}


@st.composite
def cli_recipes(draw) -> tuple[str, dict]:
    section = draw(st.sampled_from(sorted(CLI_RECIPES)))
    command, keys = CLI_RECIPES[section]
    table = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))}
    return command, {section: table}


@_settings(30)
@given(case=cli_recipes())
def test_recipes_of_random_values_through_the_cli(ws, case):
    command, data = case
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return
    (ws / "r.json").write_text(text)
    args = [command, ws / "m.onnx", "-o", ws / "r.onnx", "--recipe", ws / "r.json"]
    if command == "quantize":
        args += ["--calib", ws / "good.npz"]
    _assert_clean(invoke(args))
