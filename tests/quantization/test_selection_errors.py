"""A selection entry that matches no node is an error that says what would match, not a silent no-op."""

import numpy as np
import pytest

from onnxcompress.data import from_arrays
from onnxcompress.errors import RecipeError
from onnxcompress.quantization import QuantizeConfig
from support import graphs
from support.stages import quantize_model


def _calib():
    return from_arrays({"x": np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)})


@pytest.mark.parametrize("key", ["include", "exclude"])
def test_dead_selection_entry_is_an_error(key):
    with pytest.raises(RecipeError, match=rf"{key} entries \['Convv'\] match no node") as e:
        quantize_model(graphs.conv_bn_head(), _calib(), QuantizeConfig(placement="fixed", verify=False, **{key: ("Convv",)}))
    assert "op type" in e.value.hint and "Conv" in e.value.hint


def test_live_selection_entries_work():
    q, rep = quantize_model(graphs.conv_bn_head(), _calib(), QuantizeConfig(placement="fixed", verify=False, exclude=("Gemm",),
                                                                            include=("re:.*",)))
    assert any(s["reason"].startswith("excluded by 'Gemm'") for s in rep["skipped"])
