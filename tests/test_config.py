"""config: frozen configs from dicts; unknown keys are errors listing the valid keys."""

from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from onnxcompress.config import config_from_dict, config_to_dict
from onnxcompress.errors import RecipeError


@dataclass(frozen=True)
class Inner:
    bins: int = 2048

    def __post_init__(self):
        if self.bins < 16:
            raise RecipeError(f"bins must be >= 16, got {self.bins}", hint="use 2048")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    exclude: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)
    per: dict[str, Inner] = field(default_factory=dict)


def test_roundtrip_nested_and_tuples():
    cfg = config_from_dict(Outer, {"name": "q", "exclude": ["a", "b"], "inner": {"bins": 64}, "per": {"t": {"bins": 32}}})
    assert cfg == Outer("q", ("a", "b"), Inner(64), {"t": Inner(32)})
    assert config_to_dict(cfg) == {"name": "q", "exclude": ["a", "b"], "inner": {"bins": 64}, "per": {"t": {"bins": 32}}}
    with pytest.raises(FrozenInstanceError):
        cfg.name = "other"


def test_unknown_key_lists_valid_keys():
    with pytest.raises(RecipeError, match=r"unknown key\(s\) \['bogus'\] in \[quantize.inner\]") as e:
        config_from_dict(Outer, {"inner": {"bogus": 1}}, "quantize")
    assert "['bins']" in e.value.hint


def test_validation_runs():
    with pytest.raises(RecipeError, match="bins must be >= 16"):
        config_from_dict(Outer, {"inner": {"bins": 2}})
