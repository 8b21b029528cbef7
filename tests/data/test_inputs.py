"""data/inputs: re-iterable sources, batching, limits and checks against the model's inputs."""

import numpy as np
import pytest

from onnxcompress.data import (
    InputSpec,
    from_arrays,
    from_dir,
    from_iterable,
    from_npz,
    load_input_data,
    model_input_specs,
    random_data,
)
from onnxcompress.errors import DataError, EmptyDataError, InputMismatchError, NonFiniteDataError
from support import graphs

SPEC = [InputSpec("x", np.dtype("float32"), ("N", 3, 8, 8))]


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_npz_reiterable_batched_limited(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=_x(10), labels=np.arange(10), note=np.array("metadata string"))
    data = from_npz(p).batched(4)
    sizes = [b["x"].shape[0] for b in data]
    assert sizes == [4, 4, 2] and [b["x"].shape[0] for b in data] == sizes  # iterates again from the start
    assert len(data) == 10 and len(data.limited(7)) == 7
    assert [b["x"].shape[0] for b in data.limited(7)] == [4, 3]
    bound = data.bind(SPEC)
    assert bound.extra_keys == ["labels", "note"]
    feeds, extras = next(bound.batches())
    assert list(feeds) == ["x"] and extras["labels"].tolist() == [0, 1, 2, 3]
    assert data.metadata["note"] == "metadata string"


def test_rebatch_across_chunks(tmp_path):
    for i in range(3):
        np.savez(tmp_path / f"part{i}.npz", x=_x(3, i))
    data = from_dir(tmp_path).batched(4)
    batches = list(data)
    assert [b["x"].shape[0] for b in batches] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), np.concatenate([_x(3, i) for i in range(3)]))


def test_npy_dir_keys_by_stem(tmp_path):
    np.save(tmp_path / "x.npy", _x(5))
    np.save(tmp_path / "labels.npy", np.arange(5))
    data = from_dir(tmp_path)
    assert sorted(next(iter(data))) == ["labels", "x"] and len(data) == 5


def test_iterable_and_callable_and_generator():
    items = [{"x": _x(2, i)} for i in range(3)]
    assert len(from_iterable(items)) == 6
    assert len(from_iterable(lambda: iter(items))) == 6
    with pytest.raises(DataError, match="one-shot") as e:
        from_iterable(x for x in items)
    assert "list" in e.value.hint


def test_missing_input_names_it():
    with pytest.raises(InputMismatchError, match="no data for model input 'x'") as e:
        from_arrays({"image": _x(2)}).bind(SPEC)
    assert "['image']" in e.value.hint


def test_dtype_mismatch():
    with pytest.raises(InputMismatchError, match="expected dtype float32, found float64") as e:
        from_arrays({"x": _x(2).astype(np.float64)}).bind(SPEC)
    assert "astype" in e.value.hint


def test_shape_mismatch_static_dim():
    with pytest.raises(InputMismatchError, match=r"expected shape float32\[N x3x8x8\]|axis 2 must be 8"):
        from_arrays({"x": np.zeros((2, 3, 9, 8), np.float32)}).bind(SPEC)


def test_rank_mismatch():
    with pytest.raises(InputMismatchError, match="rank 4 expected, 3 found"):
        from_arrays({"x": np.zeros((3, 8, 8), np.float32)}).bind(SPEC)


def test_dynamic_dims_must_agree():
    specs = [InputSpec("ids", np.dtype("int64"), ("B", "S")), InputSpec("mask", np.dtype("int64"), ("B", "S"))]
    with pytest.raises(InputMismatchError, match="dynamic dim 'S'"):
        from_arrays({"ids": np.zeros((2, 7), np.int64), "mask": np.zeros((2, 5), np.int64)}).bind(specs)
    from_arrays({"ids": np.zeros((2, 7), np.int64), "mask": np.zeros((2, 7), np.int64)}).bind(specs)


def test_static_batch_dim_is_followed():
    """A model exported at batch 1 gets batches of 1 (it used to be an error asking for --batch-size 1)."""
    spec = [InputSpec("x", np.dtype("float32"), (1, 3, 8, 8))]
    assert len(list(from_arrays({"x": _x(4)}).bind(spec).feeds())) == 4
    assert len(list(from_arrays({"x": _x(4)}).batched(1).bind(spec).feeds())) == 4


def test_nonfinite_is_error_unless_allowed():
    x = _x(4)
    x[2, 0, 0, 0] = np.nan
    x[3, 0, 0, 1] = np.inf
    with pytest.raises(NonFiniteDataError, match="2 NaN/Inf") as e:
        from_arrays({"x": x}).bind(SPEC)
    assert "allow" in e.value.hint
    from_arrays({"x": x}).allowing_nonfinite().bind(SPEC)
    # found in a later batch too, during iteration
    bound = from_arrays({"x": x}).batched(2).bind(SPEC)
    with pytest.raises(NonFiniteDataError):
        list(bound.feeds())


def test_empty_and_bad_sources(tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 3, 8, 8), np.float32))
    with pytest.raises(EmptyDataError):
        from_npz(tmp_path / "e.npz").bind(SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDataError):
        from_dir(tmp_path / "empty")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        from_npz(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="not found"):
        load_input_data(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="different numbers of samples"):
        list(from_arrays({"x": _x(3), "labels": np.arange(4)}))
    with pytest.raises(DataError, match="batch size must be positive"):
        from_arrays({"x": _x(3)}).batched(0)


def test_model_specs_and_seeded_random():
    specs = model_input_specs(graphs.conv_bn_head())
    assert specs == [InputSpec("x", np.dtype("float32"), ("N", 3, 8, 8))]
    a = next(iter(random_data(specs, 5, seed=3)))["x"]
    b = next(iter(random_data(specs, 5, seed=3)))["x"]
    assert a.shape == (5, 3, 8, 8) and np.array_equal(a, b)
    assert not np.array_equal(a, next(iter(random_data(specs, 5, seed=4)))["x"])


def test_anonymous_dim_params_do_not_tie_dims():
    spec = [InputSpec("x", np.dtype("float32"), ("N", 3, "?", "?"))]
    feeds = list(from_arrays({"x": np.zeros((2, 3, 48, 192), np.float32)}).bind(spec).feeds())
    assert [f["x"].shape for f in feeds] == [(2, 3, 48, 192)]
    # a real named dim shared by two axes still ties them
    named = [InputSpec("x", np.dtype("float32"), ("N", 3, "S", "S"))]
    with pytest.raises(InputMismatchError, match="dynamic dim 'S'"):
        from_arrays({"x": np.zeros((2, 3, 48, 192), np.float32)}).bind(named)


def test_rnn_state_batched_on_axis_1_and_scalar_inputs_are_fed_as_the_model_wants():
    """An RNN-style model: x [N, 4], state [2, N, 3] (samples on axis 1) and a 0-d scalar input."""
    from onnxcompress.data.inputs import from_arrays, model_input_specs
    from support import graphs

    model = graphs.make("""
    g (float[N,4] x, float[2,N,3] state, float k) => (float[N,4] y, float[2,N,3] s2) {
      y = Mul (x, k)
      s2 = Mul (state, k)
    }""", [])
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((10, 4)).astype(np.float32),
            "state": rng.standard_normal((2, 10, 3)).astype(np.float32), "k": np.array(2.0, np.float32)}
    import os
    import tempfile

    from onnxcompress.data.inputs import from_npz
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "d.npz"), **data)
        loaded = from_npz(os.path.join(tmp, "d.npz"))
        assert loaded.batch_axes == {"state": 1} and len(loaded) == 10
        batches = list(loaded.batched(4).bind(model_input_specs(model)).feeds())
    assert [b["state"].shape for b in batches] == [(2, 4, 3), (2, 4, 3), (2, 2, 3)]
    assert all(b["k"].shape == () for b in batches)
    np.testing.assert_array_equal(np.concatenate([b["state"] for b in batches], axis=1), data["state"])
    arrays = from_arrays(data)  # in memory: the same inference
    assert arrays.batch_axes == {"state": 1}
    feeds = next(arrays.batched(4).bind(model_input_specs(model)).feeds())
    assert feeds["k"] == 2.0 and feeds["state"].shape == (2, 4, 3)


def test_a_fixed_batch_model_is_fed_at_its_batch_and_a_state_axis_is_no_batch():
    from onnxcompress.data.inputs import InputSpec, static_batch

    fixed = [InputSpec("x", np.dtype(np.float32), (1, 3, 8))]
    data = load_input_data({"x": np.zeros((5, 3, 8), np.float32)}).batched(32)  # asked for 32: the model takes 1
    assert [f["x"].shape for f in data.bind(fixed).feeds()] == [(1, 3, 8)] * 5
    rnn = [InputSpec("x", np.dtype(np.float32), ("N", 512)), InputSpec("state", np.dtype(np.float32), (2, "N", 128))]
    assert static_batch(fixed) == 1 and static_batch(rnn) is None
