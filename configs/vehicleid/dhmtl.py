"""DHMTL on VehicleID (it has vehicle model and colour labels): GoogLeNet trained from scratch
("GoogLeNet-Vehicle", aux classifiers supervised with model labels), a 1024-unit ReLU hash layer, softmax
heads for ID + model + colour, SGD momentum 0.9, lr 1e-3 (×10 on the heads after the hash layer), weight
decay 5e-4, batch 60 (15 vehicles × 4 images), 100k iterations with lr ÷10 after 50k, 224×224 input — the
paper's settings. Unlabelled model / colour entries (-1) are ignored by their heads. The pipeline resizes to
224×224 with padding + random crop and ImageNet mean/std instead of the paper's 256 → 224 crop and plain
mean subtraction.

Put VehicleID_V1.0 in --config.dataset.manual_dir, then (ablations: --config.method.heads=id+model etc.;
ImageNet start: --config.model.pretrained=... with --config.method.aux_heads=False):

    python train.py --config configs/vehicleid/dhmtl.py --workdir runs/vid_dhmtl --config.dataset.manual_dir=~/downloads
    python evaluate.py --workdir runs/vid_dhmtl
"""

import ml_collections

from jhash import config as config_lib
from jhash.methods import dhmtl


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "vehicleid"
    c.dataset.config = "small"

    c.input.image_size = (224, 224)
    c.input.augment = ml_collections.ConfigDict(dict(flip_prob=0.5, pad=16, erase_prob=0.0))

    c.model.backbone = "googlenet"
    c.model.bits = 1024
    c.model.pooling = "avg"

    c.method = dhmtl.method_config(heads=("id", "model", "color"), hash_activation="relu", aux_heads=True,
                                   aux_weight=0.3, dropout=0.4)

    c.optimizer.name = "sgd"
    c.optimizer.lr = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "multistep"
    c.optimizer.milestones = (50_000,)
    c.optimizer.gamma = 0.1
    c.optimizer.lr_mult = (("^head_", 10.0),)

    c.train.steps = 100_000
    c.train.batch_p = 15
    c.train.batch_k = 4
    c.train.log_every = 100
    c.train.ckpt_every = 5000
    c.train.keep = 3

    c.eval.batch_size = 256
    c.eval.tradeoff_bits = (128, 256, 512)
    c.eval.hashing_metrics = ("map@1000",)  # the paper reports mAP over the top 1000 and rank-1
    return c
