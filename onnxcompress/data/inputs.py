"""Re-iterable input data: ``iter(data)`` starts over every time and yields ``{name: array}`` batches.

Sources: a ``.npz`` file (one array per key, samples on axis 0), a directory of ``.npz`` files (each one a chunk of
samples, read in sorted order) or of ``.npy`` files (each file is one key, named by its stem), a dict of arrays, or
any re-iterable Python object yielding feed dicts (a list, or a zero-argument callable returning an iterator).
A one-shot generator is refused because calibration passes iterate more than once.

``bind(specs)`` checks the data against the model's inputs and separates the model's feeds from the extra keys
(labels, metadata) that metrics can use.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.data.limits import DataLimits, check_arrays, npy_header, npz_headers
from onnxcompress.errors import DataError, EmptyDataError, InputMismatchError, NonFiniteDataError

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, numpy dtype and shape (int for static dims, str/None for dynamic ones)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "x".join(str(d) if isinstance(d, int) else (d or "?") for d in self.shape)
        return f"{self.dtype}[{dims}]"


def static_batch(specs: list[InputSpec]) -> int | None:
    """The batch a model only accepts: the one static axis-0 size of inputs whose axis 0 is static, when no input
    has a dynamic axis 0 (an RNN state's static first axis is not a batch then); else None."""
    firsts = [s.shape[0] for s in specs if s.shape]
    if not firsts or not all(isinstance(d, int) for d in firsts) or len(set(firsts)) != 1:
        return None
    return int(firsts[0])


def model_input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in tt.shape.dim
            )
        specs.append(InputSpec(vi.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)), shape))
    return specs


class InputData:
    """Re-iterable batches of feed dicts built from a chunk source; immutable (options return new objects)."""

    def __init__(self, chunks: Callable[[], Iterator[Mapping[str, Any]]], *, source: str,
                 batch_size: int | None = None, limit: int | None = None, allow_nonfinite: bool = False,
                 metadata: dict[str, Any] | None = None, batch_axes: Mapping[str, int] | None = None,
                 size: int | None = None, every: tuple[int, bool] | None = None):
        if batch_size is not None and batch_size <= 0:
            raise DataError(f"batch size must be positive, got {batch_size}", hint="use e.g. --batch-size 32")
        if limit is not None and limit <= 0:
            raise DataError(f"sample limit must be positive, got {limit}", hint="omit it to use every sample")
        self._chunks = chunks
        self.source = source
        self.batch_size = batch_size
        self.limit = limit
        self.allow_nonfinite = allow_nonfinite
        self.metadata = dict(metadata or {})
        self._axes = None if batch_axes is None else dict(batch_axes)  # None: inferred from the data on first use
        self.size = size  # the number of samples when the source knows it without reading (image files)
        self._every = every  # (k, held): only every k-th sample (held=True) or all the others (see split_every)
        self._len: int | None = None if size is None else (size if limit is None else min(size, limit))

    @property
    def batch_axes(self) -> dict[str, int]:
        """Arrays whose samples are on another axis than 0 (e.g. an RNN state [layers, N, hidden]), given with
        :meth:`with_batch_axes` or inferred from the first chunk (:func:`infer_data_batch_axes`)."""
        if self._axes is None:
            raw = next(self._chunks(), None)
            self._axes = infer_data_batch_axes(raw) if isinstance(raw, Mapping) else {}
        return self._axes

    # --- options -------------------------------------------------------------------------------------------
    def _with(self, **kw) -> InputData:
        args = dict(source=self.source, batch_size=self.batch_size, limit=self.limit,
                    allow_nonfinite=self.allow_nonfinite, metadata=self.metadata, batch_axes=self._axes,
                    size=self.size, every=self._every)
        args.update(kw)
        return InputData(self._chunks, **args)

    def batched(self, batch_size: int | None) -> InputData:
        return self._with(batch_size=batch_size)

    def limited(self, limit: int | None) -> InputData:
        return self._with(limit=limit)

    def allowing_nonfinite(self, allow: bool = True) -> InputData:
        return self._with(allow_nonfinite=allow)

    def with_batch_axes(self, axes: Mapping[str, int]) -> InputData:
        """Arrays whose samples lie on another axis (an RNN state [layers, N, hidden] has them on axis 1)."""
        return self._with(batch_axes={**self.batch_axes, **{str(k): int(v) for k, v in axes.items()}})

    def split_every(self, k: int) -> tuple[InputData, InputData]:
        """(the rest, every k-th sample): a held-out slice spread over the whole data (sample i is held out when
        i % k == k - 1), taken before batching and limits."""
        if k < 2:
            raise DataError(f"cannot hold out every {k}-th sample", hint="hold out every k-th sample with k >= 2")
        if self._every is not None:
            raise DataError("the data is already split", hint="split the original data once")
        held = None if self.size is None else self.size // k
        return (self._with(every=(k, False), source=f"{self.source} (all but every {k}th sample)",
                           size=None if held is None else self.size - held),
                self._with(every=(k, True), source=f"{self.source} (every {k}th sample, held out)", size=held))

    # --- iteration -----------------------------------------------------------------------------------------
    def _samples(self) -> Iterator[Batch]:
        stream = _normalized(self._chunks(), self.source, self.batch_axes)
        return stream if self._every is None else _every(stream, *self._every)

    def __iter__(self) -> Iterator[Batch]:
        stream = self._samples()
        if self.batch_size is not None:
            stream = _rebatch(stream, self.batch_size)
        return _limit(stream, self.limit)

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(_batch_len(c) for c in _limit(self._samples(), self.limit))
        return self._len

    def keys(self) -> list[str]:
        first = next(iter(self), None)
        return sorted(first) if first is not None else []

    def bind(self, specs: list[InputSpec]) -> BoundData:
        """Check against the model's inputs (eagerly on the first batch, then on every batch). Inputs whose samples
        lie on another axis than 0 are recognised from the model's shapes (see :func:`infer_batch_axes`)."""
        data = self
        raw = next(self._chunks(), None)
        axes = infer_batch_axes(specs, raw) if isinstance(raw, Mapping) else {}
        if axes and any(self.batch_axes.get(k) != v for k, v in axes.items()):
            data = self.with_batch_axes(axes)
        fixed = static_batch(specs)
        if fixed is not None and data.batch_size != fixed:  # a model exported at a fixed batch is fed at that batch
            data = data.batched(fixed)
        bound = BoundData(data, specs)
        bound.check_first()
        return bound

    def __repr__(self) -> str:
        return f"InputData({self.source!r}, batch_size={self.batch_size}, limit={self.limit})"


class BoundData:
    """InputData checked against a model's inputs."""

    def __init__(self, data: InputData, specs: list[InputSpec]):
        self.data = data
        self.specs = list(specs)
        self.input_names = [s.name for s in specs]
        #: 0-d model inputs (a sample rate, a flag) given once in the data: fed with every batch
        self.constants = {s.name: np.asarray(data.metadata[s.name]) for s in specs
                          if s.shape == () and s.name in data.metadata}

    def _model_layout(self, batch: Batch) -> Batch:
        out = dict(batch)
        for name, axis in self.data.batch_axes.items():
            if name in out and 0 < axis < out[name].ndim + 1:
                out[name] = np.moveaxis(out[name], 0, axis)
        out.update(self.constants)
        return out

    def check_first(self) -> None:
        first = next(iter(self.data), None)
        if first is None:
            raise EmptyDataError(f"{self.data.source} contains no samples", hint="give at least one sample")
        check_batch(self._model_layout(first), self.specs, self.data.allow_nonfinite, self.data.source)

    @property
    def extra_keys(self) -> list[str]:
        first = next(iter(self.data))
        return sorted({k for k in first if k not in self.input_names} | set(self.data.metadata))

    def __len__(self) -> int:
        return len(self.data)

    def batches(self) -> Iterator[tuple[Batch, Batch]]:
        """(feeds for the model, extra keys such as labels), every batch checked."""
        for batch in self.data:
            batch = self._model_layout(batch)
            check_batch(batch, self.specs, self.data.allow_nonfinite, self.data.source)
            yield ({n: batch[n] for n in self.input_names}, {k: v for k, v in batch.items() if k not in self.input_names})

    def feeds(self) -> Iterator[Batch]:
        for feeds, _ in self.batches():
            yield feeds

    def __iter__(self) -> Iterator[Batch]:
        return self.feeds()


# --- checking ---------------------------------------------------------------------------------------------------
def check_batch(batch: Batch, specs: list[InputSpec], allow_nonfinite: bool, source: str) -> None:
    symbols: dict[str, tuple[int, str]] = {}
    for spec in specs:
        if spec.name not in batch:
            raise InputMismatchError(
                f"{source} has no data for model input '{spec.name}' (expected {spec.describe()})",
                hint=f"the data has keys {sorted(batch)}; name the array '{spec.name}'",
            )
        arr = batch[spec.name]
        _check_dtype(arr, spec, source)
        _check_shape(arr, spec, source, symbols)
        if not allow_nonfinite and arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.isfinite(arr).sum())
            raise NonFiniteDataError(
                f"input '{spec.name}' in {source} contains {bad} NaN/Inf value(s)",
                hint="clean the data (e.g. np.nan_to_num), or allow it explicitly in Python: "
                     "load_input_data(...).allowing_nonfinite()",
            )


def _check_dtype(arr: np.ndarray, spec: InputSpec, source: str) -> None:
    if arr.dtype != spec.dtype:
        raise InputMismatchError(
            f"input '{spec.name}' in {source}: expected dtype {spec.dtype}, found {arr.dtype} "
            f"(shape {list(arr.shape)})",
            hint=f"convert the array with .astype(np.{spec.dtype})",
        )


def _check_shape(arr: np.ndarray, spec: InputSpec, source: str, symbols: dict[str, tuple[int, str]]) -> None:
    if spec.shape is None:
        return
    found = "x".join(map(str, arr.shape))
    if arr.ndim != len(spec.shape):
        raise InputMismatchError(
            f"input '{spec.name}' in {source}: expected shape {spec.describe()}, found {arr.dtype}[{found}] "
            f"(rank {len(spec.shape)} expected, {arr.ndim} found)",
            hint="samples go on axis 0; reshape the array to the model's rank",
        )
    for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
        if isinstance(want, int) and want != got:
            extra = " (a static batch dim: use --batch-size " + str(want) + ")" if axis == 0 else ""
            raise InputMismatchError(
                f"input '{spec.name}' in {source}: expected shape {spec.describe()}, found {arr.dtype}[{found}]; "
                f"axis {axis} must be {want}{extra}",
                hint="resize or re-export the data to the model's input shape",
            )
        if isinstance(want, str) and axis > 0 and not _anonymous(want):
            if want in symbols and symbols[want][0] != got:
                other_val, other = symbols[want]
                raise InputMismatchError(
                    f"dynamic dim '{want}' is {got} for input '{spec.name}' but {other_val} for '{other}' in {source}",
                    hint="inputs that share a dynamic dimension must agree on its size within a batch",
                )
            symbols.setdefault(want, (got, spec.name))


def _anonymous(dim_param: str) -> bool:
    """Placeholders exporters write for 'unknown' (Paddle's '?', onnx's 'unk__N') do not tie dims together."""
    return dim_param in ("?", "-1") or dim_param.startswith("unk__")


# --- streaming helpers ------------------------------------------------------------------------------------------
def _batch_len(batch: Mapping[str, np.ndarray]) -> int:
    """Samples in a batch: the length of its arrays (0-d arrays are per-batch scalars and carry no samples)."""
    return next((v.shape[0] for v in batch.values() if v.ndim), 0)


def _scalars(batch: Batch) -> dict[str, Any]:
    """The 0-d arrays of a batch (a flag, a sample rate): they go with every sample of it."""
    return {k: v.item() for k, v in batch.items() if v.ndim == 0}


def _take(batch: Batch, index: slice) -> Batch:
    return {k: (v[index] if v.ndim else v) for k, v in batch.items()}


def infer_data_batch_axes(raw: Mapping[str, Any]) -> dict[str, int]:
    """Without a model: when the arrays disagree on axis 0, the sample count is the most common axis-0 length, and
    an array whose axis 0 differs takes as its batch axis the one axis of that length (if exactly one)."""
    arrays = {str(k): np.asarray(v) for k, v in raw.items() if np.ndim(v) > 0}
    lengths = [a.shape[0] for a in arrays.values()]
    if len(set(lengths)) <= 1:
        return {}
    n = max(set(lengths), key=lambda v: (lengths.count(v), v))
    axes = {}
    for name, a in arrays.items():
        hits = [k for k in range(1, a.ndim) if a.shape[k] == n]
        if a.shape[0] != n and len(hits) == 1:
            axes[name] = hits[0]
    return axes


def infer_batch_axes(specs: list[InputSpec], raw: Mapping[str, Any]) -> dict[str, int]:
    """Inputs whose samples lie on another axis than 0: axis 0 static in the model and equal in the data, exactly one
    dynamic axis, and that axis as long as the sample count of the inputs batched on axis 0 (an RNN state
    [layers, N, hidden] next to an input [N, features])."""
    arrays = {str(k): np.asarray(v) for k, v in raw.items()}
    counts = {arrays[s.name].shape[0] for s in specs if s.shape and s.name in arrays and arrays[s.name].ndim
              and not isinstance(s.shape[0], int)}
    if len(counts) != 1:
        return {}
    n = counts.pop()
    axes = {}
    for s in specs:
        a = arrays.get(s.name)
        if a is None or not s.shape or a.ndim != len(s.shape) or not isinstance(s.shape[0], int):
            continue
        dynamic = [k for k, d in enumerate(s.shape) if not isinstance(d, int)]
        if len(dynamic) == 1 and a.shape[0] == s.shape[0] != n and a.shape[dynamic[0]] == n:
            axes[s.name] = dynamic[0]
    return axes


def _normalized(chunks: Iterator[Mapping[str, Any]], source: str,
                batch_axes: Mapping[str, int] | None = None) -> Iterator[Batch]:
    axes = dict(batch_axes or {})
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, Mapping):
            raise DataError(f"{source}: item {i} is a {type(chunk).__name__}, not a dict of arrays",
                            hint="yield dicts such as {'input': array}")
        batch = {str(k): np.asarray(v) for k, v in chunk.items()}
        batch = {k: (np.moveaxis(v, axes[k], 0) if k in axes and v.ndim > axes[k] else v)
                 for k, v in batch.items()}
        sizes = {k: v.shape[0] for k, v in batch.items() if v.ndim}
        if len(set(sizes.values())) > 1:
            raise DataError(f"{source}: item {i} has arrays with different numbers of samples {sizes}",
                            hint="every array needs the same length on axis 0 (samples)")
        if batch and _batch_len(batch) > 0:
            yield batch


def _rebatch(stream: Iterator[Batch], size: int) -> Iterator[Batch]:
    """Batches of ``size`` samples across chunks; chunks whose 0-d values differ are never merged (the batch
    before the change is shorter)."""
    pending: list[Batch] = []
    count = 0
    for batch in stream:
        if pending and _scalars(pending[0]) != _scalars(batch):
            yield _concat(pending)
            pending, count = [], 0
        pending.append(batch)
        count += _batch_len(batch)
        while count >= size:
            merged = _concat(pending)
            yield _take(merged, slice(None, size))
            rest = _take(merged, slice(size, None))
            count -= size
            pending = [rest] if count else []
    if count:
        yield _concat(pending)


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    keys = parts[0].keys()
    for p in parts[1:]:
        if p.keys() != keys:
            raise DataError(f"chunks have different keys: {sorted(keys)} vs {sorted(p.keys())}",
                            hint="every chunk must hold the same arrays")
    return {k: (np.concatenate([p[k] for p in parts], axis=0) if parts[0][k].ndim else parts[0][k]) for k in keys}


def _every(stream: Iterator[Batch], k: int, held: bool) -> Iterator[Batch]:
    """Sample i (counted over the whole stream) is held when i % k == k - 1; keep those (held) or the others."""
    start = 0
    for batch in stream:
        n = _batch_len(batch)
        pick = ((np.arange(start, start + n) % k) == k - 1) == held
        start += n
        if pick.any():
            yield {key: (v[pick] if v.ndim else v) for key, v in batch.items()}


def _limit(stream: Iterator[Batch], limit: int | None) -> Iterator[Batch]:
    if limit is None:
        yield from stream
        return
    left = limit
    for batch in stream:
        n = _batch_len(batch)
        if n >= left:
            yield _take(batch, slice(None, left))
            return
        left -= n
        yield batch


# --- constructors -----------------------------------------------------------------------------------------------
def _read_npz(path: Path, limits: DataLimits) -> dict[str, np.ndarray]:
    """Every array of a .npz, after its headers were checked against ``limits`` (nothing is read before)."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"cannot read {path}: not a valid .npz file (not a zip archive of .npy arrays, or truncated)",
                        hint="write the data with numpy.savez(path, input_name=array, ...)")
    check_arrays(npz_headers(path), limits, str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {e}", hint="give a .npz written by numpy.savez") from e


def from_npz(path: str | os.PathLike, limits: DataLimits | None = None) -> InputData:
    path = Path(path)
    arrays = _read_npz(path, limits or DataLimits())
    metadata = {k: v for k, v in arrays.items() if v.ndim == 0}
    return InputData(lambda: iter([arrays]), source=str(path), metadata=metadata)


def from_dir(path: str | os.PathLike, limits: DataLimits | None = None) -> InputData:
    """A folder of .npz chunks (read one at a time) or of .npy files (one per key); headers checked first."""
    path, limits = Path(path), limits or DataLimits()
    npz = sorted(p for p in path.glob("*.npz") if p.is_file())
    npy = sorted(p for p in path.glob("*.npy") if p.is_file())
    if npz and npy:
        raise DataError(f"{path} mixes .npz and .npy files", hint="use one kind of file per folder")
    if npz:
        samples = 0
        for p in npz:
            if not zipfile.is_zipfile(p):
                raise DataError(f"cannot read {p}: not a valid .npz file", hint="write it with numpy.savez")
            samples += check_arrays(npz_headers(p), limits, str(p))
        limits.check_samples(samples, str(path))
        return InputData(lambda: (_read_npz(p, limits) for p in npz), source=str(path))
    if npy:
        check_arrays([npy_header(p) for p in npy], limits, f"the .npy files in {path}")
        try:
            arrays = {p.stem: np.load(p, allow_pickle=False) for p in npy}
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"cannot read the .npy files in {path}: {e}", hint="write them with numpy.save") from e
        return InputData(lambda: iter([arrays]), source=str(path))
    raise EmptyDataError(f"{path} contains no .npz, .npy or image files",
                         hint="put the data files in the folder (images: .png/.jpg, sub-folders name the classes)")


def from_arrays(arrays: Mapping[str, np.ndarray], source: str = "arrays") -> InputData:
    fixed = {k: np.asarray(v) for k, v in arrays.items()}
    metadata = {k: v for k, v in fixed.items() if v.ndim == 0}  # 0-d: metadata, or a scalar model input
    return InputData(lambda: iter([fixed]), source=source, metadata=metadata)


def from_iterable(obj: Iterable[Mapping[str, Any]] | Callable[[], Iterator], source: str = "python iterable") -> InputData:
    if callable(obj) and not isinstance(obj, Iterable):
        return InputData(obj, source=source)
    if iter(obj) is obj:
        raise DataError(
            "a one-shot iterator/generator was given as input data; calibration iterates it more than once",
            hint="pass a list of feed dicts, or a zero-argument function that returns a new iterator",
        )
    return InputData(lambda: iter(obj), source=source)


def random_data(specs: list[InputSpec], samples: int, *, seed: int, dims: Mapping[str, int] | None = None) -> InputData:
    """Seeded random inputs (standard normal floats, small non-negative ints), only when asked for."""
    dims = dict(dims or {})
    rng = np.random.default_rng(seed)
    arrays = {}
    for s in specs:
        shape = [samples] + [d if isinstance(d, int) else dims.get(str(d), 1) for d in (s.shape or (1,))[1:]]
        if s.dtype.kind == "f":
            arrays[s.name] = rng.standard_normal(shape).astype(s.dtype)
        elif s.dtype.kind in "iu":
            arrays[s.name] = rng.integers(0, 2, size=shape).astype(s.dtype)
        elif s.dtype.kind == "b":
            arrays[s.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise DataError(f"cannot make random data for input '{s.name}' of dtype {s.dtype}",
                            hint="give real data for this input")
    return InputData(lambda: iter([arrays]), source=f"random(seed={seed}, samples={samples})")


def load_input_data(source: Any, config: Any = None, specs: list[InputSpec] | None = None, *,
                    limits: DataLimits | None = None) -> InputData:
    """Dispatch on an InputData, ``random[:N]``, a ``FILE.py[:FUNCTION]`` loader script, a path (.npz file, folder
    of .npz/.npy, folder of images, saved Hugging Face dataset), a CalibrationDataReader, a ``datasets.Dataset``,
    a dict of arrays or a re-iterable of feed dicts (see data.sources). ``config``: the recipe's DataConfig;
    ``specs``: the model's inputs (needed by random data, images and datasets). Files are checked against
    ``limits`` (default :class:`DataLimits`) from their headers before they are read."""
    from onnxcompress.data import sources
    if isinstance(source, InputData):
        return source
    resolved = sources.resolve(source, config, specs)
    if resolved is not None:
        return resolved
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DataError(f"data path not found: {path}", hint="check the path of the .npz file or folder "
                            "(or write random for seeded random inputs)")
        if path.is_dir():
            return from_dir(path, limits)
        if not path.is_file():
            raise DataError(f"{path} is not a regular file (a device, FIFO or socket)",
                            hint="give a .npz file or a folder of .npz/.npy files")
        if path.suffix == ".npy":
            raise DataError(f"{path} is a single .npy file", hint="put it in a folder named after the input, "
                            "or save a .npz with np.savez(path, **{'input_name': array})")
        return from_npz(path, limits)
    if isinstance(source, Mapping):
        return from_arrays(source)
    return from_iterable(source)
