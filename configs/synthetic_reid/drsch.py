"""DRSCH (sigmoid hash layer × learnable bit weights, weighted triplet ranking + Laplacian regulariser) on
synthetic_reid with the small CNN, 64 bits; codes ordered by |w| so the 16- and 32-bit prefixes are the
bit-scalable codes ("top16", "top32"). Minutes on a CPU.

    python train.py --config configs/synthetic_reid/drsch.py --workdir runs/synth_drsch
    python evaluate.py --workdir runs/synth_drsch --tradeoff

DSCH (no regulariser): --config.method.laplacian_weight=0. Growing margin: --config.method.margin_schedule=linear.
Codes that keep what the network learns (not in the paper; measured over 3 seeds in README):
--config.method.decorrelation_weight=10 (penalises correlated bits).
"""

import ml_collections

from jhash import config as config_lib
from jhash.data import synthetic
from jhash.methods import drsch


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = "default"

    c.input.image_size = (64, 32)
    c.input.augment = ml_collections.ConfigDict(synthetic.train_augment())

    c.model.backbone = "small_cnn"
    c.model.bits = 64
    c.model.pooling = "avg"

    c.method = drsch.method_config(margin=0.25, laplacian_weight=1e-3, triplet_mining="all", eval_bits=(16, 32))

    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup = 1
    c.optimizer.warmup_factor = 0.1

    c.train.epochs = 12
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.log_every = 10
    c.train.ckpt_every = 200
    c.train.keep = 2

    c.eval.batch_size = 256
    c.eval.tradeoff_bits = (16, 32)
    c.eval.hashing_metrics = ("precision_radius@2", "precision@500")  # the paper's hashing metrics
    return c
