"""Metrics for labels that are not class indices: strings (OCR transcripts) and index sequences.

A *decoder* turns a model's per-timestep class scores into a sequence: ``ctc_greedy`` takes the best class per
timestep, merges repeats and drops the blank (CTC). With a charset (the characters of the non-blank classes, in
class order) the sequence becomes a string, compared with string labels; without one it stays a tuple of class
indices, compared with integer sequence labels (rows padded with negative values). Metrics: ``cer`` (character
error rate: total edit distance / total label length, lower is better) and ``exact_match`` (fraction of samples
decoded exactly). Scores are [N, T, C] (batch first) or [T, N, C] with ``time_major``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcompress.errors import DataError

TEXT_METRICS = ("cer", "exact_match")
LOWER_IS_BETTER = ("cer",)
DECODERS = ("ctc_greedy",)


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def read_charset(path: str | Path) -> str:
    """Characters one per line (PaddleOCR's dictionary format); a line holding one space is the space."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the charset {path}: {e}", hint="give a UTF-8 file, one character per line") from e
    if lines and lines[-1] == "":
        lines.pop()
    bad = [ln for ln in lines if len(ln) != 1]
    if bad:
        raise DataError(f"{path}: every line must hold one character; found {bad[:3]}",
                        hint="one character per line (a line with one space for the space)")
    return "".join(lines)


@dataclass(frozen=True)
class CTCGreedy:
    """Best path decoding. ``charset``: characters of the non-blank classes in class order (None: indices)."""

    blank: int = 0
    charset: str | None = None
    time_major: bool = False

    def decode(self, scores: np.ndarray) -> list[str] | list[tuple[int, ...]]:
        s = np.asarray(scores)
        if s.ndim != 3:
            raise DataError(f"ctc_greedy needs per-timestep class scores [N, T, C], got shape {list(s.shape)}",
                            hint="set [validate] output to the model's sequence-scores output")
        if self.time_major:
            s = s.transpose(1, 0, 2)
        best = s.argmax(axis=2)
        classes = s.shape[2]
        blank = self.blank % classes
        if self.charset is not None and len(self.charset) != classes - 1:
            raise DataError(f"the charset has {len(self.charset)} characters but the output has {classes} classes "
                            f"({classes - 1} besides the blank)", hint="give the charset the model was trained with")
        out: list = []
        for row in best:
            keep = [int(k) for i, k in enumerate(row) if k != blank and (i == 0 or k != row[i - 1])]
            if self.charset is None:
                out.append(tuple(keep))
            else:
                out.append("".join(self.charset[k - 1 if k > blank else k] for k in keep))
        return out


def label_sequences(labels: np.ndarray) -> list[str] | list[tuple[int, ...]]:
    """String labels as strings; integer [N, L] labels as index tuples without their negative padding."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "US":
        return [str(v) for v in arr.reshape(-1)]
    if arr.dtype.kind == "O":
        return [str(v) for v in arr.reshape(-1)]
    if arr.dtype.kind in "iu" and arr.ndim == 2:
        return [tuple(int(v) for v in row if v >= 0) for row in arr]
    raise DataError(f"labels of dtype {arr.dtype} and shape {list(arr.shape)} are neither strings nor sequences",
                    hint="give one string per sample, or integer sequences padded with -1")


def describe_labels(labels: np.ndarray) -> str:
    arr = np.asarray(labels)
    return "strings" if arr.dtype.kind in "USO" else f"{arr.dtype}{list(arr.shape[1:])} sequences"


@dataclass
class TextAccumulator:
    """CER and exact match of one model's decoded outputs against sequence labels, over batches."""

    decoder: CTCGreedy
    samples: int = 0
    exact: int = 0
    errors: int = 0
    length: int = 0

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        hyp, ref = self.decoder.decode(scores), label_sequences(labels)
        if len(hyp) != len(ref):
            raise DataError(f"{len(ref)} labels for {len(hyp)} decoded samples",
                            hint="one label per sample (and time_major set right for [T, N, C] outputs)")
        if self.decoder.charset is None and ref and isinstance(ref[0], str):
            raise DataError("string labels need a charset to decode the model's classes into characters",
                            hint="give --charset FILE (one character per line) or [validate] charset")
        for h, r in zip(hyp, ref):
            self.samples += 1
            self.exact += h == r
            self.errors += edit_distance(h, r)
            self.length += len(r)

    def result(self, metrics: Sequence[str]) -> dict[str, float]:
        out = {}
        if "cer" in metrics:
            out["cer"] = self.errors / max(self.length, 1)
        if "exact_match" in metrics:
            out["exact_match"] = self.exact / max(self.samples, 1)
        return out
