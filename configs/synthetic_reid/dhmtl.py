"""DHMTL (multi-task hashing: ID + model + colour softmax heads on a ReLU hash layer) on synthetic_reid with
the small CNN and a 64-bit hash layer; codes b = 1[h > 0]. Minutes on a CPU.

    python train.py --config configs/synthetic_reid/dhmtl.py --workdir runs/synth_dhmtl
    python evaluate.py --workdir runs/synth_dhmtl --compare_untrained

Ablations: --config.method.heads="('id', 'model')" (or 'id+color', 'id', 'model+color', 'model');
sigmoid hash layer: --config.method.hash_activation=sigmoid; triplet baseline: --config.method.loss=triplet.
"""

import ml_collections

from jhash import config as config_lib
from jhash.data import synthetic
from jhash.methods import dhmtl


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = "default"

    c.input.image_size = (64, 32)
    c.input.augment = ml_collections.ConfigDict(synthetic.train_augment())

    c.model.backbone = "small_cnn"
    c.model.bits = 64
    c.model.pooling = "avg"

    c.method = dhmtl.method_config(heads=("id", "model", "color"), hash_activation="relu")

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
    c.eval.hashing_metrics = ("map@1000",)  # the paper reports mAP over the top 1000 and rank-1
    return c
