"""The Report of a run: typed sections, written as versioned JSON, Markdown and JUnit XML.

Every section is a typed object (the stages' results, the validation, profile and gate results, pass records and
decisions); ``to_dict`` serialises them to the JSON layout documented in docs/report.md and described by
docs/report.schema.json (``schema_version`` changes when it changes). Markdown, JUnit and the verdict line are
rendered from that JSON form, so every output says the same thing. This module and the CLI are the only places
that format things for humans.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxcompress._version import __version__
from onnxcompress.distillation.result import AttachResult, DistillResult
from onnxcompress.ir.outputs import OutputPlan, OutputSet
from onnxcompress.passes.base import Decision, PassRecord
from onnxcompress.precision.result import PrecisionResult
from onnxcompress.pruning.result import PruneResult
from onnxcompress.quantization.result import QuantizeResult
from onnxcompress.recipe import Recipe
from onnxcompress.report_html import render_html
from onnxcompress.report_text import render_markdown
from onnxcompress.runtime.session import available_providers, versions
from onnxcompress.validation.evaluate import ValidationResult
from onnxcompress.validation.gate import GateResult
from onnxcompress.validation.profile import ProfileResult

SCHEMA_VERSION = "onnxcompress.report/1"
KINDS = ("validate", "profile", "gate", "optimize", "prune", "quantize", "distill", "attach", "precision")
REPORT_FILES = {"json": "report.json", "markdown": "report.md", "html": "report.html", "junit": "junit.xml"}


@dataclass(frozen=True)
class ModelInfo:
    """A model's identity: path (None for an in-memory model), sha256 of its bytes, size in bytes (the file and
    its external data); MACs (at the model's input shapes, dynamic dims 1) and parameter count where measured; the
    bytes of its constants per storage format (ops.formats: fp32, fp16, int8, int4-packed, codebook-indices, ...)."""

    path: str | None
    sha256: str
    bytes: int
    macs: int | None = None
    params: int | None = None
    weights: dict[str, dict[str, int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}
        if self.macs is not None:
            out.update(macs=self.macs, params=self.params)
        if self.weights is not None:
            out["weights_by_format"] = {k: dict(v) for k, v in self.weights.items()}
        return out


@dataclass(frozen=True)
class DataInfo:
    source: str
    samples: int
    keys: tuple[str, ...]
    sha256: str | None
    is_calibration_data: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "samples": self.samples, "keys": list(self.keys),
                               "sha256": self.sha256}
        if self.is_calibration_data is not None:
            out["is_calibration_data"] = self.is_calibration_data
        return out


@dataclass
class Stages:
    """The typed result of every stage that ran (None = did not run)."""

    prune: PruneResult | None = None
    distill: DistillResult | None = None
    quantize: QuantizeResult | None = None
    precision: PrecisionResult | None = None
    attach: AttachResult | None = None
    coverage: float | None = None  # int8 kernel coverage the gate judged (layers with constant weights)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("prune", "distill", "quantize", "precision", "attach"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_dict()
        if self.coverage is not None:
            out["coverage"] = self.coverage
        return out


@dataclass
class Report:
    """What a run did and measured. ``passed`` is None when no gate was evaluated."""

    kind: str
    models: dict[str, ModelInfo] = field(default_factory=dict)
    data: dict[str, DataInfo] = field(default_factory=dict)
    recipe: Recipe | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    passes: list[PassRecord] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    stages: Stages = field(default_factory=Stages)
    validation: ValidationResult | None = None
    profile: ProfileResult | None = None
    gate: GateResult | None = None
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool | None:
        return None if self.gate is None else bool(self.gate.passed)

    @property
    def verdict(self) -> str:
        return verdict_line(self.to_dict(verdict=False, json_safe=False))

    # --- JSON --------------------------------------------------------------------------------------------------
    def to_dict(self, verdict: bool = True, *, json_safe: bool = True) -> dict[str, Any]:
        """The report as plain data; ``json_safe`` turns non-finite floats into strings (strict JSON)."""
        raw = {
            "schema_version": SCHEMA_VERSION, "tool": {"name": "onnxcompress", "version": __version__},
            "kind": self.kind, "created": self.created, "passed": self.passed, "verdict": "",
            "environment": self.environment, "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "models": {k: m.to_dict() for k, m in self.models.items()},
            "data": {k: d.to_dict() for k, d in self.data.items()},
            "passes": [p.to_dict() for p in self.passes], "decisions": [d.to_dict() for d in self.decisions],
            "stages": self.stages.to_dict(),
            "validation": None if self.validation is None else self.validation.to_dict(),
            "profile": None if self.profile is None else self.profile.to_dict(),
            "gate": None if self.gate is None else self.gate.to_dict(), "warnings": list(self.warnings),
        }
        out = jsonable(raw) if json_safe else raw
        if verdict:
            out["verdict"] = verdict_line(out)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_markdown(self) -> str:
        return render_markdown(self.to_dict())

    def to_html(self) -> str:
        return render_html(self.to_dict())

    def to_junit(self) -> str:
        return render_junit(self.to_dict())

    def files(self) -> dict[str, str]:
        """The report files of a report folder: {kind: text} for the kinds of ``REPORT_FILES``."""
        data = self.to_dict()
        return {"json": json.dumps(data, indent=2, allow_nan=False) + "\n", "markdown": render_markdown(data),
                "html": render_html(data), "junit": render_junit(data)}

    def stage(self, staged: OutputSet, folder: str | Path) -> dict[str, Path]:
        """Stage every report file into ``folder`` as part of ``staged`` (published with the rest of the set)."""
        folder = Path(folder)
        for kind, text in self.files().items():
            staged.text(folder / REPORT_FILES[kind], text)
        return {k: folder / name for k, name in REPORT_FILES.items()}

    def write(self, folder: str | Path, plan: OutputPlan | None = None) -> dict[str, Path]:
        """Write report.json, report.md, report.html and junit.xml into ``folder`` (created if missing) as one set: all
        of them or none. ``plan``: the run's checked :class:`OutputPlan` (else the folder is checked here)."""
        plan = plan or OutputPlan().folder(folder, REPORT_FILES.values()).check()
        with plan.stage() as staged:
            paths = self.stage(staged, folder)
            staged.publish()
        return paths


def environment_info(providers: list[str] | None = None) -> dict[str, Any]:

    return {"python": platform.python_version(), "platform": platform.platform(), "versions": versions(),
            "available_providers": available_providers(), "providers": providers or []}


def jsonable(obj: Any) -> Any:
    """Non-finite floats become strings ("inf", "-inf", "nan") so the JSON stays strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf"))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return jsonable(obj.item())
    return obj


# --- the one-line verdict ---------------------------------------------------------------------------------------
def _mb(model: dict[str, Any] | None) -> float | None:
    return None if not model or model.get("bytes") is None else model["bytes"] / 1e6


def verdict_line(report: dict[str, Any]) -> str:
    """``PASSED | 24.1->6.2 MB | p50 3.10->1.21 ms (2.56x) | top-1 98.9->98.7 | agreement 99.6%``."""
    parts = [{True: "PASSED", False: "FAILED", None: "DONE"}[report["passed"]]]
    models = report["models"]
    ref, cand = _mb(models.get("reference")), _mb(models.get("candidate"))
    if ref is not None and cand is not None:
        big = max(ref, cand) >= 1.0
        parts.append(f"{ref:.1f}->{cand:.1f} MB" if big else f"{ref * 1e3:.1f}->{cand * 1e3:.1f} KB")
    batches = (report["profile"] or {}).get("batches") or []
    if batches and {"reference", "candidate"} <= set(batches[0]["models"]):
        m, est = batches[0]["models"], batches[0].get("speedup")
        ratio = f"{batches[0]['speedup_p50']:.2f}x" if est is None else \
            f"{est['median']:.2f}x, >= {est['lower']:.2f}x at {100 * est['confidence']:.0f}%"
        parts.append(f"p50 {m['reference']['p50_ms']:.2f}->{m['candidate']['p50_ms']:.2f} ms ({ratio})")
    elif batches:
        only = next(iter(batches[0]["models"].values()))
        parts.append(f"p50 {only['p50_ms']:.2f} ms")
    v = report["validation"] or {}
    task = v.get("task") or {}
    if "top1" in task.get("reference", {}):
        parts.append(f"top-1 {100 * task['reference']['top1']:.1f}->{100 * task['candidate']['top1']:.1f}")
    primary = (v.get("fidelity") or {}).get(v.get("primary_output"), {})
    if "metric" in primary and primary.get("value") is not None:
        parts.append(_metric_text(primary["metric"], primary["value"]))
    elif primary.get("top1_agreement") is not None:
        parts.append(f"agreement {100 * primary['top1_agreement']:.1f}%")
    return " | ".join(parts)


_METRIC_TEXT = {"top1_agreement": "agreement", "step_agreement": "step agreement",
                "decision_agreement": "decision agreement", "iou": "IoU", "cosine": "cosine",
                "relative_error": "relative error"}


def _metric_text(metric: str, value: float) -> str:
    """The primary output's judged metric as the verdict shows it (agreements in percent)."""
    name = _METRIC_TEXT.get(metric, metric)
    return f"{name} {100 * value:.1f}%" if metric.endswith("agreement") else f"{name} {value:.4f}"


# --- text safety -------------------------------------------------------------------------------------------------
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 forbids shown as ``\\xNN`` / ``\\uNNNN`` escapes."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        text)


# --- JUnit XML --------------------------------------------------------------------------------------------------
def render_junit(report: dict[str, Any]) -> str:
    """JUnit XML: one test case per gate criterion; text is made XML-1.0-safe (model names may hold anything)."""
    kind = report["kind"]
    criteria = (report["gate"] or {}).get("criteria") or []
    suite = ET.Element("testsuite", name=f"onnxcompress.{kind}", tests=str(max(len(criteria), 1)),
                       failures=str(sum(not c["passed"] for c in criteria)), errors="0", timestamp=report["created"])
    if not criteria:
        case = ET.SubElement(suite, "testcase", classname=f"onnxcompress.{kind}", name="run")
        ET.SubElement(case, "system-out").text = xml_safe(report["verdict"])
    for c in criteria:
        case = ET.SubElement(suite, "testcase", classname="onnxcompress.gate", name=xml_safe(c["name"]))
        message = xml_safe(c["message"])
        if not c["passed"]:
            ET.SubElement(case, "failure", message=message, type="GateCriterionFailed").text = message
        else:
            ET.SubElement(case, "system-out").text = message
    suites = ET.Element("testsuites")
    suites.append(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
