"""Image decoding and augmentation for ReID training, in numpy and Pillow (no TensorFlow, no JAX).

The training transform follows the usual ReID recipe (torchreid / fast-reid "bag of tricks"):
resize to (H, W) -> random horizontal flip -> zero-pad by ``pad`` pixels and crop a random (H, W)
window -> mean/std normalisation -> random erasing (Zhong et al., 2020) filled with the mean (0 after
normalisation) or with N(0, 1) noise. Evaluation only resizes and normalises.

Every random choice of a batch is drawn from one :class:`numpy.random.Generator` by
:func:`sample_params`, so a batch's augmentation is a pure function of the generator's seed; the
pipeline seeds it with ``(seed, step)`` which makes training batches independent of the number of
workers. The individual operations are plain functions of an image and explicit parameters, tested
against numpy references.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Sequence

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. ``AugmentConfig.none()`` disables every random operation."""

    flip_prob: float = 0.5
    pad: int = 10  # pixels of zero padding on each side before the random crop (0: no crop)
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)  # fraction of the image area
    erase_aspect: tuple[float, float] = (0.3, 1 / 0.3)  # height / width
    erase_fill: str = "mean"  # 'mean' (0 after normalisation) or 'random' (N(0, 1) per pixel)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if not 0 <= self.flip_prob <= 1 or not 0 <= self.erase_prob <= 1:
            raise ValueError(f"probabilities must be in [0, 1]: flip_prob={self.flip_prob}, "
                             f"erase_prob={self.erase_prob}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if self.erase_fill not in ("mean", "random"):
            raise ValueError(f"erase_fill must be 'mean' or 'random', got {self.erase_fill!r}")
        if not 0 < self.erase_area[0] <= self.erase_area[1] <= 1:
            raise ValueError(f"erase_area must satisfy 0 < lo <= hi <= 1, got {self.erase_area}")
        if not 0 < self.erase_aspect[0] <= self.erase_aspect[1]:
            raise ValueError(f"erase_aspect must satisfy 0 < lo <= hi, got {self.erase_aspect}")

    @classmethod
    def none(cls, **kw) -> "AugmentConfig":
        return cls(flip_prob=0.0, pad=0, erase_prob=0.0, **kw)

    @classmethod
    def from_any(cls, cfg) -> "AugmentConfig":
        """An AugmentConfig from None (defaults), an AugmentConfig, or a mapping of its fields."""
        if cfg is None:
            return cls()
        if isinstance(cfg, cls):
            return cfg
        fields = {f.name for f in dataclasses.fields(cls)}
        d = dict(cfg)
        bad = sorted(set(d) - fields)
        if bad:
            raise ValueError(f"unknown augmentation option(s) {bad}; valid: {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ------------------------------------------------------------------------------------------------
# Decoding and resizing


def decode_pil(data: bytes, size: tuple[int, int] | None = None, *, where: str = "") -> Image.Image:
    """Decode an encoded image to an RGB Pillow image, resized to ``size`` = (H, W) if given.

    JPEGs at least twice as large as ``size`` are decoded at a reduced scale first (libjpeg DCT
    scaling): faster, and as the image is resized anyway, nearly lossless. A corrupt image raises
    :class:`jhash.data.common.CorruptImageError` naming ``where`` (the record's path).
    """
    try:
        im = Image.open(io.BytesIO(data))
        if size is not None and im.format == "JPEG":
            im.draft("RGB", (size[1], size[0]))
        im.load()  # decodes
        if im.mode != "RGB":
            im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        return im
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
        from jhash.data.common import CorruptImageError  # lazy: it imports TFDS

        raise CorruptImageError(f"cannot decode image {where or '(unnamed record)'}: "
                                f"{type(e).__name__}: {e}") from e


def decode(data: bytes, size: tuple[int, int] | None = None, *, where: str = "") -> np.ndarray:
    """:func:`decode_pil` as a uint8 [H, W, 3] array."""
    return np.asarray(decode_pil(data, size, where=where))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 [h, w, 3] image to ``size`` = (H, W) (no-op when equal)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


# ------------------------------------------------------------------------------------------------
# Geometric operations (uint8 in, uint8 out)


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right."""
    return image[:, ::-1]


def pad_crop(image: np.ndarray, pad: int, top: int, left: int, out: np.ndarray | None = None) -> np.ndarray:
    """Zero-pad by ``pad`` on each side, then crop the input's size at (top, left) of the padded image.

    Equal to ``np.pad(image, ((pad, pad), (pad, pad), (0, 0)))[top:top + H, left:left + W]`` without
    building the padded image; ``top``, ``left`` in ``[0, 2 * pad]``. Written into ``out`` (an array of the
    image's shape, e.g. a row of a batch) when given, else into a new array (or, with ``pad == 0``, the image
    itself is returned).
    """
    if pad == 0 and out is None:
        return image
    H, W = image.shape[:2]  # noqa: N806
    if not (0 <= top <= 2 * pad and 0 <= left <= 2 * pad):
        raise ValueError(f"crop offset ({top}, {left}) outside [0, {2 * pad}]")
    if out is None:
        out = np.empty_like(image)
    dy, dx = top - pad, left - pad  # shift of the crop window relative to the image
    ys, xs = max(0, dy), max(0, dx)
    ye, xe = min(H, H + dy), min(W, W + dx)
    if ye <= ys or xe <= xs:  # the window lies entirely in the padding
        out[...] = 0
        return out
    r0, r1, c0, c1 = ys - dy, ye - dy, xs - dx, xe - dx  # where the image lands in the output
    out[:r0] = 0
    out[r1:] = 0
    out[r0:r1, :c0] = 0
    out[r0:r1, c1:] = 0
    out[r0:r1, c0:c1] = image[ys:ye, xs:xe]
    return out


# ------------------------------------------------------------------------------------------------
# Normalisation and erasing (float32)


def _norm_constants(width: int, mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-value scale and offset over a row of ``width * 3`` values: ``x * scale + offset``."""
    std64 = np.asarray(std, np.float64)
    scale = np.tile((1.0 / (255.0 * std64)).astype(np.float32), width)
    offset = np.tile((-np.asarray(mean, np.float64) / std64).astype(np.float32), width)
    return scale, offset


def normalize(images: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32 ``(x / 255 - mean) / std``."""
    shape = images.shape
    scale, offset = _norm_constants(shape[-2], mean, std)
    out = np.empty(shape, np.float32)
    flat = out.reshape(-1, shape[-2] * 3)  # rows of W*3 values: the broadcasts stay contiguous
    np.multiply(images.reshape(flat.shape), scale, out=flat)
    flat += offset
    return out


def normalize_stack(images: Sequence[Image.Image | np.ndarray], mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """:func:`normalize` of the stacked images (Pillow or uint8 [H, W, 3], one size), image by image."""
    first = np.asarray(images[0])
    h, w = first.shape[:2]
    scale, offset = _norm_constants(w, mean, std)
    out = np.empty((len(images), h, w, 3), np.float32)
    for i, im in enumerate(images):
        arr = first if i == 0 else np.asarray(im)
        if arr.shape != first.shape:
            raise ValueError(f"image {i} has shape {arr.shape}, image 0 {first.shape}")
        row = out[i].reshape(h, w * 3)
        np.multiply(arr.reshape(h, w * 3), scale, out=row)
        row += offset
    return out


def erase_box(rng: np.random.Generator, height: int, width: int, area: tuple[float, float],
              aspect: tuple[float, float], attempts: int = 100) -> tuple[int, int, int, int] | None:
    """A random-erasing rectangle (top, left, h, w) as in Zhong et al., or None if none fits."""
    total = height * width
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(attempts):
        target = rng.uniform(area[0], area[1]) * total
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return None


def erase(image: np.ndarray, box: tuple[int, int, int, int] | None, fill: np.ndarray | float = 0.0) -> np.ndarray:
    """Fill ``image[top:top+h, left:left+w]`` (in place) with ``fill`` (a scalar or an array of that shape)."""
    if box is not None:
        top, left, h, w = box
        image[top: top + h, left: left + w] = fill
    return image


# ------------------------------------------------------------------------------------------------
# Batches


@dataclasses.dataclass(frozen=True)
class BatchParams:
    """The random choices of one batch of ``n`` images (see :func:`sample_params`)."""

    flip: np.ndarray  # bool [n]
    crop: np.ndarray  # int [n, 2] (top, left) in the padded image
    boxes: tuple  # per image: (top, left, h, w) or None
    noise_seed: int  # seed of the N(0, 1) erase fill ('random' fill only)


def sample_params(rng: np.random.Generator, n: int, size: tuple[int, int], cfg: AugmentConfig) -> BatchParams:
    """All random choices for ``n`` images of ``size`` = (H, W), drawn in a fixed order from ``rng``."""
    flip = rng.random(n) < cfg.flip_prob
    crop = rng.integers(0, 2 * cfg.pad + 1, size=(n, 2))
    do_erase = rng.random(n) < cfg.erase_prob
    boxes = tuple(erase_box(rng, size[0], size[1], cfg.erase_area, cfg.erase_aspect) if e else None
                  for e in do_erase)
    return BatchParams(flip=flip, crop=crop, boxes=boxes, noise_seed=int(rng.integers(2**31)))


def geometric_batch(images: Sequence[Image.Image | np.ndarray], params: BatchParams, cfg: AugmentConfig,
                    out: np.ndarray | None = None) -> np.ndarray:
    """The flipped (:func:`hflip`) and padded-and-cropped (:func:`pad_crop`) images, uint8 [n, H, W, 3], each
    written once, straight into its row of the batch (``out`` when given)."""
    shape = np.shape(images[0]) if not isinstance(images[0], Image.Image) else (*images[0].size[::-1], 3)
    if out is None:
        out = np.empty((len(images), *shape), np.uint8)
    for i, (im, flip, crop) in enumerate(zip(images, params.flip, params.crop)):
        arr = _flipped(im) if flip else np.asarray(im, np.uint8)
        if arr.shape != shape:
            raise ValueError(f"image {i} has shape {arr.shape}, image 0 {shape}")
        pad_crop(arr, cfg.pad, int(crop[0]), int(crop[1]), out=out[i])
    return out


def _flipped(image: Image.Image | np.ndarray) -> np.ndarray:
    """:func:`hflip` as a contiguous uint8 array; a Pillow image is mirrored by Pillow (~15x faster than copying
    numpy's reversed view of 3-byte pixels)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), np.uint8)
    return np.ascontiguousarray(hflip(np.asarray(image, np.uint8)))


def train_batch(images: Sequence[Image.Image | np.ndarray], params: BatchParams, cfg: AugmentConfig) -> np.ndarray:
    """Augment a batch of RGB images (Pillow or uint8 arrays) of the target size -> float32 [n, H, W, 3]."""
    out = normalize(geometric_batch(images, params, cfg), cfg.mean, cfg.std)
    noise = np.random.default_rng(params.noise_seed) if cfg.erase_fill == "random" else None
    for i, box in enumerate(params.boxes):
        if box is not None:
            fill = 0.0 if noise is None else noise.standard_normal((box[2], box[3], 3), dtype=np.float32)
            erase(out[i], box, fill)
    return out


def erase_boxes(params: BatchParams) -> np.ndarray:
    """The erase boxes of a batch, int32 [n, 4] ``(top, left, h, w)``, all 0 for an image without one."""
    return np.array([box if box is not None else (0, 0, 0, 0) for box in params.boxes], np.int32).reshape(-1, 4)


def train_batch_uint8(images: Sequence[Image.Image | np.ndarray], params: BatchParams,
                      cfg: AugmentConfig, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`train_batch` before its float32 steps: the flipped and cropped uint8 images [n, H, W, 3] (written
    into ``out`` when given) and the :func:`erase_boxes`; normalising and erasing (with the mean fill) are left
    to :func:`jhash.data.device.train_images`."""
    if cfg.erase_fill != "mean":
        raise ValueError(f"uint8 training batches need erase_fill='mean' (got {cfg.erase_fill!r}: its noise is "
                         f"drawn with the float32 images)")
    return geometric_batch(images, params, cfg, out), erase_boxes(params)


def eval_batch(images: Sequence[Image.Image | np.ndarray], mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalise a batch of RGB images (Pillow or uint8 arrays) of the target size -> float32 [n, H, W, 3]."""
    return normalize_stack(images, mean, std)
