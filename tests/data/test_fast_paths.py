"""The loader's fast paths give exactly what the plain ones give: records parsed from their stored bytes equal
TFDS's reading, and the batch-at-once geometric augmentation of decoded (Pillow) images equals the definition."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jhash import data
from jhash.data import augment as A
from jhash.data import pipeline as P
from jhash.data import synthetic as S

SIZE = (32, 16)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    return {split: data.load("synthetic_reid", split, data_dir=d, config="tiny", progress=False)
            for split in ("train", "query", "gallery")}


def _equal_records(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert type(a[k]) is type(b[k]), k
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_parsed_records_equal_tfds_records(prepared):
    for split, (source, _) in prepared.items():
        assert isinstance(source._reader, data.RecordParser), split
        tfds_source = source._source
        n = len(source)
        for i in range(n):
            _equal_records(source[i], tfds_source[i])
        some = [n - 1, 0, n // 2, 0]
        for a, b in zip(source.__getitems__(some), tfds_source.__getitems__(some)):
            _equal_records(a, b)
        plain = data.ReidSource(tfds_source, split=split, fast=False)
        assert plain._reader is tfds_source
        _equal_records(plain[n // 2], source[n // 2])


def test_other_sources_keep_their_own_reading(prepared):
    assert data.RecordParser.for_source(S.SyntheticSource("train", "tiny")) is None  # not a TFDS source

    class WithDecoders:  # TFDS applies per-feature decoders that the parser does not know
        def __init__(self, source):
            self._s = source

        def __getattr__(self, name):
            return {"decoders": {"image": object()}}.get(name, getattr(self._s, name))

        def __len__(self):
            return len(self._s)

        def __getitem__(self, i):
            return self._s[i]

    assert data.RecordParser.for_source(WithDecoders(prepared["train"][0]._source)) is None


def test_workers_read_a_prepared_source_like_the_parent(prepared):
    """The parser travels to the worker processes with the source: uint8 batches equal the in-process ones."""
    source, info = prepared["train"]

    def batches(workers):
        it = P.train_loader(source, info, batch_p=4, batch_k=2, image_size=SIZE, seed=1, num_workers=workers)
        it.send_uint8()
        try:
            return [next(it) for _ in range(4)]
        finally:
            it.close()

    for a, b in zip(batches(0), batches(2)):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _reference(image: np.ndarray, flip: bool, crop, pad: int) -> np.ndarray:
    """From the definition, pixel by pixel: mirror, zero-pad by ``pad``, take the window at ``crop``."""
    h, w, _ = image.shape
    src = image[:, ::-1] if flip else image
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            si, sj = i + crop[0] - pad, j + crop[1] - pad
            if 0 <= si < h and 0 <= sj < w:
                out[i, j] = src[si, sj]
    return out


@pytest.mark.parametrize("pad", [0, 3])
def test_geometric_batch_of_pillow_images_matches_the_definition(pad):
    rng = np.random.default_rng(pad)
    arrays = [rng.integers(0, 256, (12, 7, 3), dtype=np.uint8) for _ in range(10)]
    cfg = A.AugmentConfig(flip_prob=0.5, pad=pad)
    params = A.sample_params(np.random.default_rng(7), len(arrays), (12, 7), cfg)
    assert params.flip.any() and not params.flip.all()
    ref = np.stack([_reference(x, f, c, pad) for x, f, c in zip(arrays, params.flip, params.crop)])
    pil = [Image.fromarray(x) for x in arrays]
    np.testing.assert_array_equal(A.geometric_batch(pil, params, cfg), ref)
    np.testing.assert_array_equal(A.geometric_batch(arrays, params, cfg), ref)
    out = np.full(ref.shape, 9, np.uint8)  # a reused buffer: every value is overwritten
    images, boxes = A.train_batch_uint8(pil, params, cfg, out=out)
    assert images is out
    np.testing.assert_array_equal(out, ref)
    assert boxes.shape == (10, 4) and boxes.dtype == np.int32


def test_geometric_batch_refuses_mixed_sizes():
    cfg = A.AugmentConfig.none()
    images = [Image.new("RGB", (4, 8)), Image.new("RGB", (4, 9))]
    with pytest.raises(ValueError, match=r"image 1 has shape \(9, 4, 3\), image 0 \(8, 4, 3\)"):
        A.geometric_batch(images, A.sample_params(np.random.default_rng(0), 2, (8, 4), cfg), cfg)
