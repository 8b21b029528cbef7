"""Pure numerics of weight compression: bit packing round trips, block-wise RTN bounds, GPTQ on a known Hessian."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.quantization.blockwise import rtn, weight_sqnr_db
from onnxcompress.quantization.codebook import kmeans_codebook, ternary
from onnxcompress.quantization.gptq import gptq
from onnxcompress.quantization.packing import pack_bits, packed_length, storage_bits, unpack_bits


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, (5, 37))
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (5, packed_length(37, bits))
    np.testing.assert_array_equal(unpack_bits(packed, bits, 37), codes)
    if bits == 4:  # MatMulNBits' layout: the first code in the low nibble
        assert packed[0, 0] == codes[0, 0] | (codes[0, 1] << 4)
    with pytest.raises(ValueError):
        pack_bits(codes + (1 << bits), bits)
    assert storage_bits(3) == 4 and storage_bits(5) == 8


@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_error_is_within_half_a_step_and_padding_is_exact(symmetric):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((70, 9)).astype(np.float32)  # 70 rows: the last block of 32 is short
    bq = rtn(w, 4, 32, symmetric)
    assert bq.codes.shape == (96, 9) and bq.scales.shape == (3, 9) and bq.codes.max() <= 15
    deq = bq.dequantize()
    step = np.repeat(bq.scales, 32, axis=0)[:70]
    assert (np.abs(deq - w) <= step / 2 + 1e-6).all()
    padded = (bq.codes[70:].astype(int) - bq.zeros[-1][None, :]) * bq.scales[-1][None, :]
    assert not padded.any(), "padding rows dequantize to exactly 0"
    if symmetric:
        assert (bq.zeros == 8).all()


def test_gptq_equals_rtn_with_an_identity_hessian_and_beats_it_otherwise():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 16))
    same = gptq(w, np.eye(64), 4, 16, damp=1e-9)
    np.testing.assert_array_equal(same.codes, rtn(w, 4, 16).codes)
    x = rng.standard_normal((2000, 64)) @ (rng.standard_normal((64, 64)) * rng.random(64) ** 3)
    h = x.T @ x
    assert weight_sqnr_db(w, gptq(w, h, 4, 16).dequantize(), h) > weight_sqnr_db(w, rtn(w, 4, 16).dequantize(), h)


def test_kmeans_and_ternary_rows():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 500))
    idx, book = kmeans_codebook(w, np.ones_like(w), 3)
    assert idx.shape == w.shape and book.shape == (3, 8) and idx.max() < 8
    assert np.all(np.diff(book, axis=1) >= 0), "sorted centroids"
    t_idx, t_book = ternary(w, np.ones_like(w))
    assert set(np.unique(t_idx)) <= {0, 1, 2} and np.allclose(t_book[:, 0], -t_book[:, 2]) and not t_book[:, 1].any()
