"""Image folders as calibration/evaluation data: end to end on the bundled MNIST model (images written here from
the bundled data), preprocessing, labels and errors."""

import json

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from onnxcompress import api
from onnxcompress.cli import app
from onnxcompress.data import InputSpec, load_input_data
from onnxcompress.data.config import DataConfig, ImageConfig, parse_image_spec
from onnxcompress.data.images import from_images
from onnxcompress.errors import DataError, EmptyDataError, RecipeError
from onnxcompress.quantization.config import QuantizeConfig
from support.common import bundled_data, bundled_model

MEAN, STD = 0.1307, 0.3081  # the bundled MNIST models' normalization (models/mnist_data.py)
runner = CliRunner()


@pytest.fixture(scope="module")
def mnist_images(tmp_path_factory):
    """48 MNIST digits as PNGs in class sub-folders, and the arrays the image pipeline must produce from them."""
    folder = tmp_path_factory.mktemp("digits")
    d = np.load(bundled_data("resnet_mnist", "eval"))
    x, labels = d["input"][:48], d["labels"][:48]
    pixels = np.rint((x[:, 0] * STD + MEAN) * 255).clip(0, 255).astype(np.uint8)
    order = []
    for i, (img, label) in enumerate(zip(pixels, labels)):
        (folder / str(label)).mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / str(label) / f"{i:03d}.png")
        order.append((f"{label}/{i:03d}.png", i))
    idx = [i for _, i in sorted(order)]  # the adapter reads files in sorted order of their relative path
    expected = (pixels[idx].astype(np.float32)[:, None] * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
    return folder, expected, labels[idx]


def test_folder_reads_sorted_with_folder_labels(mnist_images):
    folder, expected, labels = mnist_images
    model = onnx.load(bundled_model("resnet_mnist"))
    from onnxcompress.data.inputs import model_input_specs

    data = load_input_data(folder, DataConfig(image=ImageConfig(mean=MEAN, std=STD)), model_input_specs(model))
    assert len(data) == 48
    batches = list(data.batched(20))
    assert [len(b["input"]) for b in batches] == [20, 20, 8]
    np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), expected)
    np.testing.assert_array_equal(np.concatenate([b["labels"] for b in batches]), labels)
    assert [len(b["input"]) for b in data.batched(20)] == [20, 20, 8]  # re-iterable


def test_image_calibration_equals_array_calibration(mnist_images, tmp_path):
    """Quantizing from the image folder gives the byte-identical model that the same pixels as a .npz give."""
    folder, expected, labels = mnist_images
    np.savez(tmp_path / "same.npz", input=expected, labels=labels)
    from_folder, r1 = api.quantize(bundled_model("resnet_mnist"), folder, QuantizeConfig(),
                                   data_config=DataConfig(image=ImageConfig(mean=MEAN, std=STD)))
    from_npz, _ = api.quantize(bundled_model("resnet_mnist"), tmp_path / "same.npz", QuantizeConfig())
    assert from_folder.SerializeToString() == from_npz.SerializeToString()
    assert r1.placement is not None and r1.placement.faster  # INT8 where the cost model says it pays
    assert r1.placement.float_nodes == ("/fc/Gemm",) and r1.coverage > 0.9  # only the tiny classifier head float


def test_optimize_cli_with_image_folders(mnist_images, tmp_path):
    folder, _, _ = mnist_images
    out = tmp_path / "m.onnx"
    r = runner.invoke(app, ["optimize", str(bundled_model("resnet_mnist")), "-o", str(out), "--calib", str(folder),
                            "--eval", str(folder), "--image", f"mean={MEAN},std={STD}", "--no-profile"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "m-report" / "report.json").read_text())
    assert report["data"]["calibration"]["samples"] == 48 and report["data"]["calibration"]["sha256"]
    assert report["validation"]["task"]["reference"]["top1"] > 0.9  # labels came from the sub-folder names
    assert report["recipe"]["data"]["image"]["mean"] == [MEAN]  # the flag is a recipe field


def _rgb(path, w, h):
    """An image whose R, G, B planes are 10, 20, 30 with a bright 2x2 block in the top-left corner."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = 10, 20, 30
    a[:2, :2] = 250
    Image.fromarray(a).save(path)


def test_resize_crop_layout_channel_order_and_dtype(tmp_path):
    _rgb(tmp_path / "a.png", 40, 20)
    spec_nhwc = [InputSpec("img", np.dtype("uint8"), ("N", 8, 8, 3))]
    cfg = DataConfig(image=parse_image_spec("resize=10,crop=8,channels=BGR,resample=nearest"))
    x = next(iter(from_images(tmp_path, spec_nhwc, cfg)))["img"]
    assert x.shape == (1, 8, 8, 3) and x.dtype == np.uint8  # integer input: raw pixels, NHWC from the shape
    assert x[0, 4, 4].tolist() == [30, 20, 10]  # BGR
    spec_nchw = [InputSpec("x", np.dtype("float32"), ("N", 3, 10, 20))]  # size from the model: resized to 10x20
    y = next(iter(from_images(tmp_path, spec_nchw, DataConfig(image=ImageConfig(resample="nearest")))))["x"]
    assert y.shape == (1, 3, 10, 20) and y.dtype == np.float32
    np.testing.assert_allclose(y[0, :, 5, 10], np.array([10, 20, 30]) / 255, rtol=1e-6)


def test_labels_file_with_string_labels(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("b.png", "a.png"):
        _rgb(tmp_path / "imgs" / name, 8, 8)
    (tmp_path / "labels.txt").write_text("a.png\thello world\nb.png\tHi\n")
    spec = [InputSpec("x", np.dtype("float32"), ("N", 3, 8, 8))]
    batch = next(iter(from_images(tmp_path / "imgs", spec, DataConfig(labels_file=str(tmp_path / "labels.txt")))))
    assert batch["labels"].tolist() == ["hello world", "Hi"]  # kept as strings, in file order a, b


def test_errors_name_the_problem(tmp_path):
    spec_dynamic = [InputSpec("x", np.dtype("float32"), ("N", 3, "H", "W"))]
    _rgb(tmp_path / "a.png", 8, 8)
    with pytest.raises(DataError, match="dynamic size") as e:
        from_images(tmp_path, spec_dynamic)
    assert "resize" in e.value.hint
    from_images(tmp_path, spec_dynamic, DataConfig(image=ImageConfig(resize=(6, 6))))  # given: fine
    (tmp_path / "b.png").write_bytes(b"not an image")
    spec = [InputSpec("x", np.dtype("float32"), ("N", 3, 8, 8))]
    with pytest.raises(DataError, match=r"cannot read image .*b\.png"):
        list(from_images(tmp_path, spec))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDataError):
        load_input_data(tmp_path / "empty", None, spec)
    with pytest.raises(DataError, match="has 4 channels"):
        from_images(tmp_path, [InputSpec("x", np.dtype("float32"), ("N", 4, 8, 8))],
                    DataConfig(image=ImageConfig(layout="NCHW")))
    with pytest.raises(RecipeError, match="bad --image entry"):
        parse_image_spec("size=3")
