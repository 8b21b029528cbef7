"""runtime/session: provider selection, options, clear errors."""

import numpy as np
import pytest

from onnxcompress.errors import ModelFormatError, ProviderError, RecipeError
from onnxcompress.runtime.session import SessionOptions, available_providers, make_session, resolve_providers, run
from support import graphs


def test_auto_picks_cuda_only_when_available():
    got = resolve_providers("auto")
    if "CUDAExecutionProvider" in available_providers():
        assert got[0] == "CUDAExecutionProvider"
    else:
        assert got == ["CPUExecutionProvider"]


def test_missing_provider_is_error_not_fallback():
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("CUDA is installed here")
    with pytest.raises(ProviderError, match="CUDAExecutionProvider") as e:
        resolve_providers("cuda")
    assert e.value.exit_code == 3 and "--providers cpu" in e.value.hint


def test_unknown_provider_and_options():
    with pytest.raises(RecipeError, match="unknown execution provider 'tpu'"):
        resolve_providers("tpu")
    with pytest.raises(RecipeError, match="optimization level"):
        SessionOptions(opt_level="max")
    with pytest.raises(RecipeError, match="threads"):
        SessionOptions(threads=-1)


def test_session_runs_with_threads_and_levels():
    model = graphs.conv_bn_head()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    outs = [run(make_session(model, SessionOptions(providers="cpu", threads=1, opt_level=lvl)), {"x": x})["y"]
            for lvl in ("disable", "all")]
    assert outs[0].shape == (2, 5)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_unloadable_model_is_user_error():
    with pytest.raises(ModelFormatError, match="onnxruntime could not load"):
        make_session(b"garbage", SessionOptions(providers="cpu"))
