"""How much data one input may hold, checked from the file headers before anything is read.

An input is what one ``--calib``/``--eval``/``--data`` argument names (a ``.npz`` file, a folder of ``.npz`` chunks
or of ``.npy`` files). Before an array is loaded, the zip directory of every ``.npz`` and the ``.npy`` header of
every array (shape and dtype) are read: an array whose header does not match the bytes stored for it (a lying
header), a file whose arrays would decompress to more than ``max_data_mb``, or an input with more than
``max_samples`` samples is a :class:`DataError` at once (instead of a MemoryError or a run that never ends).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from onnxcompress.errors import DataError, RecipeError

#: Default cap on the decompressed size of one data file (all ``.npy`` files of a folder count as one), MB = 10^6 B.
DEFAULT_MAX_DATA_MB = 2048.0
#: Default cap on the number of samples (axis 0) of one input.
DEFAULT_MAX_SAMPLES = 1_000_000
#: The longest ``.npy`` header accepted (numpy's own default).
MAX_HEADER_BYTES = 10_000


@dataclass(frozen=True)
class DataLimits:
    """Caps on one input: ``max_data_mb`` decompressed megabytes (10^6 bytes) per data file and ``max_samples``
    samples per input (the recipe's ``[limits]`` table; ``--max-data-mb``/``--max-data-samples``)."""

    max_data_mb: float = DEFAULT_MAX_DATA_MB
    max_samples: int = DEFAULT_MAX_SAMPLES

    def __post_init__(self) -> None:
        v = self.max_data_mb
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise RecipeError(f"max_data_mb must be a number > 0, got {v!r}",
                              hint=f"e.g. max_data_mb = 8192 (the default is {DEFAULT_MAX_DATA_MB:g})")
        v = self.max_samples
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise RecipeError(f"max_samples must be an integer > 0, got {v!r}",
                              hint=f"e.g. max_samples = 5000000 (the default is {DEFAULT_MAX_SAMPLES})")

    @property
    def max_bytes(self) -> int:
        return int(self.max_data_mb * 1e6)

    def check_bytes(self, nbytes: int, what: str) -> None:
        if nbytes > self.max_bytes:
            raise DataError(f"{what} would need {nbytes / 1e6:,.1f} MB in memory, more than the data limit of "
                            f"{self.max_data_mb:g} MB",
                            hint="split the data into a folder of smaller .npz chunks, or raise the limit with "
                                 "--max-data-mb (recipe: [limits] max_data_mb)")

    def check_samples(self, samples: int, what: str) -> None:
        if samples > self.max_samples:
            raise DataError(f"{what} holds {samples:,} samples, more than the limit of {self.max_samples:,}",
                            hint="use fewer samples, or raise the limit with --max-data-samples "
                                 "(recipe: [limits] max_samples)")


@dataclass(frozen=True)
class ArrayHeader:
    """What a ``.npy`` header declares: shape and dtype (so its data size), read without loading the data."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def samples(self) -> int:
        return self.shape[0] if self.shape else 0


def _read_header(f: IO[bytes], name: str, source: str, stored: int) -> ArrayHeader:
    """Parse the header from ``f``; ``stored``: the bytes the file holds for the array (header included)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 or 2.0)")
        offset = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{source}: array '{name}' has an unreadable .npy header ({e})",
                        hint="write the data with numpy.savez / numpy.save") from e
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise DataError(f"{source}: array '{name}' holds Python objects ({dtype}), which are never unpickled",
                        hint="store numeric arrays (e.g. .astype(np.float32))")
    if any(d < 0 for d in shape):
        raise DataError(f"{source}: array '{name}' has a negative dimension in its header {shape}",
                        hint="the file is corrupt; write it again with numpy.savez")
    header = ArrayHeader(name, tuple(int(d) for d in shape), dtype)
    if offset + header.nbytes != stored:
        raise DataError(f"{source}: array '{name}' declares {dtype}{list(shape)} ({header.nbytes:,} bytes) but the "
                        f"file stores {max(stored - offset, 0):,} bytes for it (a corrupt or forged header)",
                        hint="the file is corrupt or truncated; write it again with numpy.savez")
    return header


def npz_headers(path: Path) -> list[ArrayHeader]:
    """The header of every array in a ``.npz`` (from the zip directory and each member's first bytes)."""
    try:
        with zipfile.ZipFile(path) as zf:
            out = []
            for info in zf.infolist():
                if info.is_dir():
                    continue
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as f:
                    out.append(_read_header(f, name, str(path), info.file_size))
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError) as e:
        raise DataError(f"cannot read {path}: not a valid .npz file ({e})",
                        hint="write the data with numpy.savez(path, input_name=array, ...)") from e


def npy_header(path: Path) -> ArrayHeader:
    try:
        with open(path, "rb") as f:
            return _read_header(f, path.stem, str(path), path.stat().st_size)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}", hint="check the file and its permissions") from e


def check_arrays(headers: Iterable[ArrayHeader], limits: DataLimits, what: str) -> int:
    """Check one file's (or one folder of .npy files') arrays against ``limits``; return its sample count."""
    headers = list(headers)
    limits.check_bytes(sum(h.nbytes for h in headers), what)
    samples = max((h.samples for h in headers if h.shape), default=0)
    limits.check_samples(samples, what)
    return samples


def check_batch_memory(specs: Iterable[Any], batch: int, limits: DataLimits) -> None:
    """A batch of ``batch`` samples for inputs ``specs`` (InputSpec: dtype, shape; dynamic dims count as 1) must fit
    the limits (profiling builds such batches, from data or at random)."""
    if batch > limits.max_samples:
        raise DataError(f"batch size {batch:,} is more than the limit of {limits.max_samples:,} samples",
                        hint="use a smaller --batch, or raise the limit with --max-data-samples")
    per_sample = sum(np.dtype(s.dtype).itemsize * math.prod(d if isinstance(d, int) else 1 for d in (s.shape or (1,))[1:])
                     for s in specs)
    limits.check_bytes(per_sample * batch, f"a batch of {batch:,} samples ({per_sample:,} bytes each)")
