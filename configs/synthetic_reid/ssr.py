"""SSR + AAB + AFR (Jin et al. 2021) on synthetic_reid: a small CNN split into a shared trunk (2 blocks) and a
teacher and a student branch (2 blocks each), PCB descriptors 6 x 256 + 512 = 2048 bits (BN, no squashing:
self-distilling smooth relaxation, alpha = 0.3), AAB on the global map, 34 binary attribute heads (beta = 0.3),
batch-hard triplet (margin 0.3) + ID cross-entropy on all 14 vectors (eq. 14). After training the AFR window
is fitted on the ``val`` split (w rule: attribute-only rank-w accuracy >= 97%) and evaluate.py runs
attribute-first search with it. A few minutes on a 2-core CPU:

    python train.py --config configs/synthetic_reid/ssr.py --workdir runs/synthetic_ssr
    python evaluate.py --workdir runs/synthetic_ssr

Speed / accuracy of AFR on a 500k gallery (trains this config, or reuses a workdir):

    python bench/afr.py --workdir runs/synthetic_ssr

Relaxation zoo (the paper's Table 6): --config.method.relaxation=sigmoid|hardsigmoid|tanh|hardtanh|dsh|ssr,
with or without --config.method.bn=False. Tests use the `tiny` dataset and a few steps:

    python train.py --config configs/synthetic_reid/ssr.py --workdir /tmp/t \
        --config.dataset.config=tiny --config.train.epochs=0 --config.train.steps=4 --config.train.batch_p=8
"""

import ml_collections

from jhash import config as config_lib
from jhash.data import synthetic
from jhash.methods import ssr


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = "default"
    c.dataset.val_split = "val"

    c.input.image_size = (96, 48)  # the branches end in a 6 x 3 map: one row per stripe
    c.input.augment = ml_collections.ConfigDict(synthetic.train_augment())

    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (32, 64, 128, 256)
    c.model.bits = 2048  # 6 x 256 local + 512 global
    c.model.pooling = "avg"

    c.method = ssr.method_config(relaxation="ssr", bn=True, alpha=0.3, beta=0.3, attention=True, reduction=8,
                                 triplet_margin=0.3, afr=True, afr_target=0.97)

    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup = 1  # epoch
    c.optimizer.warmup_factor = 0.1

    c.train.epochs = 30
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.log_every = 10
    c.train.ckpt_every = 200
    c.train.keep = 2

    c.eval.batch_size = 256
    c.eval.code = "id"
    return c
