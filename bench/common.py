"""Shared helpers of the benchmark scripts: where each model and its data live."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUNDLED = ("resnet_mnist", "vit_mnist")


def sources(name: str) -> tuple[Path, Path, Path]:
    """(model, calibration npz, evaluation npz) of a bundled model or of a fetched third-party one
    (`python models/third_party/fetch.py` puts those under .cache/third_party/<name>/)."""
    if name in BUNDLED:
        return (ROOT / "models" / f"{name}.onnx", ROOT / "calibration" / f"{name}_calib.npz",
                ROOT / "calibration" / f"{name}_eval.npz")
    base = ROOT / ".cache" / "third_party" / name
    return base / "model.onnx", base / "calib.npz", base / "eval.npz"
