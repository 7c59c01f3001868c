"""The last step of the training input pipeline, on the device: uint8 images to normalised float32.

Training batches can travel from the loader (and between its worker processes) as uint8 images after the
geometric augmentation, with random erasing as boxes (:func:`jhash.data.pipeline.TrainIterator.send_uint8`):
a quarter of the bytes of float32 images. Inside the jitted training step :func:`train_images` turns them
into what the host pipeline would have made: ``(x / 255 - mean) / std`` per channel
(:func:`jhash.data.augment.normalize`, same float32 constants), then 0 (the mean) inside each erase box.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from jhash.data.augment import IMAGENET_MEAN, IMAGENET_STD


def normalize(images, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """uint8 ``[..., H, W, 3]`` -> float32 ``x * (1 / (255 std)) + (-mean / std)``, the constants rounded to
    float32 from float64 as :func:`jhash.data.augment.normalize` does."""
    std64 = np.asarray(std, np.float64)
    scale = (1.0 / (255.0 * std64)).astype(np.float32)
    offset = (-np.asarray(mean, np.float64) / std64).astype(np.float32)
    return images.astype(jnp.float32) * scale + offset


def erase_mask(boxes, height: int, width: int):
    """bool ``[n, H, W, 1]``: True inside box ``(top, left, h, w)`` of each image (``h = w = 0``: none)."""
    top, left, h, w = (boxes[:, i, None, None, None] for i in range(4))
    rows = jnp.arange(height)[None, :, None, None]
    cols = jnp.arange(width)[None, None, :, None]
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def train_images(batch: dict, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """The float32 images of a training batch: ``batch['image']`` itself when it is already float, else the
    normalised uint8 images with ``batch['erase']`` boxes set to 0 (the mean)."""
    images = batch["image"]
    if images.dtype != jnp.uint8:
        return images
    out = normalize(images, mean, std)
    if "erase" in batch:
        out = jnp.where(erase_mask(batch["erase"], out.shape[1], out.shape[2]), jnp.float32(0), out)
    return out
