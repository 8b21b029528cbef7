"""Recipe round trips and unknown-key errors; Report JSON (schema), Markdown and JUnit XML."""

import json
import xml.etree.ElementTree as ET

import pytest

from onnxcompress.errors import RecipeError
from onnxcompress.recipe import Recipe
from onnxcompress.report import SCHEMA_VERSION, Report
from onnxcompress.validation.compare import Tolerance
from onnxcompress.validation.gate import GatePolicy
from support.report_schema_check import report_errors

RECIPE_TOML = """
seed = 7
quantize = false
[validate]
labels = "y"
metrics = ["top1", "f1"]
[validate.tolerances.logits]
atol = 0.5
[validate.profile]
batch_sizes = [1, 8]
iterations = 5
[gate]
max_accuracy_drop = 0.02
min_speedup = 1.2
"""


def test_recipe_from_toml_and_round_trips(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE_TOML)
    recipe = Recipe.from_file(path)
    assert recipe.seed == 7 and recipe.quantize is None and recipe.prune is None
    assert recipe.validate.tolerances == {"logits": Tolerance(atol=0.5)}
    assert recipe.validate.profile.batch_sizes == (1, 8)
    assert recipe.gate == GatePolicy(max_accuracy_drop=0.02, min_speedup=1.2)
    for name in ("again.toml", "again.json"):
        recipe.write(tmp_path / name)
        assert Recipe.from_file(tmp_path / name) == recipe
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_default_recipe_quantizes_automatically():
    recipe = Recipe()
    assert recipe.quantize == "auto" and recipe.gate is None
    assert recipe.to_dict()["gate"] == "auto"
    assert Recipe.from_dict(Recipe().to_dict()) == recipe
    assert type(Recipe.from_dict({"quantize": True}).quantize).__name__ == "QuantizeConfig"


@pytest.mark.parametrize("data, match", [
    ({"sede": 1}, "sede"),
    ({"validate": {"lables": "y"}}, "lables"),
    ({"validate": {"profile": {"batch": [1]}}}, "batch"),
    ({"gate": {"min_speed": 1}}, "min_speed"),
    ({"quantize": {"calibratr": "minmax"}}, "calibratr"),
    ({"seed": -1}, "seed"),
    ({"validate": {"metrics": ["top3"]}}, "top3"),
    ({"validate": {"profile": {"batch_sizes": [0]}}}, "batch_sizes"),
])
def test_recipe_errors_name_the_key(data, match):
    with pytest.raises(RecipeError, match=match):
        Recipe.from_dict(data)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        Recipe.from_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(RecipeError, match="cannot be parsed"):
        Recipe.from_file(bad)


def _report():
    from onnxcompress.report import ModelInfo, Stages
    from onnxcompress.validation.gate import Criterion, GateResult

    gate = GateResult(False, (Criterion("min_speedup", False, 1.1, 1.5, "min_speedup: 1.1x < 1.5x"),
                              Criterion("min_cosine", True, 0.999, 0.99, "ok <&>")))
    return Report("gate", models={"reference": ModelInfo("a.onnx", "ab", 2_000_000),
                                  "candidate": ModelInfo("b.onnx", "cd", 500_000)},
                  environment={"python": "3", "versions": {"onnxruntime": "1", "onnx": "1", "numpy": "2"},
                               "available_providers": [], "providers": []},
                  gate=gate, stages=Stages(coverage=float("inf")))


def test_report_json_markdown_junit(tmp_path):
    report = _report()
    data = json.loads(report.to_json())
    assert data["schema_version"] == SCHEMA_VERSION and data["passed"] is False
    assert data["stages"]["coverage"] == "inf"  # strict JSON
    assert report_errors(data) == []
    assert report.verdict == "FAILED | 2.0->0.5 MB"
    md = report.to_markdown()
    assert "**FAIL**" in md and "min_speedup: 1.1x < 1.5x" in md
    suite = ET.fromstring(report.to_junit()).find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='min_speedup']/failure")
    assert failure is not None and failure.get("message") == "min_speedup: 1.1x < 1.5x"
    paths = report.write(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["junit.xml", "report.html", "report.json", "report.md"]
    assert json.loads(paths["json"].read_text()) == data


def test_schema_checker_catches_problems():
    data = json.loads(_report().to_json())
    data["kind"] = "weird"
    del data["gate"]["failed"]
    errs = report_errors(data)
    assert any("weird" in e for e in errs) and any("failed" in e for e in errs)
