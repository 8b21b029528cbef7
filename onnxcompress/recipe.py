"""The Recipe: everything a run needs to be reproduced, as frozen, validated dataclasses.

A recipe file (TOML or JSON) has a top-level ``seed`` and the sections ``preprocess``, ``prune``, ``distill``,
``quantize``, ``precision``, ``tune``, ``self_check``, ``validate`` and ``gate``. A stage section is a table (that
stage with those settings), ``true`` (defaults) or ``false`` (off). ``quantize`` absent means ``"auto"``: INT8 for
the CPU target when calibration data is given; ``distill`` absent means ``"auto"``: layer-wise reconstruction after
pruning when calibration data is given; ``precision`` absent means off (a table converts to fp16/bf16 after
quantize; with ``quantize`` absent the auto INT8 stage is then skipped); ``tune`` absent means no accuracy goal of
its own (``optimize`` derives one from the gate's accuracy criterion); ``self_check`` (on by default) then checks
the quantized model against the fidelity floors of ``[validate.floors]`` on held-out calibration samples and runs
the search by itself below a floor. ``gate`` absent means a default policy chosen from what the evaluation data
allows (see validation.gate.default_policy). Unknown keys are errors that list the valid keys. The effective recipe
(every ``auto`` resolved) is written into every report, so ``--dump-recipe`` reproduces a run.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from onnxcompress.config import config_from_dict, config_to_dict
from onnxcompress.data.config import DataConfig
from onnxcompress.data.limits import DataLimits
from onnxcompress.distillation.config import DistillConfig
from onnxcompress.errors import RecipeError
from onnxcompress.ir.outputs import write_text
from onnxcompress.passes.preprocess import PreprocessConfig
from onnxcompress.precision.config import PrecisionConfig
from onnxcompress.pruning.config import PruneConfig
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.tuning.config import SelfCheckConfig, TuneConfig
from onnxcompress.validation.config import ValidateConfig
from onnxcompress.validation.gate import GatePolicy

Auto = Literal["auto"]
AUTO: Final = "auto"
TOP_LEVEL = ("seed", "data", "preprocess", "prune", "distill", "quantize", "precision", "tune", "self_check",
             "validate", "gate",
             "limits")


def _stage(name: str, cls: type, value: Any, *, auto: bool) -> Any:
    """A stage section's value: None (off), "auto" (where allowed) or a ``cls`` instance."""
    if value is None or value is False:
        return None
    if auto and value == AUTO:
        return AUTO
    if value is True:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return config_from_dict(cls, value, name)
    allowed = "a table, true, false" + (' or "auto"' if auto else "")
    raise RecipeError(f"[{name}] must be {allowed}; got {value!r}", hint=f"e.g. [{name}] with its keys")


@dataclass(frozen=True)
class Recipe:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    prune: PruneConfig | None = None
    distill: DistillConfig | Auto | None = AUTO
    quantize: QuantizeConfig | Auto | None = AUTO
    precision: PrecisionConfig | None = None
    tune: TuneConfig | None = None
    self_check: SelfCheckConfig = field(default_factory=SelfCheckConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    gate: GatePolicy | None = None  # None: a default policy chosen from the evaluation data
    limits: DataLimits = field(default_factory=DataLimits)  # caps on every data input (checked from headers)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise RecipeError(f"seed must be an integer >= 0, got {self.seed!r}", hint="e.g. seed = 0")
        object.__setattr__(self, "data", _stage("data", DataConfig, self.data, auto=False) or DataConfig())
        object.__setattr__(self, "preprocess", _stage("preprocess", PreprocessConfig, self.preprocess, auto=False)
                           or PreprocessConfig())
        object.__setattr__(self, "prune", _stage("prune", PruneConfig, self.prune, auto=False))
        object.__setattr__(self, "distill", _stage("distill", DistillConfig, self.distill, auto=True))
        object.__setattr__(self, "quantize", _stage("quantize", QuantizeConfig, self.quantize, auto=True))
        object.__setattr__(self, "precision", _stage("precision", PrecisionConfig, self.precision, auto=False))
        object.__setattr__(self, "tune", _stage("tune", TuneConfig, self.tune, auto=False))
        object.__setattr__(self, "self_check", _stage("self_check", SelfCheckConfig, self.self_check, auto=False)
                           or SelfCheckConfig(enabled=False))
        validate = _stage("validate", ValidateConfig, self.validate, auto=False)
        object.__setattr__(self, "validate", validate or ValidateConfig())
        object.__setattr__(self, "gate", _stage("gate", GatePolicy, self.gate, auto=False))
        object.__setattr__(self, "limits", _stage("limits", DataLimits, self.limits, auto=False) or DataLimits())

    # --- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Recipe:
        data = dict(data or {})
        unknown = sorted(set(data) - set(TOP_LEVEL))
        if unknown:
            raise RecipeError(f"unknown recipe key(s) {unknown}", hint=f"valid top-level keys are {list(TOP_LEVEL)}")
        if data.get("gate") == AUTO:
            data.pop("gate")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}", hint="give a .toml or .json recipe file")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise RecipeError(f"{path} cannot be parsed: {e}", hint="fix the TOML/JSON syntax") from e
        except OSError as e:
            raise RecipeError(f"cannot read recipe {path}: {e.strerror or e}", hint="check the file's permissions") from e
        if not isinstance(data, dict):
            raise RecipeError(f"{path} must hold a table/object at the top level", hint="see docs/report.md")
        return cls.from_dict(data)

    # --- output ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed, "data": config_to_dict(self.data),
                               "preprocess": config_to_dict(self.preprocess)}
        for stage in ("prune", "distill", "quantize", "precision", "tune"):
            value = getattr(self, stage)
            out[stage] = AUTO if value == AUTO else (False if value is None else config_to_dict(value))
        out["self_check"] = config_to_dict(self.self_check)
        out["validate"] = config_to_dict(self.validate)
        out["gate"] = AUTO if self.gate is None else config_to_dict(self.gate)
        out["limits"] = config_to_dict(self.limits)
        return out

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @staticmethod
    def check_path(path: str | Path) -> None:
        """A recipe is written as TOML or JSON, chosen by the suffix; anything else is an error."""
        if Path(path).suffix.lower() not in (".toml", ".json"):
            raise RecipeError(f"cannot write a recipe to {path}: unknown format '{Path(path).suffix}'",
                              hint="name the file *.toml or *.json")

    def dumps(self, path: str | Path) -> str:
        """The text of the recipe file ``path`` (TOML or JSON, by its suffix)."""
        self.check_path(path)
        return self.to_json() if Path(path).suffix.lower() == ".json" else self.to_toml()

    def write(self, path: str | Path) -> Path:
        return write_text(path, self.dumps(path)).path


# --- a small TOML writer (tomllib reads only); None values are omitted -------------------------------------------
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def _string(text: str) -> str:
    """A TOML basic string: JSON's escaping of quotes, backslashes and control characters, with every other
    character written as itself (TOML's \\u escapes must not be UTF-16 surrogate pairs) and DEL escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if v is not None and not isinstance(v, dict)]
    tables = any(isinstance(v, dict) for v in data.values())
    lines = [f"[{prefix}]"] if prefix and (scalars or not tables) else []  # an all-unset table keeps its header
    lines += scalars
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in data.items():
        if isinstance(v, dict):
            sub = f"{prefix}.{_key(k)}" if prefix else _key(k)
            text += ("\n" if text else "") + dumps_toml(v, sub)
    return text
