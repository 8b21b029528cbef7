"""The vectorized components agree with the union-find (same sets, same smallest-element roots)."""

import numpy as np

from onnxcompress.unionfind import UnionFind, components


def test_components_match_union_find_on_random_graphs():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, m = int(rng.integers(1, 200)), int(rng.integers(0, 300))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        uf = UnionFind()
        uf.add_all(range(n))
        for x, y in zip(a.tolist(), b.tolist()):
            uf.union(x, y)
        np.testing.assert_array_equal(components(n, a, b), [uf.find(i) for i in range(n)])


def test_long_chain_and_no_edges():
    n = 10_000
    chain = np.arange(n - 1)
    assert (components(n, chain[::-1], chain[::-1] + 1) == 0).all()
    np.testing.assert_array_equal(components(5, np.zeros(0, np.int64), np.zeros(0, np.int64)), np.arange(5))
