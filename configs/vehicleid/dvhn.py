"""DVHN on VehicleID: ImageNet ResNet-50, global average pooling, hash layer Linear(2048, 2048),
256×128 images, 6 images per vehicle (the first author's public vehicle-hashing setup), pairwise likelihood
+ quantisation with a discrete W-/B-step (μ = 1e-2, ν = 1, η = 1e-2, DSDH) after every epoch, plus the
author's CE + batch-hard triplet options. The optimiser and schedule (Adam 3.5e-4, warm-up, ×0.1 steps) are
jhash's choice: the paper's text does not survive. State for 110,178 images × 2048 bits: 1.24 GB (B int8
226 MB, U 902 MB, W 108 MB), update peak ≈ 5.2 GB.

Put VehicleID_V1.0 (or its archive) in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained, then (test list 800 = 'small', 1600 = 'medium', 2400 = 'large'):

    python train.py --config configs/vehicleid/dvhn.py --workdir runs/vid_dvhn \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/vid_dvhn
    python evaluate.py --workdir runs/vid_dvhn --config.dataset.config=large

Other code lengths: --config.model.bits=256|512|1024.

The network step's quantisation weight is η·min(1, 64/L) (DVHN's default, ``quant_weight_scale='length'``: the paper's η up to 64 bits);
the paper's single η: --config.method.quant_weight_scale=none.
"""

from jhash import config as config_lib
from jhash.methods import dvhn


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "vehicleid"
    c.dataset.config = "small"

    c.input.image_size = (256, 128)

    c.model.backbone = "resnet50"
    c.model.backbone_kwargs.last_stride = 1
    c.model.bits = 2048
    c.model.pooling = "avg"

    c.method = dvhn.method_config(mu=1e-2, nu=1.0, eta=1e-2, ce_weight=1.0, label_smoothing=0.1,
                                  triplet_weight=1.0, triplet_margin=0.3, dcc_iters=1, b_sweeps=3)
    c.method.aux_every = 1

    c.optimizer.name = "adam"
    c.optimizer.lr = 3.5e-4
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "multistep"
    c.optimizer.warmup = 5  # epochs
    c.optimizer.warmup_factor = 0.1
    c.optimizer.milestones = (30, 50)
    c.optimizer.gamma = 0.1

    c.train.epochs = 60
    c.train.batch_p = 16
    c.train.batch_k = 6
    c.train.log_every = 50
    c.train.ckpt_every = 2000
    c.train.keep = 3

    c.eval.batch_size = 256
    c.eval.tradeoff_bits = (256, 512, 1024)
    return c
