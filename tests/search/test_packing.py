"""pack_codes / unpack_codes / as_words against references written from the np.packbits definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash.search import as_words, pack_codes, unpack_codes


def ref_pack(bits):
    """Bit j of a code -> byte j // 8, value 2**(7 - j % 8) (big-endian bit order); unused low bits of the
    last byte stay 0."""
    n, L = bits.shape
    out = np.zeros((n, -(-L // 8)), np.uint8)
    for i in range(n):
        for j in range(L):
            if bits[i, j]:
                out[i, j // 8] |= 1 << (7 - j % 8)
    return out


def test_pack_matches_definition_for_every_input_kind():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (5, 24)).astype(np.uint8)
    want = ref_pack(bits)
    kinds = {
        "01": bits.astype(np.int32),
        "bool": bits.astype(bool),
        "pm1": (2 * bits.astype(np.int8) - 1),
        "real": np.where(bits, rng.random((5, 24)) + 0.1, -rng.random((5, 24))).astype(np.float32),
        "jax": jnp.asarray(bits),
    }
    for name, x in kinds.items():
        got = pack_codes(x)
        assert isinstance(got, jax.Array) and got.dtype == jnp.uint8 and got.shape == (5, 3), name
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=name)


def test_zero_real_value_packs_to_zero_bit():
    np.testing.assert_array_equal(np.asarray(pack_codes(np.array([[0.0, -0.0, 1e-30, -1] + [0] * 4]))),
                                  [[0b00100000]])


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([0, 3]), nbytes=st.sampled_from([1, 5]), seed=st.integers(0, 2**31 - 1))
def test_round_trip(n, nbytes, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (n, 8 * nbytes)).astype(np.uint8)
    packed = pack_codes(bits)
    np.testing.assert_array_equal(np.asarray(packed), np.packbits(bits, axis=1))
    np.testing.assert_array_equal(np.asarray(unpack_codes(packed)), bits)
    signed = unpack_codes(packed, signed=True)
    assert signed.dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(signed), 2 * bits.astype(np.int8) - 1)
    np.testing.assert_array_equal(np.asarray(pack_codes(signed)), np.asarray(packed))


def test_pack_works_under_jit():
    bits = np.random.default_rng(1).integers(0, 2, (3, 16))
    np.testing.assert_array_equal(np.asarray(jax.jit(pack_codes)(bits)), ref_pack(bits))


@pytest.mark.parametrize("nbytes", [1, 3, 4, 5, 32])
def test_as_words_pads_with_zero_bytes_and_keeps_popcount(nbytes):
    packed = np.random.default_rng(nbytes).integers(0, 256, (4, nbytes), dtype=np.uint8)
    words = as_words(jnp.asarray(packed))
    assert words.dtype == jnp.uint32 and words.shape == (4, -(-nbytes // 4))
    want = np.array([sum(bin(b).count("1") for b in row) for row in packed])
    got = np.asarray(jax.lax.population_count(words).astype(jnp.int32).sum(1))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("L", [1, 7, 12, 13, 33, 100])
def test_any_length_packs_with_zero_padding_and_round_trips(L):
    bits = np.random.default_rng(L).integers(0, 2, (6, L)).astype(np.uint8)
    packed = np.asarray(pack_codes(bits))
    assert packed.shape == (6, -(-L // 8))
    np.testing.assert_array_equal(packed, ref_pack(bits))
    pad = 8 * packed.shape[1] - L
    assert not np.any(packed[:, -1] & ((1 << pad) - 1))  # the padding bits are all zero
    np.testing.assert_array_equal(np.asarray(unpack_codes(packed, bits=L)), bits)
    np.testing.assert_array_equal(np.asarray(unpack_codes(packed))[:, L:], 0)


def test_unpack_bits_must_fit_the_bytes():
    packed = np.zeros((1, 2), np.uint8)
    for bad in (8, 17, True, 12.0):
        with pytest.raises(ValueError, match=r"bits=.*2 bytes.*\[9, 16\]"):
            unpack_codes(packed, bits=bad)


def test_pack_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"x must be codes of rank 2"):
        pack_codes(np.zeros(16))
    with pytest.raises(ValueError, match=r"NaN"):
        pack_codes(np.array([[np.nan] + [1.0] * 7]))
    with pytest.raises(ValueError, match=r"NaN"):
        pack_codes(jnp.array([[np.nan] + [1.0] * 7]))
    with pytest.raises(ValueError, match=r"dtype"):
        pack_codes(np.zeros((1, 8), np.complex64))
    with pytest.raises(ValueError, match=r"L=0"):
        pack_codes(np.zeros((1, 0)))


def test_unpack_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"packed must have dtype uint8"):
        unpack_codes(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"packed must be packed codes of rank 2"):
        unpack_codes(np.zeros(4, np.uint8))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), nbytes=st.integers(1, 40))
def test_host_words_equal_as_words_and_keep_hamming_distances(seed, nbytes):
    from jhash.search.packing import host_words

    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, size=(5, nbytes), dtype=np.uint8)
    np.testing.assert_array_equal(host_words(packed), np.asarray(as_words(jnp.asarray(packed))))
    w64 = host_words(packed, np.uint64)
    assert w64.shape == (5, -(-nbytes // 8))
    bits = np.unpackbits(packed, axis=1)
    for i in range(5):
        for j in range(5):
            expected = int(np.sum(bits[i] != bits[j]))
            assert int(np.bitwise_count(w64[i] ^ w64[j]).sum()) == expected
