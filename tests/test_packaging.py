"""The declared dependency floors are the versions CI tests (.ci/min-requirements.txt), and the GPU install list
(requirements-gpu.txt) is the same list with onnxruntime-gpu in place of onnxruntime."""

import re
import tomllib

from support.common import ROOT


def _reqs(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, op, version = re.match(r"([A-Za-z0-9_.-]+)\s*(==|>=)\s*([^\s;]+)", line).groups()
            out[name.lower()] = (op, version)
    return out


def _declared():
    return _reqs(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def test_floors_are_the_versions_ci_installs():
    tested = _reqs((ROOT / ".ci" / "min-requirements.txt").read_text().splitlines())
    for name, (op, version) in _declared().items():
        assert op == ">=" and tested[name] == ("==", version), name


def test_gpu_requirements_swap_only_onnxruntime():
    gpu = _reqs((ROOT / "requirements-gpu.txt").read_text().splitlines())
    declared = _declared()
    assert "onnxruntime" not in gpu and gpu["onnxruntime-gpu"] == declared.pop("onnxruntime")
    gpu.pop("onnxruntime-gpu")
    assert gpu == declared
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "gpu" not in extras  # an extra would install onnxruntime-gpu next to onnxruntime: both break


def test_main_module_runs_the_cli():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "onnxcompress", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("onnxcompress ")
