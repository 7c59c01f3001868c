"""Baseline (small CNN + BNNeck + 64-bit tanh hash layer, CE + batch-hard triplet) on synthetic_reid.

The demo config (`make demo`): trains in about two minutes on a 2-core CPU, no download needed.

    python train.py --config configs/synthetic_reid/baseline.py --workdir runs/demo
    python evaluate.py --workdir runs/demo --compare_untrained

Tests use the `tiny` dataset and a few steps:

    python train.py --config configs/synthetic_reid/baseline.py --workdir /tmp/t \
        --config.dataset.config=tiny --config.train.epochs=0 --config.train.steps=4 --config.train.batch_p=8
"""

import ml_collections

from jhash import config as config_lib
from jhash.data import synthetic
from jhash.methods import baseline


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = "default"
    c.dataset.val_split = "val"

    c.input.image_size = (64, 32)
    c.input.augment = ml_collections.ConfigDict(synthetic.train_augment())

    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (32, 64, 128, 256)
    c.model.bits = 64
    c.model.pooling = "avg"

    c.method = baseline.method_config(triplet_margin=0.3, label_smoothing=0.1)

    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup = 1  # epoch
    c.optimizer.warmup_factor = 0.1

    c.train.epochs = 12
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.log_every = 10
    c.train.ckpt_every = 200
    c.train.keep = 2

    c.eval.batch_size = 256
    c.eval.tradeoff_bits = (16, 32)
    return c
