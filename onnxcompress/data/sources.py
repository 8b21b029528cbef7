"""Every kind of data source, resolved to one :class:`InputData` (see :func:`onnxcompress.data.load_input_data`).

Strings and paths: ``random`` / ``random:N`` (seeded random inputs of the model's shapes, dynamic dims from
``[data] dims``), ``FILE.py[:FUNCTION]`` (a data loader script), a folder of images (Pillow, preprocessed by
``[data.image]`` or from the model's input shape), a saved Hugging Face dataset folder, a ``.npz`` file, a folder
of ``.npz``/``.npy`` files. Objects: an InputData, a dict of arrays, an onnxruntime CalibrationDataReader (instance
or class), a ``datasets.Dataset``, or a re-iterable of feed dicts.

Sources that depend on the model (random, images, datasets) need its input specs; the API passes them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from onnxcompress.data.config import DataConfig
from onnxcompress.data.inputs import InputData, InputSpec, random_data
from onnxcompress.errors import DataError

log = logging.getLogger(__name__)

RANDOM = "random"


def random_spec(source: Any) -> int | None:
    """``random`` -> 0 (the configured sample count), ``random:N`` -> N, anything else -> None."""
    if not isinstance(source, str):
        return None
    head, _, count = source.partition(":")
    if head != RANDOM:
        return None
    if not count:
        return 0
    if not count.isdigit() or int(count) <= 0:
        raise DataError(f"bad random data spec '{source}'", hint="write random or random:N with N > 0 samples")
    return int(count)


def _needs_specs(specs: list[InputSpec] | None, what: str) -> list[InputSpec]:
    if specs is None:
        raise DataError(f"{what} needs the model's input shapes", hint="pass the data through an onnxcompress "
                        "command or API function, which knows the model")
    return specs


def resolve(source: Any, config: DataConfig | None = None, specs: list[InputSpec] | None = None) -> InputData | None:
    """The InputData of a source this module handles, or None (then the plain npz/npy/iterable rules apply)."""
    from onnxcompress.data import hf, readers, scripts

    config = config or DataConfig()
    count = random_spec(source)
    if count is not None:
        samples = count or config.random_samples
        data = random_data(_needs_specs(specs, "random data"), samples, seed=config.seed, dims=config.dims)
        log.info("using %s (explicitly requested)", data.source)
        return data
    if scripts.is_script_spec(source):
        return scripts.load_script(source)
    if readers.is_reader(source) or readers.is_reader_factory(source):
        return readers.from_reader(source)
    if hf.is_dataset(source):
        return hf.from_dataset(source, _needs_specs(specs, "a datasets.Dataset"), config)
    if isinstance(source, (str, os.PathLike)):
        return _path(Path(source), config, specs)
    return None


def _path(path: Path, config: DataConfig, specs: list[InputSpec] | None) -> InputData | None:
    from onnxcompress.data import hf, images

    if not path.is_dir():
        return None
    if hf.is_saved_dataset(path):
        return hf.from_dataset(hf.load_saved(path), _needs_specs(specs, "a Hugging Face dataset"), config, str(path))
    if any(path.glob("*.npz")) or any(path.glob("*.npy")):
        return None
    if images.is_image_folder(path):
        return images.from_images(path, _needs_specs(specs, "an image folder"), config)
    return None
