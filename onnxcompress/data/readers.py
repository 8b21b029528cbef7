"""onnxruntime ``CalibrationDataReader`` objects (``get_next() -> dict | None``) as re-iterable InputData.

A reader is one-shot: ``get_next`` returns feed dicts until it returns None. Calibration and validation iterate
their data more than once, so a reader is made re-iterable in one of two documented ways:

* a **factory** (a class, or a zero-argument function, that returns a new reader): every iteration creates a
  fresh reader; nothing is cached (use this for large data);
* a reader **instance**: its feed dicts are cached in memory as they are first read, up to ``max_bytes``
  (default 1 GiB); later iterations replay the cache. A reader that yields more than that is an error whose hint
  says to pass a factory instead. The cache is filled lazily, so a partly read reader is continued, not restarted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from onnxcompress.data.inputs import InputData
from onnxcompress.errors import DataError

MAX_CACHE_BYTES = 1 << 30


def is_reader(obj: Any) -> bool:
    """An object with onnxruntime's reader method ``get_next``."""
    return callable(getattr(obj, "get_next", None))


def is_reader_factory(obj: Any) -> bool:
    """A reader class (a subclass with ``get_next``) or a function marked as a factory by :func:`from_reader`."""
    return inspect.isclass(obj) and callable(getattr(obj, "get_next", None))


def _drain(reader: Any, source: str) -> Iterator[Mapping[str, Any]]:
    while True:
        item = reader.get_next()
        if item is None:
            return
        if not isinstance(item, Mapping):
            raise DataError(f"{source}: get_next() returned a {type(item).__name__}, not a dict of arrays or None",
                            hint="return {input_name: array} per batch and None at the end")
        yield item


class _ReplayCache:
    """Feed dicts read from a one-shot reader, kept (bounded) so that every iteration sees all of them."""

    def __init__(self, reader: Any, source: str, max_bytes: int):
        self.reader, self.source, self.max_bytes = reader, source, max_bytes
        self.items: list[dict[str, np.ndarray]] = []
        self.bytes = 0
        self.exhausted = False
        self._live = _drain(reader, source)

    def _pull(self) -> bool:
        item = next(self._live, None)
        if item is None:
            self.exhausted = True
            return False
        arrays = {str(k): np.array(v) for k, v in item.items()}  # a copy: a reader may reuse its buffers
        self.bytes += sum(a.nbytes for a in arrays.values())
        if self.bytes > self.max_bytes:
            raise DataError(f"{self.source} holds more than {self.max_bytes / 2**20:.0f} MiB; a reader instance is "
                            "cached in memory so it can be read more than once",
                            hint="pass the reader's class or a function that creates a new reader instead")
        self.items.append(arrays)
        return True

    def __call__(self) -> Iterator[dict[str, np.ndarray]]:
        i = 0
        while True:
            if i < len(self.items):
                yield self.items[i]
                i += 1
            elif self.exhausted or not self._pull():
                return


def from_reader(reader: Any, *, factory: bool | None = None, max_bytes: int = MAX_CACHE_BYTES,
                source: str | None = None) -> InputData:
    """A CalibrationDataReader (instance: cached; class or ``factory=True`` callable: re-created) as InputData."""
    make: Callable[[], Any] | None = None
    if factory or (factory is None and is_reader_factory(reader)):
        if not callable(reader):
            raise DataError("a reader factory must be callable", hint="pass the reader class or a function")
        make = reader
        name = getattr(reader, "__name__", type(reader).__name__)
    elif is_reader(reader):
        name = type(reader).__name__
    else:
        raise DataError(f"{type(reader).__name__} is not a CalibrationDataReader (it has no get_next method)",
                        hint="give an object whose get_next() returns feed dicts, then None")
    label = source or f"CalibrationDataReader {name}"
    if make is not None:
        return InputData(lambda: _drain(make(), label), source=label + " (re-created per pass)")
    return InputData(_ReplayCache(reader, label, max_bytes), source=label + " (cached in memory)")
