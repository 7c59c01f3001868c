"""Augmentation operations against plain numpy references."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jhash.data import augment as A


def _image(h=12, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pad_crop_loops(x, pad, top, left):
    """Reference from the definition: output pixel (i, j) is input (i + top - pad, j + left - pad) or 0."""
    H, W, _ = x.shape
    out = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            si, sj = i + top - pad, j + left - pad
            if 0 <= si < H and 0 <= sj < W:
                out[i, j] = x[si, sj]
    return out


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 4), data=st.data())
def test_pad_crop_and_its_in_place_form_match_the_definition(h, w, pad, data):
    x = _image(h, w, seed=h * 10 + w)
    top = data.draw(st.integers(0, 2 * pad))
    left = data.draw(st.integers(0, 2 * pad))
    flip = data.draw(st.booleans())
    ref = _pad_crop_loops(x[:, ::-1] if flip else x, pad, top, left)
    np.testing.assert_array_equal(A.pad_crop(A.hflip(x) if flip else x, pad, top, left), ref)
    into = np.full_like(x, 7)  # a stale row of a batch: every value is overwritten
    A.pad_crop(A.hflip(x) if flip else x, pad, top, left, out=into)
    np.testing.assert_array_equal(into, ref)


def test_hflip_matches_numpy():
    x = _image()
    np.testing.assert_array_equal(A.hflip(x), np.fliplr(x))
    np.testing.assert_array_equal(A.hflip(A.hflip(x)), x)


@pytest.mark.parametrize("pad", [1, 3])
def test_pad_crop_matches_pad_then_slice(pad):
    x = _image(7, 5)
    ref_padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            got = A.pad_crop(x, pad, top, left)
            np.testing.assert_array_equal(got, ref_padded[top: top + 7, left: left + 5])
    np.testing.assert_array_equal(A.pad_crop(x, pad, pad, pad), x)  # centred crop is the identity
    np.testing.assert_array_equal(A.pad_crop(x, 0, 0, 0), x)
    with pytest.raises(ValueError, match="outside"):
        A.pad_crop(x, pad, 2 * pad + 1, 0)


def test_normalize_matches_formula():
    x = np.random.default_rng(1).integers(0, 256, (2, 6, 4, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ref = (x.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    got = A.normalize(x, mean, std)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_erase_box_bounds_area_and_aspect():
    rng = np.random.default_rng(0)
    H, W = 64, 32
    area, aspect = (0.02, 0.4), (0.3, 1 / 0.3)
    n = 0
    for _ in range(500):
        box = A.erase_box(rng, H, W, area, aspect)
        if box is None:
            continue
        n += 1
        top, left, h, w = box
        assert 0 <= top and top + h <= H and 0 <= left and left + w <= W and h > 0 and w > 0
        # Rounding h and w moves area and aspect a little past the nominal bounds.
        assert area[0] * 0.7 <= h * w / (H * W) <= area[1] * 1.3
        assert aspect[0] * 0.7 <= h / w <= aspect[1] * 1.3
    assert n == 500
    assert A.erase_box(rng, 4, 4, (0.99, 1.0), (1.0, 1.0)) is None  # nothing fits strictly inside


def test_erase_fills_exactly_the_box():
    x = np.ones((10, 6, 3), np.float32)
    A.erase(x, (2, 1, 3, 4), 0.0)
    ref = np.ones((10, 6, 3), np.float32)
    ref[2:5, 1:5] = 0
    np.testing.assert_array_equal(x, ref)
    np.testing.assert_array_equal(A.erase(ref.copy(), None), ref)


def test_train_batch_composes_the_operations_in_order():
    cfg = A.AugmentConfig(flip_prob=0.5, pad=2, erase_prob=0.5)
    images = [_image(8, 4, s) for s in range(6)]
    params = A.sample_params(np.random.default_rng(5), 6, (8, 4), cfg)
    got = A.train_batch(images, params, cfg)
    for i, im in enumerate(images):
        ref = np.fliplr(im) if params.flip[i] else im
        ref = np.pad(ref, ((2, 2), (2, 2), (0, 0)))[params.crop[i][0]: params.crop[i][0] + 8,
                                                      params.crop[i][1]: params.crop[i][1] + 4]
        ref = A.normalize(ref, cfg.mean, cfg.std)
        if params.boxes[i] is not None:
            t, l, h, w = params.boxes[i]
            ref[t: t + h, l: l + w] = 0.0  # the mean, after normalisation
        np.testing.assert_allclose(got[i], ref, rtol=1e-6)
    # Same generator seed -> same choices; no augmentation -> the evaluation transform.
    again = A.sample_params(np.random.default_rng(5), 6, (8, 4), cfg)
    assert np.array_equal(again.flip, params.flip) and np.array_equal(again.crop, params.crop)
    assert again.boxes == params.boxes
    none = A.AugmentConfig.none()
    plain = A.train_batch(images, A.sample_params(np.random.default_rng(0), 6, (8, 4), none), none)
    np.testing.assert_array_equal(plain, A.eval_batch(images))


def test_random_erase_fill():
    cfg = A.AugmentConfig(flip_prob=0, pad=0, erase_prob=1.0, erase_fill="random")
    images = [np.full((16, 8, 3), 200, np.uint8)] * 4
    params = A.sample_params(np.random.default_rng(2), 4, (16, 8), cfg)
    out = A.train_batch(images, params, cfg)
    plain = A.normalize(images[0])
    for i, box in enumerate(params.boxes):
        inside = _mask(16, 8, box)
        assert out[i][inside].std() > 0.3  # N(0, 1) noise inside the box ...
        np.testing.assert_array_equal(out[i][~inside], plain[~inside])  # ... the image elsewhere


def _mask(h, w, box):
    m = np.zeros((h, w), bool)
    t, l, bh, bw = box
    m[t: t + bh, l: l + bw] = True
    return m


def test_decode_resizes_and_names_bad_records():
    im = _image(32, 16)
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    np.testing.assert_array_equal(A.decode(buf.getvalue()), im)
    assert A.decode(buf.getvalue(), (16, 8)).shape == (16, 8, 3)
    jpg = io.BytesIO()
    Image.fromarray(_image(256, 128)).save(jpg, format="JPEG")
    assert A.decode(jpg.getvalue(), (64, 32)).shape == (64, 32, 3)  # reduced-scale JPEG decoding
    from jhash.data.common import CorruptImageError

    with pytest.raises(CorruptImageError, match="bounding_box_train/0002_c1s1_000451_03.jpg"):
        A.decode(b"not an image", (16, 8), where="bounding_box_train/0002_c1s1_000451_03.jpg")


def test_augment_config_validation():
    assert A.AugmentConfig.from_any(None) == A.AugmentConfig()
    assert A.AugmentConfig.from_any({"pad": 0, "erase_area": [0.1, 0.2]}).erase_area == (0.1, 0.2)
    with pytest.raises(ValueError, match="unknown augmentation option"):
        A.AugmentConfig.from_any({"flip": 0.5})
    with pytest.raises(ValueError, match="erase_fill"):
        A.AugmentConfig(erase_fill="zeros")
    with pytest.raises(ValueError, match="probabilities"):
        A.AugmentConfig(flip_prob=2)
