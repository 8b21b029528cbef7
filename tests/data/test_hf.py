"""Hugging Face datasets as input data (the `hf` extra): a Dataset built here in memory (no network), and the same
dataset saved to disk and read through the CLI. Skipped, with the reason, when `datasets` is not installed."""

import json

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from onnxcompress.cli import app
from onnxcompress.data import load_input_data, model_input_specs
from onnxcompress.data.config import DataConfig, ImageConfig
from support import graphs

datasets = pytest.importorskip("datasets", reason="the hf extra (pip install 'onnxcompress[hf]') is not installed")


def test_dataset_columns_and_images_feed_the_model(tmp_path):
    model = graphs.conv_bn_head()  # x: float32[N, 3, 8, 8]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(p) for p in pixels], "label": list(range(10)),
                                     "caption": [f"img {i}" for i in range(10)]})
    data = load_input_data(ds, DataConfig(image=ImageConfig()), model_input_specs(model))
    assert len(data) == 10
    batch = next(iter(data))
    assert batch["x"].shape == (10, 3, 8, 8) and batch["labels"].tolist() == list(range(10))
    np.testing.assert_allclose(batch["x"][3], pixels[3].transpose(2, 0, 1) / 255, rtol=1e-6)
    assert batch["caption"][0] == "img 0"  # string columns are kept as extra keys
    onnx.save(model, tmp_path / "m.onnx")
    ds.save_to_disk(str(tmp_path / "saved"))
    r = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--calib",
                                 str(tmp_path / "saved"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["coverage"] > 0
