"""logreg_iris: onnxruntime's bundled iris logistic regression (ai.onnx.ml LinearClassifier + Normalizer + ZipMap).

The packaged file declares its input as float_input [3, 2], but its LinearClassifier holds 3 x 4 coefficients
(the four iris features); fed 2 features it predicts one class for everything (33.3% top-1 on iris).  model.onnx
here is the packaged file with ONLY that declaration corrected to [N, 4] (dim_param 'N'); the nodes and weights
are untouched.  Data: scikit-learn's bundled iris (150 samples).  There is no held-out split (the model was fit
on iris): calib is 66 stratified samples, eval is all 150.
"""

from __future__ import annotations

import numpy as np
import onnxruntime

from . import metrics
from .common import Spec, sha256_bytes

PACKAGED_SHA = "8224784c98d73412d9fd99abcd57a38568bd590980d0fbe5916464531c52e8fc"
MEMBER = "onnxruntime/datasets/logreg_iris.onnx"


def get_model(ctx) -> bytes:
    """The installed onnxruntime's copy (onnxruntime is a dependency; the file is unchanged across releases and
    checked by sha256), with the input declaration fixed."""
    from pathlib import Path

    import onnx

    data = (Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx").read_bytes()
    if sha256_bytes(data) != PACKAGED_SHA:
        raise RuntimeError(f"{MEMBER} in onnxruntime {onnxruntime.__version__} is not the expected file")
    m = onnx.load_from_string(data)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_param = "N"
    dims[1].dim_value = 4
    return m.SerializeToString()


def make_data(ctx):
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    rng = ctx.rng(80)
    cal = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:22] for c in range(3)])
    cal = np.sort(cal)
    info = {"source": "sklearn.datasets.load_iris (bundled with scikit-learn): sepal length, sepal width, petal "
                      "length, petal width in cm",
            "overlap": "eval = all 150 iris samples, calib (66, 22 per class) is a subset of them: iris has no "
                       "held-out split and the model was trained on it"}
    return {"float_input": x[cal]}, {"float_input": x, "labels": y.astype(np.int64)}, info


def metric(outputs, extras):
    return metrics.top1(outputs["probabilities"], extras["labels"])


SPEC = Spec(
    name="logreg_iris",
    family="tabular classifier: ai.onnx.ml LinearClassifier (LOGISTIC) -> Normalizer(L1) -> ZipMap",
    task="iris species classification (3 classes, 4 numeric features)",
    package="onnxruntime", version=onnxruntime.__version__,
    wheel_file=MEMBER,
    sha256="8de576882a5f262971b89dabc245897d8f1c8f50515ef9f15d9e95f66eb4e8c8",  # the corrected file
    license="MIT (onnxruntime, Microsoft)",
    homepage="https://github.com/microsoft/onnxruntime",
    description="The iris logistic regression that ships in onnxruntime's wheel (onnxruntime/datasets/), produced "
                "by OnnxMLTools 1.2; used in onnxruntime's own examples.",
    make_data=make_data, metric=metric, get_model=get_model,
    inputs={"float_input": {"batch_axis": 0}},
    outputs={"label": {"kind": "decision", "note": "int64 class id [N]"},
             "probabilities": {"kind": "class_probabilities", "classes": 3,
                               "note": "ZipMap: a sequence of {class id: probability} maps, not a tensor; "
                                       "zoo_index.to_array turns it into [N, 3]"}},
    n_calib=66, n_eval=150, small=(66, 150),
    quirks=[
        "IR 3; only the ai.onnx.ml domain (opset 1) is imported, no ai.onnx opset at all",
        "no float tensor op: LinearClassifier / Normalizer / ZipMap only; 0 initializers (weights are attributes)",
        "output 'probabilities' is seq(map(int64, float)) (ZipMap), output 'label' is int64",
        "packaged input declaration [3, 2] contradicts the 4-feature weights; corrected here to [N, 4]",
        "output 'label' is still declared [3] (left as packaged): onnxruntime warns at other batch sizes",
    ],
    preprocessing={"steps": "none: raw iris features in cm as float32 [N, 4]"},
    labels={"0": "setosa", "1": "versicolor", "2": "virginica"},
    source_note=f"taken from the installed onnxruntime (a dependency; no download): packaged file sha256 "
                f"{PACKAGED_SHA} (the same in every recent release); model.onnx = that file with the input "
                "declaration fixed (its sha256 is `sha256`)",
)
