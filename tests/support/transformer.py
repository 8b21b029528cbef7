"""The tiny BERT fixture (models/tiny_bert.onnx, built by models/build_tiny_bert.py) and seeded token data for it:
random ids, lengths 4..16 padded to 16 (attention mask 0 on the padding), token types 0."""

from __future__ import annotations

import numpy as np

from support.common import ROOT

TINY_BERT = ROOT / "models" / "tiny_bert.onnx"
VOCAB, SEQ = 96, 16


def tokens(n: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype(np.int64)
    lengths = rng.integers(4, SEQ + 1, n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros((n, SEQ), np.int64)}


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).mean())
