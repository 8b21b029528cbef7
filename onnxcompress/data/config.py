"""How data sources other than arrays become model inputs: the recipe's ``[data]`` section (frozen, validated).

``[data.image]`` is the preprocessing of image folders (and of image columns of a Hugging Face dataset);
``labels_file`` names the labels of an image folder; ``dims`` gives the dynamic dimensions of random data (and of
images when the model's input size is dynamic); ``random_samples``/``seed`` size and seed ``--calib random``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from onnxcompress.errors import RecipeError

LAYOUTS = ("auto", "NCHW", "NHWC")
CHANNEL_ORDERS = ("auto", "RGB", "BGR", "L")  # L: one grey channel
IMAGE_DTYPES = ("auto", "float32", "float16", "uint8", "int8")
RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos")


def _pair(name: str, value: Any) -> tuple[int, int] | None:
    """None, an int N (N x N; for ``resize`` the shorter side, stored as [N, 0]), or [H, W] / 'HxW'."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            value = [int(p) for p in parts] if len(parts) > 1 else int(parts[0])
        except ValueError as e:
            raise RecipeError(f"image {name} '{value}' is not a size", hint=f"e.g. {name} = [224, 224] or '224x224'") from e
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value] if name != "resize" else [value, 0]
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value) or value[0] <= 0:
        raise RecipeError(f"image {name} must be N or [height, width] of positive integers, got {value!r}",
                          hint=f"e.g. {name} = [224, 224]")
    return int(value[0]), int(value[1])


def _floats(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace("/", ",").split(",") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"image {name} must be a number or a list of numbers, got {value!r}",
                          hint=f"e.g. {name} = [0.485, 0.456, 0.406]") from e
    if not out or len(out) not in (1, 3) or not all(math.isfinite(v) for v in out):
        raise RecipeError(f"image {name} needs 1 or 3 finite values, got {value!r}", hint=f"e.g. {name} = [0.5]")
    return out


@dataclass(frozen=True)
class ImageConfig:
    """Preprocessing of one image into a model input, in this order: decode (channel order), ``resize`` (an int:
    the shorter side, keeping the aspect ratio; [H, W]: exactly), center ``crop`` [H, W], ``* scale``,
    ``(x - mean) / std`` per channel, ``layout``, ``dtype``. ``auto`` values come from the model's input
    (NCHW/NHWC from where the 1- or 3-channel axis is, grey for one channel, the input's static H x W as the
    size, its dtype; uint8/int8 inputs get raw pixels unless scale/mean/std are set)."""

    resize: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    layout: str = "auto"
    channels: str = "auto"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    dtype: str = "auto"
    resample: str = "bilinear"
    input: str | None = None  # the model input the images feed (default: the only image-shaped input)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", _pair("resize", self.resize))
        object.__setattr__(self, "crop", _pair("crop", self.crop))
        layout = self.layout.upper() if isinstance(self.layout, str) and self.layout != "auto" else self.layout
        channels = self.channels.upper() if isinstance(self.channels, str) and self.channels != "auto" else \
            self.channels
        for key, value, allowed in (("layout", layout, LAYOUTS), ("channels", channels, CHANNEL_ORDERS),
                                    ("dtype", self.dtype, IMAGE_DTYPES), ("resample", self.resample, RESAMPLE)):
            if value not in allowed:
                raise RecipeError(f"unknown image {key} '{value}'", hint=f"use one of {', '.join(allowed)}")
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "channels", channels)
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) \
                or self.scale <= 0:
            raise RecipeError(f"image scale must be a number > 0, got {self.scale!r}", hint="e.g. scale = 0.00392156862745098")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", _floats("mean", self.mean))
        std = _floats("std", self.std)
        if any(s == 0 for s in std):
            raise RecipeError(f"image std must not be 0, got {list(std)}", hint="e.g. std = [0.229, 0.224, 0.225]")
        object.__setattr__(self, "std", std)

    @property
    def normalizes(self) -> bool:
        """Whether scale/mean/std differ from 'raw pixels'."""
        return not (self.scale == 1.0 and set(self.mean) == {0.0} and set(self.std) == {1.0})


def parse_image_spec(spec: str) -> ImageConfig:
    """``--image 'resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,channels=rgb'`` -> ImageConfig
    (keys as in ``[data.image]``; lists separated by '/', sizes as 224 or 224x224)."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(ImageConfig)}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise RecipeError(f"bad --image entry '{part}'", hint=f"write KEY=VALUE with KEY one of {sorted(names)}")
        value = value.strip()
        if key == "scale":
            num, slash, den = value.partition("/")
            try:
                values[key] = float(num) / (float(den) if slash else 1.0)
            except (ValueError, ZeroDivisionError) as e:
                raise RecipeError(f"bad image scale '{value}'", hint="e.g. scale=1/255 or scale=0.0039") from e
        else:
            values[key] = value
    return ImageConfig(**values)


@dataclass(frozen=True)
class DataConfig:
    """The recipe's ``[data]`` section: how image folders, random data and dynamic dimensions are read."""

    image: ImageConfig | None = None
    labels_file: str | None = None  # image folders: per-file labels (PATH<TAB>LABEL lines) or class names
    dims: dict[str, int] = field(default_factory=dict)  # dynamic dims by name, for random data and images
    random_samples: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image is not None and not isinstance(self.image, ImageConfig):
            raise RecipeError("[data.image] must be a table", hint="e.g. [data.image] resize = 224")
        for name, value in dict(self.dims).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RecipeError(f"dims.{name} must be a positive integer, got {value!r}", hint=f"e.g. {name} = 32")
        for name in ("random_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "random_samples" else 0):
                raise RecipeError(f"{name} must be an integer >= {1 if name == 'random_samples' else 0}, got {value!r}",
                                  hint=f"e.g. {name} = 64")


def parse_dims(items: list[str] | None) -> dict[str, int]:
    """``--dim NAME=N`` (repeatable) -> {NAME: N}."""
    out: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = int(value)
        except ValueError as e:
            raise RecipeError(f"bad --dim '{item}'", hint="write NAME=SIZE, e.g. --dim batch=8 --dim seq=128") from e
    return out
