"""What kind of labels a data set carries: class indices (top-1 and friends) or something else (strings such as
OCR transcripts, index sequences), which only metrics that accept them use."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_class_labels(labels: Any) -> bool:
    """One integer class index per sample ([N] or [N, 1] integers)."""
    arr = np.asarray(labels)
    return arr.dtype.kind in "iub" and (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1))


def has_class_labels(data: Any, key: str = "labels") -> bool:
    """Whether ``data`` (an InputData) has class-index labels under ``key`` (read from its first batch)."""
    first = next(iter(data), None)
    return first is not None and key in first and is_class_labels(first[key])
