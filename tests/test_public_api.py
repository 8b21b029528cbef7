"""The public API: a pinned __all__, typed verbs that no subpackage import can shadow, and the documented flow
prune -> distill -> quantize on a bundled model."""

import inspect
import subprocess
import sys

import numpy as np

import onnxcompress
from support.common import bundled_data, bundled_model, ort_outputs

PUBLIC = [
    "__version__",
    "optimize", "prune", "quantize", "convert_precision", "distill", "attach", "validate", "profile", "gate",
    "inspect", "sensitivity",
    "Recipe", "PreprocessConfig", "PruneConfig", "DistillConfig", "QuantizeConfig", "TensorOverride", "PrecisionConfig",
    "TuneConfig", "SelfCheckConfig", "ValidateConfig", "ProfileConfig", "Tolerance", "OutputSpec", "FidelityFloors",
    "GatePolicy",
    "Report", "PruneResult", "DistillResult", "AttachResult", "QuantizeResult", "PrecisionResult", "GateResult",
    "KeptChannels",
    "OnnxCompressError", "UserError", "ModelError", "DataError", "InputMismatchError", "ProviderError", "RecipeError",
]
VERBS = ("optimize", "prune", "quantize", "convert_precision", "distill", "attach", "validate", "profile", "gate",
         "inspect", "sensitivity")


def test_all_is_pinned_and_resolves():
    assert onnxcompress.__all__ == PUBLIC
    for name in onnxcompress.__all__:
        assert getattr(onnxcompress, name) is not None, name


def test_verbs_are_typed_functions_not_modules():
    for name in VERBS:
        fn = getattr(onnxcompress, name)
        assert inspect.isfunction(fn), name
        params = inspect.signature(fn).parameters.values()
        assert all(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params), name
        assert all(p.annotation is not inspect.Parameter.empty for p in params), name
        assert inspect.signature(fn).return_annotation is not inspect.Signature.empty, name


def test_stage_packages_do_not_shadow_the_verbs():
    code = ("import onnxcompress, onnxcompress.quantization, onnxcompress.pruning, onnxcompress.distillation, "
            "onnxcompress.validation, onnxcompress.tuning\n"
            "print(all(callable(getattr(onnxcompress, n)) for n in ('quantize', 'prune', 'distill', 'validate')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_prune_distill_quantize_through_the_api(tmp_path):
    model, calib = str(bundled_model("resnet_mnist")), str(bundled_data("resnet_mnist", "calib"))
    pruned, rep = onnxcompress.prune(model, onnxcompress.PruneConfig(target_macs=0.5, round_to=8))
    assert isinstance(rep, onnxcompress.PruneResult) and rep.after.macs <= 0.55 * rep.before.macs
    recon, drep = onnxcompress.distill(model, pruned, calib, onnxcompress.DistillConfig(samples=128),
                                       kept=rep.kept_channels())
    assert isinstance(drep, onnxcompress.DistillResult) and len(drep.reconstructed) >= 10
    out = tmp_path / "q.onnx"
    quant, qrep = onnxcompress.quantize(recon, calib, onnxcompress.QuantizeConfig(calibration_samples=128),
                                        output=out)
    assert out.exists() and isinstance(qrep, onnxcompress.QuantizeResult)
    assert qrep.placement.faster and qrep.coverage >= 0.9  # the latency placement keeps the tiny head Gemm float
    z = np.load(bundled_data("resnet_mnist", "eval"))
    x, y = z["input"][:300], z["labels"][:300]
    acc = {k: float((ort_outputs(m, {"input": x})["logits"].argmax(1) == y).mean())
           for k, m in (("pruned", pruned), ("recon", recon), ("quant", quant))}
    assert acc["recon"] > acc["pruned"] + 0.3 and acc["recon"] >= 0.95 and acc["quant"] >= 0.95, acc
