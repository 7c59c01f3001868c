"""DVHN (DSDH-style discrete hashing) on synthetic_reid: small CNN, 64-bit hash layer, pairwise likelihood +
quantisation, a discrete W-/B-step update over the training set after every epoch. Minutes on a CPU.

    python train.py --config configs/synthetic_reid/dvhn.py --workdir runs/synth_dvhn
    python evaluate.py --workdir runs/synth_dvhn --compare_untrained

Other code lengths: --config.model.bits=256 (or 1024).

The network step's quantisation weight is η·min(1, 64/L) (DVHN's default, ``quant_weight_scale='length'``: the paper's η up to 64 bits);
the paper's single η: --config.method.quant_weight_scale=none.
"""

import ml_collections

from jhash import config as config_lib
from jhash.data import synthetic
from jhash.methods import dvhn


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = "default"

    c.input.image_size = (64, 32)
    c.input.augment = ml_collections.ConfigDict(synthetic.train_augment())

    c.model.backbone = "small_cnn"
    c.model.bits = 64
    c.model.pooling = "avg"

    # DSDH reference weights; CE on the codes helps the small CNN on the tiny step budget
    c.method = dvhn.method_config(mu=1e-2, nu=1.0, eta=1e-2, ce_weight=1.0, dcc_iters=1, b_sweeps=3)
    c.method.aux_every = 1  # discrete update after every epoch

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
    return c
