"""Shared test helpers: bundled model paths, onnxruntime reference outputs, relative closeness."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ["resnet_mnist", "vit_mnist"]


def bundled_model(name: str) -> Path:
    return ROOT / "models" / f"{name}.onnx"


def zoo_member(name: str) -> Path:
    """A zoo member's folder: the committed small copy (models/third_party/small), else the fetched one
    (.cache/third_party, written by models/third_party/fetch.py); tests skip when neither has model.onnx."""
    small = ROOT / "models" / "third_party" / "small" / name
    return small if (small / "model.onnx").exists() else ROOT / ".cache" / "third_party" / name


def bundled_data(name: str, kind: str) -> Path:
    return ROOT / "calibration" / f"{name}_{kind}.npz"


def ort_outputs(model, feeds):
    from onnxcompress.runtime.session import SessionOptions, make_session, run

    sess = make_session(model, SessionOptions(providers="cpu", opt_level="disable", threads=1))
    return run(sess, feeds)


def assert_close_rel(a: np.ndarray, b: np.ndarray, rel: float = 1e-5):
    """|a-b| <= rel * max|a| (relative to the output's scale) elementwise."""
    scale = max(float(np.abs(a).max()), 1e-12)
    err = float(np.abs(a - b).max())
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel:g} * {scale:.3g}"
