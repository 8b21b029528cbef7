"""The public API: every name in __all__ resolves, and the functions that share a name with a subpackage stay
callable after that subpackage is imported."""

import subprocess
import sys

import numpy as np

import onnxcompress
from conftest import bundled_data, bundled_model


def test_all_names_resolve():
    for name in onnxcompress.__all__:
        assert getattr(onnxcompress, name) is not None, name


def test_functions_survive_subpackage_imports():
    code = (
        "import onnxcompress, onnxcompress.quantize, onnxcompress.prune, onnxcompress.distill, onnxcompress.validate\n"
        "print(all(callable(getattr(onnxcompress, n)) for n in ('quantize', 'prune', 'distill', 'validate')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_prune_distill_quantize_through_the_api(tmp_path):
    import onnxcompress.prune  # noqa: F401  (the subpackage import must not shadow the function)
    from onnxcompress.distill.api import kept_from_prune_report

    model, calib = str(bundled_model("resnet_mnist")), str(bundled_data("resnet_mnist", "calib"))
    pruned, rep = onnxcompress.prune(model, onnxcompress.PruneConfig(target_macs=0.5, round_to=8))
    assert rep["after"]["macs"] <= 0.55 * rep["before"]["macs"]
    recon, drep = onnxcompress.distill(model, pruned, calib, onnxcompress.DistillConfig(samples=128),
                                       kept=kept_from_prune_report(rep))
    out = tmp_path / "q.onnx"
    quant, qrep = onnxcompress.quantize(recon, calib, onnxcompress.QuantizeConfig(calibration_samples=128), output=out)
    assert out.exists() and qrep["coverage"] == 1.0
    z = np.load(bundled_data("resnet_mnist", "eval"))
    from conftest import ort_outputs

    x, y = z["input"][:300], z["labels"][:300]
    acc = {k: float((ort_outputs(m, {"input": x})["logits"].argmax(1) == y).mean())
           for k, m in (("pruned", pruned), ("recon", recon), ("quant", quant))}
    assert acc["recon"] > acc["pruned"] + 0.3 and acc["recon"] >= 0.95 and acc["quant"] >= 0.95, acc
