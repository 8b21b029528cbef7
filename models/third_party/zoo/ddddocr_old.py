"""ddddocr_old: ddddocr's DEFAULT OCR model, common_old.onnx, which is already dynamically quantized to int8
(ConvInteger, MatMulInteger, DynamicQuantizeLSTM; produced by 'onnx.quantize 0.1.0').  Same captcha data,
preprocessing and metric as `ddddocr` (same seeds), with the old charset (CHARSET_OLD)."""

from __future__ import annotations

from dataclasses import replace

from . import ddddocr
from .common import Spec  # noqa: F401  (SPEC is a Spec)

SPEC = replace(
    ddddocr.SPEC,
    name="ddddocr_old",
    family="already-quantized conv + LSTM captcha reader (dynamic int8: ConvInteger, DynamicQuantizeLSTM)",
    wheel_file="ddddocr/common_old.onnx",
    sha256="b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
    description="ddddocr's default OCR model (DdddOcr() / old=True), shipped pre-quantized: uint8/int8 "
                "initializers with DynamicQuantizeLinear in front of every ConvInteger.",
    make_data=lambda ctx: ddddocr.make_data(ctx, "CHARSET_OLD"),
    quirks=[
        "already quantized: 21 ConvInteger + 22 DynamicQuantizeLinear + 1 MatMulInteger + 1 DynamicQuantizeLSTM "
        "(com.microsoft), 44 uint8 + 4 int8 initializers; float math (Mul/Div/Floor/Cast) around them",
        "imports 8 opset domains (ai.onnx 12, ai.onnx.ml 2, com.microsoft, com.microsoft.nchwc, "
        "com.microsoft.mlfeaturizers, ai.onnx.training, ai.onnx.preview.training, com.microsoft.experimental)",
        "producer 'onnx.quantize 0.1.0', IR 6",
        "fixed batch 1; output declared [1, 'seqlen'] but really [T, 1, 8210]",
    ],
    labels={**ddddocr.SPEC.labels, "metric": "as ddddocr, with CHARSET_OLD"},
)
