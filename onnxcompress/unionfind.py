"""Union-find over hashable keys, with a deterministic root (the smallest key of each set).

Shared by the quantizer (tensors that share one scale) and the pruner (channel positions that shrink together).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np


class UnionFind:
    def __init__(self):
        self.parent: dict[Hashable, Hashable] = {}

    def __len__(self) -> int:
        return len(self.parent)

    def add(self, key: Hashable) -> None:
        self.parent.setdefault(key, key)

    def add_all(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self.parent.setdefault(key, key)

    def find(self, key: Hashable) -> Hashable:
        self.add(key)
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # deterministic root

    def members(self) -> dict[Hashable, list[Hashable]]:
        """root -> sorted members, for every set."""
        out: dict[Hashable, list[Hashable]] = {}
        for key in sorted(self.parent):
            out.setdefault(self.find(key), []).append(key)
        return out


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` elements joined by the edges ``a[i] -- b[i]``, vectorized (root hooking and
    pointer jumping): every element's label is the smallest element of its component, the same deterministic
    root :class:`UnionFind` picks."""
    labels = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while True:
        ra, rb = labels[a], labels[b]
        differ = ra != rb
        if not differ.any():
            return labels
        ra, rb = ra[differ], rb[differ]
        low = np.minimum(ra, rb)
        np.minimum.at(labels, ra, low)  # hook each root onto the smaller root across the edge
        np.minimum.at(labels, rb, low)
        while True:  # pointer jumping until every element points at its root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
