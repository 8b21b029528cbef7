"""Hugging Face ``datasets`` as input data (the ``hf`` extra). Nothing here imports ``datasets`` unless a saved
dataset folder is loaded; an in-memory ``datasets.Dataset`` is used through its public methods only.

Columns named like model inputs feed them; a column of PIL images feeds the model's image input through the
``[data.image]`` preprocessing; ``label``/``labels`` become ``labels``; other columns are kept as extra keys when
they are arrays or strings. Data is read in chunks (``Dataset.iter``), never all at once; no network is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from onnxcompress.data.config import DataConfig
from onnxcompress.data.inputs import InputData, InputSpec
from onnxcompress.errors import DataError

CHUNK = 64


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk``."""
    return path.is_dir() and (path / "dataset_info.json").is_file() and (path / "state.json").is_file()


def is_dataset(obj: Any) -> bool:
    """Duck-typed: a ``datasets.Dataset`` (column names, a length and chunked iteration)."""
    return hasattr(obj, "column_names") and callable(getattr(obj, "iter", None)) and hasattr(obj, "__len__")


def load_saved(path: Path) -> Any:
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"{path} is a saved Hugging Face dataset, but the 'datasets' package is not installed",
                        hint="pip install 'onnxcompress[hf]'") from e
    return datasets.load_from_disk(str(path))


def _is_pil(value: Any) -> bool:
    return hasattr(value, "convert") and hasattr(value, "size") and hasattr(value, "mode")


def _image_column(ds: Any) -> str | None:
    first = ds[0] if len(ds) else {}
    cols = [c for c in ds.column_names if _is_pil(first.get(c))]
    return cols[0] if cols else None


def from_dataset(ds: Any, specs: list[InputSpec], config: DataConfig | None = None, source: str | None = None
                 ) -> InputData:
    """A ``datasets.Dataset`` as InputData for a model with inputs ``specs``."""
    from onnxcompress.data.images import load_image, resolve_image

    config = config or DataConfig()
    label = source or f"datasets.Dataset({len(ds)} rows)"
    names = {s.name for s in specs}
    image_col = _image_column(ds)
    resolved = resolve_image(specs, config.image, label) if image_col is not None else None
    if resolved is None and not names & set(ds.column_names):
        raise DataError(f"{label} has no column named like a model input ({sorted(names)}); columns: "
                        f"{ds.column_names}", hint="rename the columns (Dataset.rename_column) to the input names")

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        for rows in ds.iter(batch_size=CHUNK):
            batch: dict[str, np.ndarray] = {}
            for col, values in rows.items():
                if col == image_col and resolved is not None:
                    batch[resolved.input] = np.stack([_pil_sample(v, resolved, load_image) for v in values])
                    continue
                key = "labels" if col == "label" and "labels" not in rows else col
                arr = np.asarray(values)
                if arr.dtype != object:
                    batch[key] = arr
            yield batch

    return InputData(chunks, source=label, size=len(ds))


def _pil_sample(img: Any, resolved: Any, load_image: Any) -> np.ndarray:
    """Preprocess a PIL image with the image-folder code path (via an in-memory PNG: one decoder, one result)."""
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    buf.seek(0)
    return load_image(buf, resolved)
