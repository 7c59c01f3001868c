"""CtF (Wang et al., ECCV 2020) on synthetic_reid: small CNN -> All-in-One code pyramid 2048 -> 512 -> 128 -> 32
(BN, tanh / sign), CE + batch-hard triplet (margin 0.3) on every code, probability distillation (T = 10) and
similarity distillation (lambda_2 = 1000) from the next-longer code; coarse-to-fine search at evaluation with the
recall-targeted thresholds (the cheapest that keep 95 % of the exhaustive 2048-bit top-10 at a 95 % confidence
bound, refitted at search time against the searched gallery with the validation codes stored by the fit, levels
chosen by the fit; ``--config.method.threshold_fit=dto`` for the paper's DTO with beta = 2, fitted on the ``val``
split after training). A few minutes on a 2-core CPU:

    python train.py --config configs/synthetic_reid/ctf.py --workdir runs/synthetic_ctf
    python evaluate.py --workdir runs/synthetic_ctf

Speed / accuracy benchmark with a 500k gallery (trains this config, or reuses a workdir):

    python bench/ctf.py --workdir runs/synthetic_ctf

Tests use the `tiny` dataset and a few steps:

    python train.py --config configs/synthetic_reid/ctf.py --workdir /tmp/t \
        --config.dataset.config=tiny --config.train.epochs=0 --config.train.steps=4 --config.train.batch_p=8
"""

import ml_collections

from jhash import config as config_lib
from jhash.data import synthetic
from jhash.methods import ctf


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = "default"
    c.dataset.val_split = "val"

    c.input.image_size = (64, 32)
    c.input.augment = ml_collections.ConfigDict(synthetic.train_augment())

    c.model.backbone = "small_cnn"
    c.model.bits = 2048  # the longest code (config.method.lengths[0]); informative only
    c.model.pooling = "avg"

    c.method = ctf.method_config(lengths=(2048, 512, 128, 32), triplet_margin=0.3, label_smoothing=0.1,
                                 temperature=10.0, prob_weight=1.0, sim_weight=1000.0, beta=2.0)

    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup = 1  # epoch
    c.optimizer.warmup_factor = 0.1

    c.train.epochs = 24
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.log_every = 10
    c.train.ckpt_every = 200
    c.train.keep = 2

    c.eval.batch_size = 256
    c.eval.code = "id"  # the longest code; the CtF search itself uses every level
    return c
