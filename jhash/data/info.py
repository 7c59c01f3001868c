"""What a model and a method need to know about a dataset, and the batch contract of the pipeline.

Every training batch produced by :mod:`jhash.data.pipeline` is a ``dict`` of numpy arrays:

=============== ================== ==========================================================
key             dtype / shape      meaning
=============== ================== ==========================================================
``image``       float32 [B,H,W,3]  normalised image (mean/std), NHWC
``label``       int32 [B]          contiguous training class 0..num_classes-1 (from ``pid``)
``pid``         int32 [B]          the dataset's identity number
``camid``       int32 [B]          camera number
``index``       int32 [B]          position of the record in its split (DVHN caches per-image codes)
``attributes``  int32 [B, A]       0/1 binary attributes (only when ``info.num_attributes > 0``)
``model``       int32 [B]          vehicle model / type class (only when ``info.num_models > 0``)
``color``       int32 [B]          colour class (only when ``info.num_colors > 0``)
=============== ================== ==========================================================

Evaluation batches carry the same keys except ``label`` (query/gallery identities are unseen).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a prepared dataset used to size heads and choose a protocol."""

    name: str
    num_classes: int  # training identities (0 for an evaluation-only dataset)
    image_size: tuple[int, int]  # (height, width) the pipeline resizes to
    protocol: str = "market"  # 'market' | 'vehicleid' | 'cuhk03' (see jhash.metrics)
    num_attributes: int = 0
    attribute_names: tuple[str, ...] = ()
    num_models: int = 0
    num_colors: int = 0
    num_train_images: int = 0

    def __post_init__(self):
        if self.num_classes < 0:
            raise ValueError(f"DatasetInfo.num_classes must be >= 0, got {self.num_classes}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"DatasetInfo.image_size must be (height, width) > 0, got {self.image_size}")
        if self.attribute_names and len(self.attribute_names) != self.num_attributes:
            raise ValueError(
                f"DatasetInfo.attribute_names has {len(self.attribute_names)} names, "
                f"num_attributes is {self.num_attributes}"
            )
