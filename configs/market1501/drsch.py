"""DRSCH on market1501: ImageNet ResNet-50 (the paper's own small CNN is not specified well enough to rebuild),
a 64-bit sigmoid hash layer × learnable bit weights, weighted triplet ranking loss (all valid triplets of
16 identities × 4 images, margin 0.25 per bit) + Laplacian regulariser β = 1e-3, SGD momentum 0.9, lr 1e-3
(×10 on the new layers), weight decay 5e-4 (Caffe settings of the public code), 256×128 input.
Bit-scalable evaluation: codes are ordered by |w|, the 16- and 32-bit prefixes are also reported.

Put the dataset archive / folder in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained, then:

    python train.py --config configs/market1501/drsch.py --workdir runs/market1501_drsch \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/market1501_drsch --tradeoff

DSCH: --config.method.laplacian_weight=0.
"""

from jhash import config as config_lib
from jhash.methods import drsch


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "market1501"

    c.input.image_size = (256, 128)

    c.model.backbone = "resnet50"
    c.model.backbone_kwargs.last_stride = 1
    c.model.bits = 64
    c.model.pooling = "avg"

    c.method = drsch.method_config(margin=0.25, laplacian_weight=1e-3, triplet_mining="all", eval_bits=(16, 32))

    c.optimizer.name = "sgd"
    c.optimizer.lr = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "multistep"
    c.optimizer.warmup = 2
    c.optimizer.warmup_factor = 0.1
    c.optimizer.milestones = (40,)
    c.optimizer.gamma = 0.1
    c.optimizer.lr_mult = (("^(?!backbone)", 10.0),)

    c.train.epochs = 60
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.log_every = 50
    c.train.ckpt_every = 2000
    c.train.keep = 3

    c.eval.batch_size = 256
    c.eval.tradeoff_bits = (16, 32)
    c.eval.hashing_metrics = ("precision_radius@2", "precision@500")  # the paper's hashing metrics
    return c
