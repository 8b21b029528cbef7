"""Folders of images (PNG, JPEG, BMP, WebP via Pillow) as model inputs.

Files are found recursively and read in sorted order of their path relative to the folder (the same order on every
machine). Labels: when every image lies in a sub-folder, the sub-folder names are the classes (sorted, or in the
order of a class-names ``labels_file``), and ``labels`` holds their indices; a ``labels_file`` of ``PATH<TAB>LABEL``
lines gives per-file labels instead (integers, or strings such as OCR transcripts, kept as strings). Images are
decoded in chunks as the data is iterated, so memory holds one chunk, not the folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from onnxcompress.data.config import DataConfig, ImageConfig
from onnxcompress.data.inputs import InputData, InputSpec
from onnxcompress.errors import DataError, EmptyDataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CHUNK = 32  # images decoded per chunk


def image_files(folder: Path) -> list[Path]:
    """Every image below ``folder``, in sorted order of the relative POSIX path."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def is_image_folder(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*") if p.is_file())


# --- resolving the preprocessing against the model input -------------------------------------------------------
@dataclass(frozen=True)
class ResolvedImage:
    """Every ``auto`` of an ImageConfig settled from the model input."""

    input: str
    layout: str
    channels: str
    size: tuple[int, int] | None  # final (H, W) when the model fixes it
    dtype: np.dtype
    config: ImageConfig


def _image_input(specs: list[InputSpec], config: ImageConfig, source: str) -> InputSpec:
    if config.input is not None:
        for s in specs:
            if s.name == config.input:
                return s
        raise DataError(f"{source}: the model has no input '{config.input}' (inputs: {[s.name for s in specs]})",
                        hint="set [data.image] input to one of the model's inputs")
    images = [s for s in specs if s.shape is not None and len(s.shape) == 4]
    if len(specs) == 1 or len(images) == 1:
        return specs[0] if len(specs) == 1 else images[0]
    raise DataError(f"{source}: the model has {len(specs)} inputs ({[s.name for s in specs]}); an image folder "
                    "feeds one of them", hint="name it with [data.image] input (or --image input=NAME), or use a "
                                              "--data-loader-script for several inputs")


def resolve_image(specs: list[InputSpec], config: ImageConfig | None, source: str) -> ResolvedImage:
    config = config or ImageConfig()
    spec = _image_input(specs, config, source)
    shape = spec.shape
    if shape is None or len(shape) != 4:
        raise DataError(f"{source}: model input '{spec.name}' is {spec.describe()}, not a 4-D image batch",
                        hint="image folders feed NCHW or NHWC inputs; use a --data-loader-script for other inputs")
    layout = config.layout
    if layout == "auto":
        if shape[1] in (1, 3):
            layout = "NCHW"
        elif shape[3] in (1, 3):
            layout = "NHWC"
        else:
            raise DataError(f"{source}: cannot tell the layout of input '{spec.name}' {spec.describe()} "
                            "(no static 1- or 3-channel axis)", hint="give it: --image layout=NCHW (or NHWC)")
    c, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
    channels = config.channels if config.channels != "auto" else ("L" if c == 1 else "RGB")
    if isinstance(c, int) and c != (1 if channels == "L" else 3):
        raise DataError(f"{source}: input '{spec.name}' has {c} channels but the images are read as {channels}",
                        hint="set --image channels=L (grey) or RGB/BGR to match the model")
    size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    dtype = spec.dtype if config.dtype == "auto" else np.dtype(config.dtype)
    default = ImageConfig()
    if dtype.kind in "iu" and (config.scale, config.mean, config.std) == (default.scale, default.mean, default.std):
        config = replace(config, scale=1.0)  # integer inputs take raw pixels unless told otherwise
    if size is None and config.crop is None and (config.resize is None or config.resize[1] == 0):
        raise DataError(f"{source}: input '{spec.name}' {spec.describe()} has a dynamic size and the images differ",
                        hint="give the size: --image resize=224x224 (or crop=224)")
    return ResolvedImage(spec.name, layout, channels, size, dtype, config)


# --- decoding ---------------------------------------------------------------------------------------------------
def _resample(name: str):
    from PIL import Image

    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[name]


def _center_crop(img, size: tuple[int, int]):
    h, w = size
    if img.height < h or img.width < w:
        raise DataError(f"image of {img.width}x{img.height} is smaller than the crop {w}x{h}",
                        hint="resize first: --image resize=N with N >= the crop")
    top, left = (img.height - h) // 2, (img.width - w) // 2
    return img.crop((left, top, left + w, top + h))


def load_image(path: Path | BinaryIO, r: ResolvedImage) -> np.ndarray:
    """One image as a model sample (without the batch axis)."""
    from PIL import Image, UnidentifiedImageError

    cfg = r.config
    try:
        with Image.open(path) as raw:
            img = raw.convert("L" if r.channels == "L" else "RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read image {path}: {e}", hint="remove or replace the file") from e
    if cfg.resize is not None:
        h, w = cfg.resize
        if w == 0:  # shorter side to h, keeping the aspect ratio
            ratio = h / min(img.width, img.height)
            h, w = max(1, round(img.height * ratio)), max(1, round(img.width * ratio))
        img = img.resize((w, h), _resample(cfg.resample))
    elif cfg.crop is None and r.size is not None and (img.height, img.width) != r.size:
        img = img.resize((r.size[1], r.size[0]), _resample(cfg.resample))
    if cfg.crop is not None:
        img = _center_crop(img, cfg.crop)
    x = np.asarray(img, dtype=np.float32)
    x = x[:, :, None] if x.ndim == 2 else x
    if r.channels == "BGR":
        x = x[:, :, ::-1]
    if cfg.normalizes:
        x = (x * np.float32(cfg.scale) - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    if r.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    if r.dtype.kind in "iu":
        info = np.iinfo(r.dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    return np.ascontiguousarray(x.astype(r.dtype))


# --- labels -----------------------------------------------------------------------------------------------------
def _labels_file(path: Path) -> tuple[dict[str, str] | None, list[str] | None]:
    """(per-file labels, class names) from a labels file: ``PATH<TAB>LABEL`` lines, or one class name per line."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the labels file {path}: {e}", hint="give a UTF-8 text file") from e
    if lines and all("\t" in ln for ln in lines):
        return {a.strip(): b for a, _, b in (ln.partition("\t") for ln in lines)}, None
    if any("\t" in ln for ln in lines):
        raise DataError(f"{path} mixes PATH<TAB>LABEL lines and class-name lines",
                        hint="use one form: a label per file, or one class name per line")
    return None, [ln.strip() for ln in lines]


def folder_labels(folder: Path, files: list[Path], labels_file: str | None) -> np.ndarray | None:
    """The labels of ``files``: per-file from the labels file, else class indices of the sub-folders."""
    per_file, classes = _labels_file(Path(labels_file)) if labels_file else (None, None)
    rel = [p.relative_to(folder).as_posix() for p in files]
    if per_file is not None:
        missing = [r for r in rel if r not in per_file and Path(r).name not in per_file]
        if missing:
            raise DataError(f"{labels_file} has no label for {len(missing)} image(s), e.g. {missing[:3]}",
                            hint="add a PATH<TAB>LABEL line for every image (PATH relative to the folder)")
        values = [per_file.get(r, per_file.get(Path(r).name, "")) for r in rel]
        try:
            return np.asarray([int(v) for v in values], dtype=np.int64)
        except ValueError:
            return np.asarray(values, dtype=str)  # string labels (e.g. OCR transcripts) are kept as they are
    parents = [Path(r).parent.as_posix() for r in rel]
    if any(p == "." for p in parents):
        if classes is not None:
            raise DataError(f"{labels_file} lists class names but some images of {folder} are not in a class "
                            "sub-folder", hint="put every image in a sub-folder named after its class")
        return None
    names = classes if classes is not None else sorted(set(parents))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(parents) - set(index))
    if unknown:
        raise DataError(f"sub-folder(s) {unknown[:5]} of {folder} are not in the class list {labels_file}",
                        hint="add them to the labels file, one class name per line")
    return np.asarray([index[p] for p in parents], dtype=np.int64)


# --- the source -------------------------------------------------------------------------------------------------
def from_images(folder: str | Path, specs: list[InputSpec], config: DataConfig | None = None) -> InputData:
    """An image folder as InputData for a model with inputs ``specs`` (see the module docstring)."""
    folder = Path(folder)
    config = config or DataConfig()
    files = image_files(folder)
    if not files:
        raise EmptyDataError(f"{folder} contains no images ({', '.join(IMAGE_SUFFIXES)})",
                             hint="put the images in the folder (sub-folders name the classes)")
    resolved = resolve_image(specs, config.image, str(folder))
    labels = folder_labels(folder, files, config.labels_file)
    log.info("%s: %d images -> input '%s' (%s, %s, %s)", folder, len(files), resolved.input, resolved.layout,
             resolved.channels, resolved.dtype)

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(files), CHUNK):
            part = files[start:start + CHUNK]
            batch = {resolved.input: np.stack([load_image(p, resolved) for p in part])}
            if labels is not None:
                batch["labels"] = labels[start:start + CHUNK]
            yield batch

    _check_same_size(files[0], resolved)
    return InputData(chunks, source=str(folder), size=len(files))


def _check_same_size(first: Path, r: ResolvedImage) -> None:
    """Fail early (not at batch 3) when the decoded size cannot be the model's."""
    sample = load_image(first, r)
    hw = sample.shape[1:] if r.layout == "NCHW" else sample.shape[:2]
    if r.size is not None and tuple(hw) != r.size:
        raise DataError(f"{first} becomes {hw[0]}x{hw[1]} after preprocessing; the model input needs "
                        f"{r.size[0]}x{r.size[1]}", hint="adjust --image resize/crop to the model's size")
