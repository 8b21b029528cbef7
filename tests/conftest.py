import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

BUNDLED = ["resnet_mnist", "vit_mnist"]


def bundled_model(name: str) -> Path:
    return ROOT / "models" / f"{name}.onnx"


def bundled_data(name: str, kind: str) -> Path:
    return ROOT / "calibration" / f"{name}_{kind}.npz"


@pytest.fixture(params=BUNDLED)
def bundled(request):
    """(model path, calibration npz, eval npz) of each bundled model."""
    name = request.param
    return bundled_model(name), bundled_data(name, "calib"), bundled_data(name, "eval")


def ort_outputs(model, feeds):
    from onnxcompress.runtime.session import SessionOptions, make_session, run

    sess = make_session(model, SessionOptions(providers="cpu", opt_level="disable", threads=1))
    return run(sess, feeds)


def assert_close_rel(a: np.ndarray, b: np.ndarray, rel: float = 1e-5):
    """|a-b| <= rel * max|a| (relative to the output's scale) elementwise."""
    scale = max(float(np.abs(a).max()), 1e-12)
    err = float(np.abs(a - b).max())
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel:g} * {scale:.3g}"
